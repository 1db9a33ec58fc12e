"""Read queries behind the admin API, on PostgreSQL and SQLite alike: filters
(:mod:`.filters`), paging (:mod:`.paging`), lists (:mod:`.lists`), error groups
(:mod:`.groups`) and statistics (:mod:`.stats`).

The names the query service and the command line use are exported here.
"""

from chatspan.store.queries.filters import ChatFilters, ErrorFilters, QueryError, Window
from chatspan.store.queries.groups import error_groups
from chatspan.store.queries.lists import Page, list_chats, list_errors
from chatspan.store.queries.paging import Cursor, Paging
from chatspan.store.queries.stats import LogStats, log_stats

__all__ = [
    "ChatFilters",
    "Cursor",
    "ErrorFilters",
    "LogStats",
    "Page",
    "Paging",
    "QueryError",
    "Window",
    "error_groups",
    "list_chats",
    "list_errors",
    "log_stats",
]
