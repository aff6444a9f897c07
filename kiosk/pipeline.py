"""One check of one document: MRZ text or image in, verdict out.

The terminal app, the `kiosk scan` command and the tester tools all call
these functions, so every way into the kiosk applies the same rules. The
central rule is that a NO_HIT is shown only when the lookup really ran on a
key the kiosk is sure of. Every other case is UNKNOWN.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
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
from kiosk.mrz import LAYOUTS, MrzReport, RepairOutcome, RepairStatus, repair_text
from kiosk.mrz.parser import normalize_lines
from kiosk.mrz.states import is_known_code

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
        reason = _with_next_step(result.rejection or "MRZ not read")
        return _not_checked(scan_id, label, reason, started, reader=result)
    return _finish(
        scan_id,
        label,
        result.repair,
        client,
        started,
        reader=result,
        reader_doubt=result.rejection,
        state_candidates=_state_candidates(result.repair, result.alternatives),
    )


_NEXT_STEP = (
    "scan the document again with the whole MRZ in view, flat and without glare"
)


def _with_next_step(reason: str) -> str:
    """Append what to do next to a reader's reason unless it names a step."""
    if "scan" in reason or "image" in reason:
        return reason
    return f"{reason}: {_NEXT_STEP}"


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
    reader_doubt: str | None = None,
    state_candidates: Sequence[str] = (),
) -> ScanOutcome:
    report = outcome.report
    if report is None:
        reason = outcome.reason or "MRZ not read"
        return _not_checked(scan_id, source, reason, started, reader=reader)

    error: str | None = None
    if not outcome.ok:
        error = _rescan_reason(outcome)
    elif reader_doubt:
        error = f"uncertain reading, rescan the document: {reader_doubt}"
    try:
        key = DocumentKey.create(
            report.issuing_state, report.document_type, report.document_number
        )
    except InvalidRecord as exc:
        # A reading that failed its checks explains the bad key better than
        # the key's own complaint ("invalid issuing state '<<Y'").
        message = error or str(exc)
        answer = unknown(message, source="kiosk")
        return ScanOutcome(
            scan_id,
            source,
            report,
            outcome,
            answer,
            message,
            (time.perf_counter() - started) * 1000,
            reader,
        )

    answer = client.lookup(key)
    if answer.result is Result.NO_HIT:
        # NOTE: a second request, on most checks. Sending the look-alikes with
        # the key in one request would also queue each of them for a re-check
        # whenever the service is down, so they are asked for only after a
        # NO_HIT.
        variants = lookalike_keys(report, state_candidates)
        answer = _check_lookalikes(answer, variants, client)
    answer = _guard_no_hit(answer, _distrust_reason(outcome, report, reader_doubt))
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


def _distrust_reason(
    outcome: RepairOutcome, report: MrzReport, reader_doubt: str | None
) -> str | None:
    """Say why a NO_HIT on this reading could be wrong, or return None.

    The lookup key is the issuing state and the document number. Check digits
    confirm the number but nothing confirms the state, so a state that is no
    ICAO code is treated like an unconfirmed number.
    """
    if not outcome.ok:
        return "the document number was not read with certainty; rescan the document"
    if reader_doubt:
        return f"the reading is uncertain ({reader_doubt}); rescan the document"
    if not is_known_code(report.issuing_state):
        return (
            f"issuing state {report.issuing_state!r} is not an ICAO code, so the "
            "lookup may have used a misread state; check the document and rescan "
            "or type the MRZ"
        )
    return None


def _guard_no_hit(answer: LookupAnswer, distrust: str | None) -> LookupAnswer:
    """Turn a NO_HIT on an untrusted reading into UNKNOWN.

    A HIT or POSSIBLE on a doubtful reading is still shown, because the
    officer must see it. A NO_HIT is trustworthy only when the key the lookup
    used is certain.
    """
    if answer.result is not Result.NO_HIT or distrust is None:
        return answer
    return dataclasses.replace(answer, result=Result.UNKNOWN, reason=distrust)


# Characters whose check-digit values differ by a multiple of 10, so that one
# read as the other leaves every check digit intact, and which OCR-B glyphs or
# a worn print make look alike. The pairs `<`/`0`, `<`/`K`, `A`/`K`, `I`/`S`
# and `B`/`L` are the classic ones; 8/S/I, 1/B/L and 6/G/Q share values too.
LOOKALIKE_GROUPS = ("<0K", "AK", "IS8", "BL1", "6GQ")
_LOOKALIKES: dict[str, str] = {}
for _group in LOOKALIKE_GROUPS:
    for _char in _group:
        _LOOKALIKES[_char] = _LOOKALIKES.get(_char, "") + _group.replace(_char, "")
# Upper bound of extra keys looked up for one document.
MAX_VARIANT_KEYS = 64


def lookalike_keys(
    report: MrzReport, state_candidates: Sequence[str] = ()
) -> list[DocumentKey]:
    """Return the keys of readings the check digits cannot tell from this one.

    Each variant swaps one character of the document number field (fillers
    included, so `W3180689<` also yields `W31806890`) for a look-alike with
    the same check-digit value, and takes each plausible issuing state.
    """
    field = LAYOUTS[report.format].field("document_number")
    raw = field.take(report.lines)
    if len(report.document_number) > len(raw.rstrip("<")):
        # The number overflows into the optional data: vary the whole number.
        raw = report.document_number
    numbers = set()
    for index, char in enumerate(raw):
        for other in _LOOKALIKES.get(char, ""):
            numbers.add(raw[:index] + other + raw[index + 1 :])
    states = [report.issuing_state, *state_candidates]
    keys: list[DocumentKey] = []
    seen = set()
    for state in dict.fromkeys(states):
        for number in [raw, *sorted(numbers)]:
            if state == report.issuing_state and number == raw:
                continue
            try:
                key = DocumentKey.create(state, report.document_type, number)
            except InvalidRecord:
                continue
            if (key.issuing_state, key.document_number) in seen:
                continue
            seen.add((key.issuing_state, key.document_number))
            keys.append(key)
    main = (report.issuing_state, report.document_number)
    return [k for k in keys if (k.issuing_state, k.document_number) != main][
        :MAX_VARIANT_KEYS
    ]


def _check_lookalikes(
    answer: LookupAnswer, variants: list[DocumentKey], client: LookupClient
) -> LookupAnswer:
    """Look the variants up; a match among them makes a NO_HIT a POSSIBLE."""
    if not variants:
        return answer
    answers = client.lookup_many(variants)
    records = tuple(
        record
        for variant in answers
        if variant.result in (Result.HIT, Result.POSSIBLE)
        for record in variant.records
    )
    if records:
        return dataclasses.replace(
            answer,
            result=Result.POSSIBLE,
            records=records,
            reason="a look-alike reading of the document matches a reported "
            "document; compare the record with the document",
        )
    failed = [variant for variant in answers if variant.result is Result.UNKNOWN]
    if failed:
        return dataclasses.replace(
            answer,
            result=Result.UNKNOWN,
            reason=f"look-alike readings could not be checked: {failed[0].reason}",
        )
    return answer


def _state_candidates(outcome: RepairOutcome, alternatives: object) -> list[str]:
    """Return the other ICAO codes the recogniser found plausible for the
    issuing state, from its per-position alternatives."""
    report = outcome.report
    if report is None or not isinstance(alternatives, list):
        return []
    field = LAYOUTS[report.format].field("issuing_state")
    try:
        options = [
            [c for c, p in alternatives[field.line][pos] if p >= _STATE_ALTERNATIVE_P]
            for pos in range(field.start, field.end)
        ]
    except (IndexError, TypeError, ValueError):
        return []
    codes = {"".join(combo) for combo in itertools.product(*options)}
    codes.discard(report.issuing_state)
    return sorted(code for code in codes if is_known_code(code))


# A recogniser alternative at least this likely is worth a lookup of its own.
_STATE_ALTERNATIVE_P = 0.02
