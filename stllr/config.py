"""Moved to core.config; kept until every importer uses the new path."""

from core.config import *  # noqa: F401,F403
