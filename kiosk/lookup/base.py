"""The interface every lookup client implements: embedded, online, offline."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from backend.records import DocumentKey, LookupAnswer


class BackendState(enum.StrEnum):
    EMBEDDED = "embedded"
    ONLINE = "online"
    OFFLINE = "offline"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class BackendStatus:
    """What the waiting screen shows about the lookup backend."""

    state: BackendState
    data_version: str | None
    description: str
    # Age of the offline copy or embedded data, when known.
    data_age: dt.timedelta | None = None
    queued_rechecks: int = 0


class LookupClient(Protocol):
    """Checks document keys. Never raises for a failed check: it returns an
    UNKNOWN answer with the reason, so no caller can mistake it for NO_HIT."""

    def lookup(self, key: DocumentKey) -> LookupAnswer: ...

    def lookup_many(self, keys: Sequence[DocumentKey]) -> list[LookupAnswer]: ...

    def status(self) -> BackendStatus: ...

    def close(self) -> None: ...
