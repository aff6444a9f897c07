"""What the officer's screens show for one scan, as plain data.

The Textual widgets only lay these values out. The wording rules live here
and are tested without a terminal: four verdicts, each with its own words
and glyph, a NO RECORD that never says "valid", and masked document numbers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from dataclasses import dataclass

from backend.records import LookupAnswer, Record, Result
from kiosk.lookup.base import LOOKALIKE_MATCH
from kiosk.mrz import MrzReport
from kiosk.pipeline import ScanOutcome

# Characters of a document number left visible in history and on the banner.
VISIBLE_DIGITS = 3


class Verdict(enum.Enum):
    """The four answers an officer can get, with their banner words and glyph.

    Each glyph has its own shape and each title its own words, so the banner
    reads the same on a monochrome terminal. The glyphs are one cell wide in
    Rich's width table, and tmux draws them one cell wide too.
    """

    HIT = ("hit", "✖", "HIT")
    POSSIBLE = ("possible", "≈", "POSSIBLE MATCH")
    NO_RECORD = ("no-record", "○", "NO RECORD")
    NOT_CHECKED = ("not-checked", "?", "NOT CHECKED")

    def __init__(self, css_class: str, glyph: str, title: str) -> None:
        self.css_class = css_class
        self.glyph = glyph
        self.title = title

    @property
    def label(self) -> str:
        """Glyph and words, as history rows and notifications show them."""
        return f"{self.glyph} {self.title}"


_VERDICTS = {
    Result.HIT: Verdict.HIT,
    Result.POSSIBLE: Verdict.POSSIBLE,
    Result.NO_HIT: Verdict.NO_RECORD,
    Result.UNKNOWN: Verdict.NOT_CHECKED,
}


def verdict_of(answer: LookupAnswer) -> Verdict:
    return _VERDICTS[answer.result]


def verdict_of_result(result: Result) -> Verdict:
    return _VERDICTS[result]


# How much each verdict demands of the officer: a late answer replaces the
# one on screen only when it demands as much or more.
_SEVERITY = {
    Verdict.NO_RECORD: 0,
    Verdict.NOT_CHECKED: 0,
    Verdict.POSSIBLE: 1,
    Verdict.HIT: 2,
}


def replaces_on_screen(late: Verdict, shown: Verdict) -> bool:
    """Return whether a late verdict from a re-check replaces the one shown.

    A late HIT replaces anything, and a late POSSIBLE MATCH replaces
    everything but a HIT, so a re-check never turns a HIT into less.
    """
    return _SEVERITY[late] >= _SEVERITY[shown]


@dataclass(frozen=True, slots=True)
class BannerView:
    verdict: Verdict
    headline: str
    details: tuple[str, ...]


def mask_number(number: str | None) -> str:
    """Return the document number with all but its last characters hidden.

    The mask has a fixed width so that it does not reveal the length.
    """
    if not number:
        return "-"
    cleaned = number.replace("<", "")
    return "•••" + cleaned[-VISIBLE_DIGITS:]


def banner_for(
    outcome: ScanOutcome, *, queued: bool = False, late_alerts: bool = True
) -> BannerView:
    """Build the banner of one outcome.

    `queued` is True when the lookup client keeps a NOT CHECKED document, or
    one answered from the offline copy, for a re-check when the link
    returns. `late_alerts` is True when a late HIT from that re-check
    reaches this screen, so the banner can promise it.
    """
    answer = outcome.lookup
    verdict = verdict_of(answer)
    if verdict is Verdict.HIT:
        details = _hit_details(answer)
    elif verdict is Verdict.POSSIBLE:
        details = _possible_details(answer)
    elif verdict is Verdict.NO_RECORD:
        details = (
            "Not on the list of reported stolen or lost documents.",
            f"Data version {answer.data_version or 'not stated'} ({answer.source}).",
        )
        if answer.source == "offline":
            follow_up = "queued for an online re-check" if queued else "not re-checked"
            details += (f"Answered from the offline copy, {follow_up}.",)
    else:
        details = _not_checked_details(outcome, queued=queued, late_alerts=late_alerts)
    return BannerView(verdict, f"{verdict.glyph}  {verdict.title}", details)


def late_banner_for(
    outcome: ScanOutcome, earlier: Verdict, at: dt.datetime
) -> BannerView:
    """Build the banner of a late HIT or POSSIBLE MATCH from a re-check that
    replaces the `earlier` verdict of the same document on screen."""
    view = banner_for(outcome)
    verdict = view.verdict
    replaced = (
        f"Re-check at {at:%H:%M:%S} replaced the earlier {earlier.title} "
        "of this document."
    )
    return dataclasses.replace(
        view,
        headline=f"{verdict.glyph}  LATE {verdict.title} from re-check",
        details=(replaced, *view.details),
    )


def _hit_details(answer: LookupAnswer) -> tuple[str, ...]:
    rows = ["Reported document: hold it and follow the procedure."]
    for record in answer.records:
        rows.append(
            f"{record_status(record)}, reported {record.reported_on.isoformat()} "
            f"by {record.reporting_country}, reference {record.reference}."
        )
    if answer.type_mismatch:
        rows.append("The record's document type differs from the scanned one.")
    return tuple(rows)


# Similar records listed on the banner; more are counted, not listed.
POSSIBLE_RECORDS_SHOWN = 3


def _possible_details(answer: LookupAnswer) -> tuple[str, ...]:
    count = len(answer.records)
    noun = "record is" if count == 1 else "records are"
    difference = (
        "a look-alike reading of the number matches"
        if (answer.reason or "").startswith(LOOKALIKE_MATCH)
        else "O/0, I/1 or leading zeros differ"
    )
    rows = [
        f"{count} similar {noun} on the list ({difference}).",
        "Verify the document number against the record before you act.",
    ]
    for record in answer.records[:POSSIBLE_RECORDS_SHOWN]:
        rows.append(
            f"{record_status(record)}: {record.issuing_state} "
            f"{record.document_type} {record.document_number}, reported "
            f"{record.reported_on.isoformat()}, reference {record.reference}."
        )
    if count > POSSIBLE_RECORDS_SHOWN:
        rows.append(f"{count - POSSIBLE_RECORDS_SHOWN} more similar records.")
    return tuple(rows)


def _not_checked_details(
    outcome: ScanOutcome, *, queued: bool, late_alerts: bool
) -> tuple[str, ...]:
    reason = outcome.lookup.reason or outcome.error or "no reason given"
    rows = [f"Why: {_strip_prefix(reason)}.".replace("..", ".")]
    rows.append("The list was not searched: press r to retry, or rescan.")
    if queued and late_alerts:
        rows.append("Queued for re-check: a late HIT will be raised here.")
    elif queued:
        rows.append("Queued for re-check; its result is logged, not shown here.")
    return tuple(rows)


def _strip_prefix(reason: str) -> str:
    prefix = "not checked: "
    return reason[len(prefix) :] if reason.startswith(prefix) else reason


def record_status(record: Record) -> str:
    return record.status.value.replace("_", " ").capitalize()


def record_rows(record: Record) -> list[tuple[str, str]]:
    """Return every field of a reported record as (label, value) rows."""
    return [
        ("Status", record_status(record)),
        ("Issuing state", record.issuing_state),
        ("Document type", record.document_type),
        ("Document number", record.document_number),
        ("Reported on", record.reported_on.isoformat()),
        ("Reporting country", record.reporting_country),
        ("Reference", record.reference),
        ("Issue date", record.issue_date.isoformat() if record.issue_date else "-"),
        (
            "Expiry date",
            record.expiry_date.isoformat() if record.expiry_date else "-",
        ),
    ]


def field_rows(report: MrzReport) -> list[tuple[str, str]]:
    """Return the parsed fields as (label, value) rows, invalid ones marked."""

    def mark(name: str, value: str) -> str:
        return f"{value}  (invalid)" if name in report.invalid_fields else value

    born = report.birth_date.isoformat() if report.birth_date else "-"
    expires = report.expiry_date.isoformat() if report.expiry_date else "-"
    return [
        ("Format", report.format.value),
        ("Document type", report.document_type),
        ("Issuing state", mark("issuing_state", report.issuing_state)),
        ("Document number", mark("document_number", report.document_number)),
        ("Surname", report.surname or "-"),
        ("Given names", report.given_names or "-"),
        ("Nationality", mark("nationality", report.nationality or "-")),
        ("Date of birth", mark("birth_date", born)),
        ("Sex", report.sex or "unspecified"),
        ("Expiry date", mark("expiry_date", expires)),
    ]


def check_labels(report: MrzReport) -> list[tuple[str, str]]:
    """Return each check digit with "✓ ok" or "✗ FAILED"."""
    return [
        (name.replace("_", " "), "✓ ok" if passed else "✗ FAILED")
        for name, passed in report.checks.items()
    ]


def check_marks(report: MrzReport) -> list[tuple[str, bool]]:
    """Return each check digit as a short unbreakable mark, such as
    `✓ birth` or `✗ number FAILED`, with whether it passed."""
    marks = []
    for name, passed in report.checks.items():
        short = name.removeprefix("document_").removesuffix("_date")
        short = short.replace("_", "\u00a0")
        text = f"✓\u00a0{short}" if passed else f"✗\u00a0{short}\u00a0FAILED"
        marks.append((text, passed))
    return marks


def warning_lines(outcome: ScanOutcome) -> list[str]:
    """Return the warnings and reading problems an officer must notice."""
    rows: list[str] = []
    report = outcome.report
    if report is not None:
        rows.extend(f"⚠ {warning.message}" for warning in report.warnings)
        rows.extend(f"⚠ {error.message}" for error in report.errors)
    repair = outcome.repair
    if repair is not None and repair.corrections:
        count = len(repair.corrections)
        rows.append(f"• {count} character(s) corrected by the check digits")
    if outcome.error:
        rows.append(f"⚠ {outcome.error}")
    return rows


def format_age(age: dt.timedelta | None) -> str:
    """Return an age as `45 s`, `12 min`, `5 h` or `3 d`."""
    if age is None:
        return "age unknown"
    seconds = max(0, int(age.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"
