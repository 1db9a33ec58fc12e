"""Where a list starts: a page number, or a cursor past the last row seen.

Lists are newest first, ordered by (created_at, id). They page by number (OFFSET: easy,
but rows shift when new ones arrive) and by cursor (keyset on (created_at, id): stable
while rows are inserted, and as fast on page 10,000 as on page 1).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from chatspan.store.queries.filters import QueryError


@dataclass(frozen=True)
class Cursor:
    """A position in a newest-first list: the last row seen."""

    created_at: datetime
    id: str

    def encode(self) -> str:
        raw = json.dumps([self.created_at.isoformat(), self.id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            created_at, row_id = json.loads(raw)
            moment = datetime.fromisoformat(created_at)
            # In UTC, as issued; a forged offset at the edge of time has no UTC moment.
            moment = (
                moment.replace(tzinfo=timezone.utc)
                if moment.tzinfo is None
                else moment.astimezone(timezone.utc)
            )
            parsed_id = str(uuid.UUID(str(row_id)))
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, OverflowError) as error:
            raise QueryError(f"cursor is not one this service issued: {error}") from None
        return cls(moment, parsed_id)


@dataclass(frozen=True)
class Paging:
    page: int = 1
    per_page: int = 20
    cursor: Cursor | None = None
