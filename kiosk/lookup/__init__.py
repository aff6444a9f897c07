"""Clients that check a document against the list of reported documents."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from kiosk.lookup.base import BackendState, BackendStatus, LookupClient
from kiosk.lookup.queue import LateHitCallback

__all__ = ["BackendState", "BackendStatus", "LookupClient", "open_client"]

logger = logging.getLogger(__name__)

_Opened = TypeVar("_Opened")
# SQLite's primary result codes for a file that is not a database or whose
# pages are damaged: SQLITE_CORRUPT and SQLITE_NOTADB.
_CORRUPT_CODES = frozenset({11, 26})


def _is_corrupt_file(exc: BaseException) -> bool:
    """Return whether `exc`, or an exception it was raised from, reports a
    damaged SQLite file."""
    current: BaseException | None = exc
    while current is not None:
        code = getattr(current, "sqlite_errorcode", None)
        if isinstance(current, sqlite3.DatabaseError) and code is not None:
            return code & 0xFF in _CORRUPT_CODES
        current = current.__cause__
    return False


def set_aside(path: Path) -> Path:
    """Rename a damaged SQLite file, with its -wal and -shm files, to
    `NAME.corrupt-TIME`; return the new name."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    path.rename(target)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(target.with_name(target.name + suffix))
    return target


def _open_or_replace(
    open_file: Callable[[], _Opened],
    path: Path,
    what: str,
    consequence: str,
    on_notice: Callable[[str], None] | None,
) -> _Opened:
    """Open a kiosk-local SQLite file; if it is damaged, set it aside and
    open a new one in its place.

    The kiosk must keep checking documents: a damaged offline copy or
    re-check queue would otherwise stop every lookup, online ones included.
    The damaged file is kept under its new name for inspection.
    """
    try:
        return open_file()
    except Exception as exc:
        if not _is_corrupt_file(exc) or not path.exists():
            raise
        moved = set_aside(path)
        notice = (
            f"The {what} {path} was damaged ({exc}). It was renamed to "
            f"{moved.name} and a new one started: {consequence}"
        )
        logger.error("%s", notice)
        if on_notice is not None:
            on_notice(notice)
        return open_file()


def open_client(
    backend_url: str | None,
    *,
    api_key: str | None,
    embedded_path: Path,
    seed_csv: Path | None,
    offline_max_age: dt.timedelta = dt.timedelta(hours=24),
    on_late_hit: LateHitCallback | None = None,
    timeout_s: float = 2.0,
    retries: int = 2,
    tls_verify: bool | str = True,
    client_cert: tuple[str, str] | None = None,
    maintain_every_s: float | None = 60.0,
    on_notice: Callable[[str], None] | None = None,
) -> LookupClient:
    """Return the embedded client when `backend_url` is None, else the online one.

    The online client keeps its offline copy and recheck queue beside
    `embedded_path`: `rechecks.sqlite3`, and one `offline-<hash>.sqlite3`
    per service URL (see `kiosk.lookup.offline.copy_path`).
    `offline_max_age` is the sync age past which the copy's NO_HIT becomes
    UNKNOWN, and `timeout_s` the time limit of one whole online check,
    retries included, in seconds. Unless
    `maintain_every_s` is None, a daemon thread syncs the copy and drains the
    queue at that interval (`close()` stops it). Raises LookupFailed when
    the TLS files cannot be loaded or `timeout_s` is not positive; lookups
    themselves never raise. A damaged offline copy or re-check queue is
    renamed and replaced by a new one, and `on_notice` receives a message
    about it, for the officer or technician to see.
    """
    if backend_url is None:
        from kiosk.lookup.embedded import EmbeddedLookup

        return EmbeddedLookup(embedded_path, seed_csv=seed_csv)

    from kiosk.lookup.http import HttpLookup
    from kiosk.lookup.offline import OfflineCopy, copy_path
    from kiosk.lookup.queue import RecheckQueue
    from kiosk.lookup.resilient import ResilientLookup

    folder = embedded_path.parent
    online = HttpLookup(
        backend_url,
        api_key=api_key,
        timeout_s=timeout_s,
        retries=retries,
        verify=tls_verify,
        client_cert=client_cert,
    )
    copy_file = copy_path(folder, backend_url)
    offline = _open_or_replace(
        lambda: OfflineCopy(
            copy_file, max_age=offline_max_age, service_url=backend_url
        ),
        copy_file,
        "offline copy",
        "until its first sync, checks the service does not answer show NOT CHECKED",
        on_notice,
    )
    queue_file = folder / "rechecks.sqlite3"
    queue = _open_or_replace(
        lambda: RecheckQueue(
            queue_file, on_late_hit=on_late_hit, service_url=backend_url
        ),
        queue_file,
        "re-check queue",
        "checks queued in the old file will not be re-checked, so check "
        "again any document shown as NOT CHECKED before this start",
        on_notice,
    )
    client = ResilientLookup(online, offline=offline, queue=queue)
    if maintain_every_s is not None:
        client.start(maintain_every_s)
    return client
