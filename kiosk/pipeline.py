"""One check of one document: MRZ text or image in, verdict out.

The terminal app, the `kiosk scan` command and the tester tools all call
these functions, so every way into the kiosk applies the same rules. The
central rule: a NO_HIT is shown only when the lookup really happened on a
document number the check digits confirm; every other case is UNKNOWN.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backend.errors import InvalidRecord
from backend.records import DocumentKey, LookupAnswer, Result, unknown
from kiosk.errors import ImageError, MRZError, ReaderError
from kiosk.mrz import MrzReport, RepairOutcome, RepairStatus, repair_text
from kiosk.mrz.parser import normalize_lines

if TYPE_CHECKING:
    import numpy as np

    from kiosk.lookup.base import LookupClient

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScanOutcome:
    """Everything the screen or the CLI shows about one document."""

    scan_id: str
    source: str
    report: MrzReport | None
    repair: RepairOutcome | None
    lookup: LookupAnswer
    error: str | None
    elapsed_ms: float
    # Reader details (crop, rotation, timings) when the input was an image.
    reader: object | None = None

    @property
    def lines(self) -> tuple[str, ...] | None:
        return self.report.lines if self.report else None

    def to_json(self) -> dict[str, object]:
        fields: dict[str, object] = {
            "source": self.source,
            "mrz": None,
            "format": None,
            "document_type": None,
            "issuing_state": None,
            "document_number": None,
            "nationality": None,
            "birth_date": None,
            "expiry_date": None,
            "sex": None,
            "surname": None,
            "given_names": None,
            "valid": False,
            "checks": {},
        }
        if self.report is not None:
            fields.update(self.report.to_json())
        fields["read_status"] = self.repair.status.value if self.repair else None
        fields["confidence"] = round(self.repair.confidence, 3) if self.repair else None
        fields["lookup"] = self.lookup.to_json()
        fields["error"] = self.error
        fields["elapsed_ms"] = round(self.elapsed_ms, 1)
        return fields


def _new_scan_id() -> str:
    return uuid.uuid4().hex[:12]


def check_text(
    lines: Sequence[str] | str,
    client: LookupClient,
    *,
    source: str = "text",
    today: dt.date | None = None,
) -> ScanOutcome:
    """Check MRZ text typed, pasted or sent by a reader that does its own OCR."""
    started = time.perf_counter()
    scan_id = _new_scan_id()
    try:
        cleaned = normalize_lines(lines)
    except MRZError as exc:
        return _not_checked(scan_id, source, str(exc), started)
    outcome = repair_text(cleaned, today=today)
    return _finish(scan_id, source, outcome, client, started, reader=None)


def check_repaired(
    outcome: RepairOutcome,
    client: LookupClient,
    *,
    source: str,
    reader: object | None = None,
    started: float | None = None,
) -> ScanOutcome:
    """Look up a reading the image reader already repaired."""
    return _finish(
        _new_scan_id(),
        source,
        outcome,
        client,
        started if started is not None else time.perf_counter(),
        reader=reader,
    )


def check_image(
    image: np.ndarray | Path,
    client: LookupClient,
    *,
    source: str | None = None,
) -> ScanOutcome:
    """Read the MRZ from an image (array or file) and check the document."""
    from kiosk import reader  # OpenCV is loaded only when images are read

    started = time.perf_counter()
    scan_id = _new_scan_id()
    label = source or (str(image) if isinstance(image, Path) else "image")
    try:
        if isinstance(image, Path):
            result = reader.read_file(image)
        else:
            result = reader.read_image(image)
    except (ImageError, ReaderError) as exc:
        logger.warning("scan %s: image not read: %s", scan_id, type(exc).__name__)
        return _not_checked(scan_id, label, str(exc), started)
    if result.repair is None:
        reason = result.rejection or "MRZ not read"
        return _not_checked(scan_id, label, reason, started, reader=result)
    return _finish(scan_id, label, result.repair, client, started, reader=result)


def _not_checked(
    scan_id: str,
    source: str,
    reason: str,
    started: float,
    *,
    reader: object | None = None,
) -> ScanOutcome:
    answer = unknown(reason, source="kiosk")
    return ScanOutcome(
        scan_id,
        source,
        None,
        None,
        answer,
        reason,
        (time.perf_counter() - started) * 1000,
        reader,
    )


def _finish(
    scan_id: str,
    source: str,
    outcome: RepairOutcome,
    client: LookupClient,
    started: float,
    *,
    reader: object | None,
) -> ScanOutcome:
    report = outcome.report
    if report is None:
        reason = outcome.reason or "MRZ not read"
        return _not_checked(scan_id, source, reason, started, reader=reader)

    error: str | None = None
    if not outcome.ok:
        error = _rescan_reason(outcome)
    try:
        key = DocumentKey.create(
            report.issuing_state, report.document_type, report.document_number
        )
    except InvalidRecord as exc:
        answer = unknown(str(exc), source="kiosk")
        return ScanOutcome(
            scan_id,
            source,
            report,
            outcome,
            answer,
            str(exc),
            (time.perf_counter() - started) * 1000,
            reader,
        )

    answer = client.lookup(key)
    answer = _guard_no_hit(answer, outcome)
    elapsed = (time.perf_counter() - started) * 1000
    logger.info(
        "scan %s: read %s, lookup %s in %.0f ms",
        scan_id,
        outcome.status.value,
        answer.result.value,
        elapsed,
    )
    return ScanOutcome(scan_id, source, report, outcome, answer, error, elapsed, reader)


def _rescan_reason(outcome: RepairOutcome) -> str:
    if outcome.status is RepairStatus.AMBIGUOUS:
        return f"uncertain reading, rescan the document: {outcome.reason}"
    return f"MRZ check failed, rescan the document: {outcome.reason}"


def _guard_no_hit(answer: LookupAnswer, outcome: RepairOutcome) -> LookupAnswer:
    """Turn a NO_HIT on an unconfirmed reading into UNKNOWN.

    A HIT or POSSIBLE on a doubtful reading is still shown, because the
    officer must see it; a NO_HIT is only trustworthy when the document
    number the lookup used is confirmed by its check digits.
    """
    if answer.result is not Result.NO_HIT or outcome.ok:
        return answer
    return dataclasses.replace(
        answer,
        result=Result.UNKNOWN,
        reason="the document number was not read with certainty; rescan the document",
    )
