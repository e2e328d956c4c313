"""Moved to core.errors; kept until every importer uses the new path."""

from core.errors import *  # noqa: F401,F403
