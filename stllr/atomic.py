"""Moved to core.atomic; kept until every importer uses the new path."""

from core.atomic import *  # noqa: F401,F403
