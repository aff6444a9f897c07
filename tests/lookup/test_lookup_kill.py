"""kill -9 while the offline copy syncs or the recheck queue writes."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from backend.importer import FULL_HEADER, import_csv
from backend.records import DocumentKey, Result
from kiosk.lookup.http import HttpLookup
from kiosk.lookup.offline import OfflineCopy
from kiosk.lookup.queue import RecheckQueue
from tests.backend.helpers import record_line
from tests.lookup.conftest import API_KEY, LiveService

SYNCER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from kiosk.lookup.http import HttpLookup
    from kiosk.lookup.offline import OfflineCopy

    class Announcing:
        def __init__(self, inner):
            self.inner = inner
            self.base_url = inner.base_url
        def changes(self, since, cursor=0, limit=10_000):
            print("page", cursor, flush=True)
            return self.inner.changes(since, cursor, 5_000)

    client = HttpLookup(sys.argv[1], api_key=sys.argv[2])
    OfflineCopy(Path(sys.argv[3])).sync(Announcing(client))
    print("done", flush=True)
    """
)


def test_kill_during_sync_keeps_copy(live_service: LiveService, tmp_path: Path) -> None:
    path = tmp_path / "offline.sqlite3"
    client = HttpLookup(live_service.url, api_key=API_KEY)
    copy = OfflineCopy(path)
    first = copy.sync(client)
    copy.close()

    big = tmp_path / "big.csv"
    with big.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FULL_HEADER)
        for i in range(30_000):
            writer.writerow(record_line("GBR", f"K{i:08d}"))
    second = import_csv(live_service.store, big).result.version

    child = subprocess.Popen(
        [sys.executable, "-c", SYNCER, live_service.url, API_KEY, str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    pages = 0
    for line in child.stdout:
        pages += line.startswith("page")
        if pages == 3:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()

    copy = OfflineCopy(path)
    assert copy.service_version == first
    assert copy.lookup(DocumentKey.create("UTO", "P", "L898902C3")).result is Result.HIT
    probe = DocumentKey.create("GBR", "P", "K00000001")
    assert copy.lookup(probe).result is Result.NO_HIT
    assert copy.sync(client) == second
    assert copy.lookup(probe).result is Result.HIT
    copy.close()
    client.close()


ENQUEUER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from backend.records import DocumentKey, LookupAnswer, Result
    from kiosk.lookup.queue import RecheckQueue

    queue = RecheckQueue(Path(sys.argv[1]))
    answer = LookupAnswer(Result.UNKNOWN, reason="link down")
    i = 0
    while True:
        i += 1
        queue.enqueue(DocumentKey.create("UTO", "P", f"Q{i:08d}"), answer)
        print(i, flush=True)
    """
)


def test_kill_during_enqueue_keeps_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "rechecks.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-c", ENQUEUER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    acknowledged = 0
    for line in child.stdout:
        acknowledged = int(line)
        if acknowledged >= 50:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    queue = RecheckQueue(path)
    numbers = {check.key.document_number for check in queue.pending()}
    queue.close()
    assert {f"Q{i:08d}" for i in range(1, acknowledged + 1)} <= numbers
