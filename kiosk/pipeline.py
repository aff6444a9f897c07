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
from kiosk.lookup.base import merge_lookalikes, needs_lookalikes
from kiosk.lookup.deadline import shared_deadline
from kiosk.mrz import LAYOUTS, MrzReport, RepairOutcome, RepairStatus, repair_text
from kiosk.mrz.formats import Field
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
        # These messages name at most the image file, never MRZ text. repr
        # keeps a newline or an undecodable byte in a file name from
        # breaking the log line.
        logger.warning(
            "scan %s: image not read: %s: %r", scan_id, type(exc).__name__, str(exc)
        )
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
        alternatives=result.alternatives,
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
    alternatives: object = None,
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

    # One deadline covers both lookups and their retries, so a silent
    # service delays the document by one time limit, not two.
    variants = plan_lookalikes(report, state_candidates, alternatives)
    with shared_deadline():
        # NOTE: a second request, on most checks. The client looks the
        # variants up only after a NO_HIT or UNKNOWN for the key.
        answer, variant_answers = client.lookup_document(key, variants.keys)
    if needs_lookalikes(answer):
        answer = _check_lookalikes(answer, variant_answers, variants)
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


# Groups of characters whose check-digit values differ by a multiple of 10,
# so that one read as another leaves every check digit intact, and which the
# recogniser or a worn print can plausibly confuse. Within a group, any
# character may be misread as any other.
#
# `<`/`0`/`K`, `A`/`K`, `I`/`S`/`8`, `B`/`L`/`1` and `6`/`G`/`Q` are the
# classic OCR-B confusions. The other pairs come from `python -m
# tools.probe_lookalikes`, which damages rendered OCR-B and counts the cells
# where the glyph model gives the partner a probability of 0.02 or more. A
# pair is added when that share reaches 25 % in one direction: `F`/`P` (41 %),
# `H`/`R` (37 %), `A`/`<` (27 %) and `N`/`X` (27 %). `E`/`Y` (17 %), `T`/`9`
# (16 %), `U`/`0` (10 %) and `W`/`M` (1 %) stay out, because each pair adds
# lookup keys, and each key is one more chance of a false POSSIBLE that the
# officer must clear. The classic pairs stay even where the probe rates them
# low (`B`/`L` 2 %).
# NOTE: the probe runs one font through the glyph model only. Worn printing
# and the Tesseract pass may confuse other pairs.
LOOKALIKE_GROUPS = ("<0K", "AK", "IS8", "BL1", "6GQ", "FP", "HR", "A<", "NX")
_LOOKALIKES: dict[str, str] = {}
for _group in LOOKALIKE_GROUPS:
    for _char in _group:
        _others = _LOOKALIKES.get(_char, "") + _group.replace(_char, "")
        _LOOKALIKES[_char] = "".join(dict.fromkeys(_others))
# Upper bound of extra keys looked up for one document. For 15,000 random
# TD3 numbers (8 or 9 digits, one or two letters then digits, 9 letters or
# digits), plan_lookalikes gave a median of 25 to 39 keys per shape and a
# maximum of 179. So the bound cuts only numbers made almost wholly of
# look-alike characters.
# Those get UNKNOWN rather than a NO_HIT: a skipped variant could be the
# printed number of a reported document.
MAX_VARIANT_KEYS = 256
# Probability given to a character the recogniser did not list at a position.
_UNLISTED_P = 1e-4


@dataclass(frozen=True, slots=True)
class LookalikeKeys:
    """The keys to look up for a document's look-alike readings.

    `keys` are ordered by fewest misreads first, then by the recogniser's
    probability. `skipped` counts the variants cut by MAX_VARIANT_KEYS.
    """

    keys: list[DocumentKey]
    skipped: int


def lookalike_keys(
    report: MrzReport,
    state_candidates: Sequence[str] = (),
    alternatives: object = None,
) -> list[DocumentKey]:
    """Return the keys of readings the check digits cannot tell from this one.

    See `plan_lookalikes`; this returns only the keys kept under the bound.
    """
    return plan_lookalikes(report, state_candidates, alternatives).keys


def plan_lookalikes(
    report: MrzReport,
    state_candidates: Sequence[str] = (),
    alternatives: object = None,
) -> LookalikeKeys:
    """Build the keys of readings the check digits cannot tell from this one.

    A variant swaps one or two characters of the document number field
    (fillers included, so `W3180689<` also yields `W31806890`) for look-alikes
    with the same check-digit value. Each plausible issuing state is taken
    too, with the number as read or with one swap. `alternatives` are the
    recogniser's per-position candidates, used to rank the variants. At most
    MAX_VARIANT_KEYS keys are kept: single misreads first, so a cut drops only
    the least likely double misreads, and always the same ones.
    """
    field = LAYOUTS[report.format].field("document_number")
    raw = field.take(report.lines)
    if len(report.document_number) > len(raw.rstrip("<")):
        # The number overflows into the optional data: vary the whole number.
        raw = report.document_number
    field_p = _field_probabilities(field, alternatives)
    swaps: list[tuple[int, str, float]] = []
    for index, char in enumerate(raw):
        # An overflowing number has no recogniser data past the field.
        listed = field_p[index] if index < len(field_p) else {}
        for other in _LOOKALIKES.get(char, ""):
            swaps.append((index, other, listed.get(other, _UNLISTED_P)))
    singles = [(_swap(raw, [(i, c)]), p) for i, c, p in swaps]
    doubles = [
        (_swap(raw, [(i, c), (j, d)]), p * q)
        for (i, c, p), (j, d, q) in itertools.combinations(swaps, 2)
        if i != j
    ]
    states = list(dict.fromkeys([report.issuing_state, *state_candidates]))
    # Sorted by (misread characters, -probability, state rank, number); a
    # state candidate counts as one misread character.
    ranked = [(1, -p, 0, number) for number, p in singles]
    ranked += [(2, -p, 0, number) for number, p in doubles]
    for rank in range(1, len(states)):
        ranked.append((1, -_STATE_ALTERNATIVE_P, rank, raw))
        ranked += [(2, -p * _STATE_ALTERNATIVE_P, rank, n) for n, p in singles]
    ranked.sort()

    main = (report.issuing_state, report.document_number)
    keys: list[DocumentKey] = []
    seen = {main}
    for _, _, rank, number in ranked:
        try:
            key = DocumentKey.create(states[rank], report.document_type, number)
        except InvalidRecord:
            continue
        if (key.issuing_state, key.document_number) in seen:
            continue
        seen.add((key.issuing_state, key.document_number))
        keys.append(key)
    kept = keys[:MAX_VARIANT_KEYS]
    return LookalikeKeys(kept, len(keys) - len(kept))


def _swap(text: str, changes: Sequence[tuple[int, str]]) -> str:
    chars = list(text)
    for index, char in changes:
        chars[index] = char
    return "".join(chars)


def _field_probabilities(field: Field, alternatives: object) -> list[dict[str, float]]:
    """Return the recogniser's {char: probability} at each position of the
    field, or an empty list when `alternatives` do not cover it."""
    if not isinstance(alternatives, list):
        return []
    try:
        return [
            {str(char): float(p) for char, p in alternatives[field.line][pos]}
            for pos in range(field.start, field.end)
        ]
    except (IndexError, TypeError, ValueError):
        return []


def _check_lookalikes(
    answer: LookupAnswer,
    variant_answers: Sequence[LookupAnswer],
    variants: LookalikeKeys,
) -> LookupAnswer:
    """Fold the variants' answers into the key's NO_HIT or UNKNOWN answer.

    A match among them makes it a POSSIBLE. A NO_HIT whose variants were not
    all looked up, because a lookup failed or the bound cut them, becomes
    UNKNOWN.
    """
    answer = merge_lookalikes(answer, variant_answers)
    if answer.result is not Result.NO_HIT:
        return answer
    if variants.skipped:
        return dataclasses.replace(
            answer,
            result=Result.UNKNOWN,
            reason=f"{variants.skipped} look-alike readings of the document "
            f"number were not checked (limit {MAX_VARIANT_KEYS}); compare the "
            "number with the document and check it by hand",
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
