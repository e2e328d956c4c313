"""Moved to core.schema; kept until every importer uses the new path."""

from core.schema import *  # noqa: F401,F403
