"""Wording rules of the officer screen, checked without a terminal."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import pytest

from backend.records import LookupAnswer, Result
from kiosk.lookup.base import LOOKALIKE_MATCH, BackendState, BackendStatus
from kiosk.pipeline import check_text
from kiosk.tui.entry import validate_entry
from kiosk.tui.officer import columns_that_fit
from kiosk.tui.present import (
    Verdict,
    banner_for,
    format_age,
    mask_number,
    replaces_on_screen,
    warning_lines,
)
from kiosk.tui.widgets import describe_backend
from tests.tui.conftest import (
    FROZEN_NOW,
    STOLEN_NUMBER,
    MemoryLookup,
    passport,
)


@pytest.mark.parametrize(
    ("number", "shown"),
    [("L898902C3", "•••2C3"), ("AB<<", "•••AB"), ("", "-"), (None, "-")],
)
def test_mask_number(number: str | None, shown: str) -> None:
    assert mask_number(number) == shown


def test_verdicts_differ_without_colour() -> None:
    glyphs = {verdict.glyph for verdict in Verdict}
    titles = {verdict.title for verdict in Verdict}
    assert len(glyphs) == len(Verdict)
    assert len(titles) == len(Verdict)


@pytest.mark.parametrize("result", list(Result))
def test_banner_never_says_valid(client: MemoryLookup, result: Result) -> None:
    outcome = check_text(passport("C01X00T47"), client, today=FROZEN_NOW.date())
    outcome = dataclasses.replace(
        outcome, lookup=LookupAnswer(result, data_version="v1", reason="timed out")
    )
    view = banner_for(outcome, queued=True)
    words = " ".join((view.headline, *view.details))
    assert not re.search(r"\bvalid\b", words, re.IGNORECASE)


def test_no_record_banner_names_data_version(client: MemoryLookup) -> None:
    outcome = check_text(passport("C01X00T47"), client, today=FROZEN_NOW.date())
    view = banner_for(outcome)
    assert view.verdict is Verdict.NO_RECORD
    assert any("7-20261204T060000Z" in line for line in view.details)


def test_not_checked_banner_promises_recheck_only_when_queued(
    client: MemoryLookup,
) -> None:
    client.online = False
    outcome = check_text(passport(STOLEN_NUMBER), client, today=FROZEN_NOW.date())
    queued = " ".join(banner_for(outcome, queued=True).details)
    not_queued = " ".join(banner_for(outcome, queued=False).details)
    assert "Queued for re-check" in queued
    assert "Queued for re-check" not in not_queued
    assert "connection refused" in not_queued


def test_warnings_list_expired_document(client: MemoryLookup) -> None:
    lines = passport("C01X00T47")
    outcome = check_text(lines, client, today=FROZEN_NOW.date().replace(year=2031))
    assert any("expired" in line.lower() for line in warning_lines(outcome))


def test_entry_waits_for_length() -> None:
    state = validate_entry("P<UTOERIK")
    assert state.format_name == "TD3"
    assert not state.ready
    assert state.line_states[0].summary() == "line 1: 9/44"


def test_entry_flags_bad_character() -> None:
    state = validate_entry("P<UTO eriksson")
    assert "position 6: space is not allowed" in state.line_states[0].problems


def test_entry_flags_scanner_unread_mark() -> None:
    state = validate_entry("P<UTO_")
    assert any("unread by the scanner" in p for p in state.line_states[0].problems)


def test_entry_card_length_open_until_second_line() -> None:
    first = "I<UTOD231458907<<<<<<<<<<<<<<<"
    assert validate_entry(first).line_states[0].expected == (30, 36)
    assert validate_entry(first + "\n7408").line_states[0].expected == (30,)


def test_entry_complete_passport() -> None:
    lines = passport(STOLEN_NUMBER)
    state = validate_entry("\n".join(lines) + "\n")
    assert state.ready
    assert state.expected_lines == 2
    assert all(ok for _, ok in state.line_states[1].checks)


def test_entry_extra_line_reported() -> None:
    lines = passport(STOLEN_NUMBER)
    state = validate_entry("\n".join([*lines, lines[0]]))
    assert not state.ready
    assert state.errors


@pytest.mark.parametrize(
    ("status", "shown"),
    [
        (
            BackendStatus(BackendState.ONLINE, "9-x", "ok", queued_rechecks=0),
            "online, data 9-x",
        ),
        (
            BackendStatus(
                BackendState.OFFLINE, "8-x", "copy", data_age=dt.timedelta(hours=5)
            ),
            "OFFLINE: offline copy 8-x, 5 h old",
        ),
        (
            BackendStatus(
                BackendState.UNREACHABLE, None, "connection refused", queued_rechecks=2
            ),
            "UNREACHABLE: connection refused; 2 queued for re-check",
        ),
        (
            BackendStatus(BackendState.EMBEDDED, "1-x", "list"),
            "embedded list, data 1-x",
        ),
        (None, "checking the lookup backend…"),
    ],
)
def test_describe_backend(status: BackendStatus | None, shown: str) -> None:
    assert describe_backend(status) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(45, "45 s"), (600, "10 min"), (5 * 3600, "5 h"), (3 * 86400, "3 d")],
)
def test_format_age(seconds: int, shown: str) -> None:
    assert format_age(dt.timedelta(seconds=seconds)) == shown


def test_not_checked_banner_without_late_alerts(client: MemoryLookup) -> None:
    client.online = False
    outcome = check_text(passport(STOLEN_NUMBER), client, today=FROZEN_NOW.date())
    details = " ".join(banner_for(outcome, queued=True, late_alerts=False).details)
    assert "Queued for re-check" in details
    assert "late HIT will be raised" not in details


@pytest.mark.parametrize(
    ("available", "count"),
    [(100, 4), (44, 4), (43, 3), (30, 2), (27, 1), (5, 1), (0, 1)],
)
def test_columns_that_fit(available: int, count: int) -> None:
    # Render widths with one cell of padding on either side: 18, 10, 10, 6.
    assert columns_that_fit([16, 8, 8, 4], available, padding=1) == count


@pytest.mark.parametrize(
    ("late", "shown", "replaces"),
    [
        (Verdict.HIT, Verdict.NO_RECORD, True),
        (Verdict.HIT, Verdict.NOT_CHECKED, True),
        (Verdict.HIT, Verdict.POSSIBLE, True),
        (Verdict.HIT, Verdict.HIT, True),
        (Verdict.POSSIBLE, Verdict.NO_RECORD, True),
        (Verdict.POSSIBLE, Verdict.NOT_CHECKED, True),
        (Verdict.POSSIBLE, Verdict.POSSIBLE, True),
        (Verdict.POSSIBLE, Verdict.HIT, False),
    ],
)
def test_late_verdict_replaces_on_screen(
    late: Verdict, shown: Verdict, replaces: bool
) -> None:
    assert replaces_on_screen(late, shown) is replaces


@pytest.mark.parametrize(
    ("reason", "why"),
    [
        (LOOKALIKE_MATCH, "a look-alike reading of the number matches"),
        (None, "O/0, I/1 or leading zeros differ"),
    ],
)
def test_possible_banner_names_why(
    client: MemoryLookup, reason: str | None, why: str
) -> None:
    outcome = check_text(passport(STOLEN_NUMBER), client, today=FROZEN_NOW.date())
    possible = dataclasses.replace(
        outcome.lookup, result=Result.POSSIBLE, reason=reason
    )

    view = banner_for(dataclasses.replace(outcome, lookup=possible))

    assert view.verdict is Verdict.POSSIBLE
    assert any(f"({why})" in line for line in view.details)
