"""Read queries behind the admin API."""

from chatspan.store.queries.paging import *  # noqa: F403
