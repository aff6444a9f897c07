"""Clients that check a document against the list of reported documents."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from kiosk.lookup.base import BackendState, BackendStatus, LookupClient
from kiosk.lookup.queue import LateHitCallback

__all__ = ["BackendState", "BackendStatus", "LookupClient", "open_client"]


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
    themselves never raise.
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
    client = ResilientLookup(
        online,
        offline=OfflineCopy(
            copy_path(folder, backend_url),
            max_age=offline_max_age,
            service_url=backend_url,
        ),
        queue=RecheckQueue(
            folder / "rechecks.sqlite3",
            on_late_hit=on_late_hit,
            service_url=backend_url,
        ),
    )
    if maintain_every_s is not None:
        client.start(maintain_every_s)
    return client
