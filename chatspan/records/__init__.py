"""Spans into rows: the record types and the one span → records mapping."""

from chatspan.records.mapping import *  # noqa: F403
