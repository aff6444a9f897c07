"""Officer flows through Pilot: HIT, NO RECORD, backend down, manual entry."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import re
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from textual import events
from textual.widgets import DataTable, TextArea

from backend.records import DocumentKey, LookupAnswer, Result, unknown
from kiosk.lookup.queue import RecheckQueue
from kiosk.pipeline import ScanOutcome, check_text
from kiosk.tui import modals
from kiosk.tui.app import KioskApp, LateHitRelay
from kiosk.tui.modals import HitModal, ManualEntryScreen
from kiosk.tui.widgets import ResultBanner
from tests.tui.conftest import (
    SIMILAR_NUMBER,
    STOLEN_NUMBER,
    MemoryLookup,
    frozen_clock,
    passport,
)

SIZE = (100, 32)


class BellCountingApp(KioskApp):
    def __init__(self, client: MemoryLookup) -> None:
        super().__init__(client, clock=frozen_clock, status_interval_s=0)
        self.bells = 0

    def bell(self) -> None:
        self.bells += 1


def banner_text(app: KioskApp) -> str:
    return str(app.officer.query_one(ResultBanner).render())


def history_rows(app: KioskApp) -> list[list[str]]:
    table = app.officer.query_one("#history", DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def settle(app: KioskApp, pilot: object, timeout_s: float = 10.0) -> None:
    """Wait until every started check is shown."""
    await pilot.pause()  # type: ignore[attr-defined]
    for _ in range(int(timeout_s / 0.02)):
        if app.scans_pending == 0:
            break
        await asyncio.sleep(0.02)
    assert app.scans_pending == 0, f"checks still running after {timeout_s} s"
    await pilot.pause()  # type: ignore[attr-defined]


@pytest.fixture
def ack_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Return the HIT dialog's clock, a one-item list that tests advance, with
    the one-second wait for quiet keys turned on."""
    now = [1000.0]
    monkeypatch.setattr(modals, "_monotonic", lambda: now[0])
    monkeypatch.setattr(HitModal, "quiet_s", 1.0)
    return now


async def show_hit(app: KioskApp, pilot: object) -> None:
    app.scan_lines(passport(STOLEN_NUMBER), source="test reader")
    await settle(app, pilot)
    assert isinstance(app.screen, HitModal)


@pytest.mark.parametrize("ack_key", ["enter", "a"])
async def test_hit_ignores_scanner_enter(
    client: MemoryLookup, ack_clock: list[float], ack_key: str
) -> None:
    # A keyboard-wedge scanner types the next document's MRZ and Enter
    # while the HIT is open, and that Enter must not acknowledge it.
    now = ack_clock
    app = BellCountingApp(client)
    async with app.run_test(size=SIZE) as pilot:
        await show_hit(app, pilot)

        # At once after the dialog opened.
        now[0] += 0.5
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, HitModal)

        now[0] += 5.0
        await pilot.press(*"P<UTOERIKSSON<<ANNA")
        now[0] += 0.05
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, HitModal)
        assert not app.ready_for_next.is_set()

        # Quiet for longer than quiet_s: the officer's Enter acknowledges.
        now[0] += 1.5
        await pilot.press(ack_key)
        await pilot.pause()
        assert not isinstance(app.screen, HitModal)
        assert app.ready_for_next.is_set()


async def test_hit_ignores_enter_in_same_burst(
    client: MemoryLookup, ack_clock: list[float]
) -> None:
    # A wedge's keys reach the app in one read. The dialog's own handler
    # gets the letters only after the priority Enter ran, so the app records
    # each key as it arrives.
    app = BellCountingApp(client)
    async with app.run_test(size=SIZE) as pilot:
        await show_hit(app, pilot)
        ack_clock[0] += 5.0
        for character in "PUTO":
            app.post_message(events.Key(character, character))
        app.post_message(events.Key("enter", "\r"))
        await pilot.pause()
        await pilot.pause()
        assert isinstance(app.screen, HitModal)


async def test_hit_needs_acknowledgement(client: MemoryLookup) -> None:
    app = BellCountingApp(client)
    async with app.run_test(size=SIZE) as pilot:
        app.scan_lines(passport(STOLEN_NUMBER), source="test reader")
        await settle(app, pilot)

        assert isinstance(app.screen, HitModal)
        assert app.bells == 1
        assert not app.ready_for_next.is_set()
        # Escape must not close a HIT.
        await pilot.press("escape")
        assert isinstance(app.screen, HitModal)
        record = app.screen.query_one("#hit-record", DataTable)
        values = [str(record.get_row_at(i)[1]) for i in range(record.row_count)]
        assert "Stolen" in values
        assert "TEST-2025-00042" in values

        await pilot.press("enter")
        await pilot.pause()
        assert not isinstance(app.screen, HitModal)
        assert app.ready_for_next.is_set()
        assert "HIT" in banner_text(app)
        rows = history_rows(app)
        assert rows[0][1] == "•••2C3"
        assert rows[0][0].startswith("✖ HIT")
        assert STOLEN_NUMBER not in str(rows)


async def test_no_record_shows_data_version(client: MemoryLookup) -> None:
    app = BellCountingApp(client)
    async with app.run_test(size=SIZE) as pilot:
        app.scan_lines(passport("C01X00T47"), source="test reader")
        await settle(app, pilot)

        text = banner_text(app)
        assert "○  NO RECORD" in text
        assert "7-20261204T060000Z" in text
        assert not re.search(r"\bvalid\b", text, re.IGNORECASE)
        assert app.bells == 0
        assert not isinstance(app.screen, HitModal)
        assert history_rows(app)[0][0] == "○ NO RECORD"


async def test_possible_match_asks_to_verify(client: MemoryLookup) -> None:
    app = BellCountingApp(client)
    async with app.run_test(size=SIZE) as pilot:
        app.scan_lines(passport(SIMILAR_NUMBER), source="test reader")
        await settle(app, pilot)

        text = banner_text(app)
        assert "≈  POSSIBLE MATCH" in text
        assert "Verify" in text
        assert "Lost: UTO P X01234567" in text
        assert "TEST-2024-00007" in text
        assert not isinstance(app.screen, HitModal)


async def test_backend_down_then_late_hit(client: MemoryLookup) -> None:
    app = BellCountingApp(client)
    async with app.run_test(size=SIZE) as pilot:
        client.online = False
        app.scan_lines(passport(STOLEN_NUMBER), source="test reader")
        await settle(app, pilot)

        text = banner_text(app)
        assert "?  NOT CHECKED" in text
        assert "connection refused" in text
        assert "Queued for re-check" in text
        assert "NO RECORD" not in text
        assert not isinstance(app.screen, HitModal)
        assert "UNREACHABLE" in str(app.officer.query_one("#status-bar").render())

        # The link returns; the queue re-checks from its own thread.
        client.online = True
        late = client.recheck()
        thread = threading.Thread(target=lambda: app.notify_late_hit(*late[0]))
        thread.start()
        thread.join()
        await pilot.pause()

        assert isinstance(app.screen, HitModal)
        assert "LATE HIT" in app.screen.heading
        assert app.bells == 1
        rows = history_rows(app)
        assert rows[0][0] == "✖ HIT\nlate, re-check"
        assert "→ HIT 09:30" in rows[1][0]
        await pilot.press("enter")
        assert not isinstance(app.screen, HitModal)


async def test_retry_after_not_checked(client: MemoryLookup) -> None:
    app = BellCountingApp(client)
    async with app.run_test(size=SIZE) as pilot:
        client.online = False
        app.scan_lines(passport("C01X00T47"), source="test reader")
        await settle(app, pilot)
        assert "NOT CHECKED" in banner_text(app)

        client.online = True
        await pilot.press("r")
        await settle(app, pilot)
        assert "NO RECORD" in banner_text(app)
        assert len(history_rows(app)) == 2


async def test_manual_entry_validates_and_checks(client: MemoryLookup) -> None:
    app = BellCountingApp(client)
    lines = passport("C01X00T47")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m")
        assert isinstance(app.screen, ManualEntryScreen)
        entry = app.screen
        area = entry.query_one("#entry-text", TextArea)

        # A wrong check digit shows up while the second line is typed.
        wrong = lines[1][:9] + str((int(lines[1][9]) + 1) % 10)
        app.post_message(events.Paste(lines[0] + "\n" + wrong))
        await pilot.pause()
        feedback = str(entry.query_one("#entry-feedback").render())
        assert "line 1: 44/44" in feedback
        assert "✗ document number FAILED" in feedback

        area.clear()
        app.post_message(events.Paste("\n".join(lines)))
        await pilot.pause()
        feedback = str(entry.query_one("#entry-feedback").render())
        assert "✓ document number ok" in feedback
        assert "Complete" in feedback
        # A keyboard-wedge reader ends with Enter, which submits the entry.
        await pilot.press("enter")
        await settle(app, pilot)

        assert not isinstance(app.screen, ManualEntryScreen)
        assert "NO RECORD" in banner_text(app)
        assert history_rows(app)[0][1] == "•••T47"


async def test_manual_entry_cancel(client: MemoryLookup) -> None:
    app = BellCountingApp(client)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m")
        await pilot.press("escape")
        assert not isinstance(app.screen, ManualEntryScreen)
        assert history_rows(app) == []
        assert "READY" in banner_text(app)


async def test_quit_closes_client(client: MemoryLookup) -> None:
    app = BellCountingApp(client)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert client.closed


@pytest.mark.parametrize("screen_key", ["f3", "f4"])
async def test_ctrl_q_quits_other_screens(
    client: MemoryLookup, screen_key: str
) -> None:
    app = BellCountingApp(client)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(screen_key)
        await pilot.pause()
        assert app.current_mode != "officer"
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert not app.is_running
    assert client.closed


async def test_late_hit_from_recheck_queue(
    client: MemoryLookup, tmp_path: Path
) -> None:
    relay = LateHitRelay()
    queue = RecheckQueue(tmp_path / "rechecks.sqlite3", on_late_hit=relay)
    app = BellCountingApp(client)
    async with app.run_test(size=SIZE) as pilot:
        client.online = False
        app.scan_lines(passport(STOLEN_NUMBER), source="test reader")
        await settle(app, pilot)
        key = DocumentKey.create("UTO", "P", STOLEN_NUMBER)
        queue.enqueue(key, unknown("connection refused", source="online"))
        relay.attach(app)

        client.online = True
        drain = threading.Thread(target=queue.drain, args=(client,))
        drain.start()
        drain.join()
        await pilot.pause()

        assert isinstance(app.screen, HitModal)
        assert "LATE HIT" in app.screen.heading
        assert len(queue) == 0
    queue.close()


async def test_relay_holds_answers_until_attached(client: MemoryLookup) -> None:
    relay = LateHitRelay()
    key = DocumentKey.create("UTO", "P", STOLEN_NUMBER)
    answer = client.lookup(key)
    relay(SimpleNamespace(key=key), answer)
    app = BellCountingApp(client)
    async with app.run_test(size=SIZE) as pilot:
        relay.attach(app)
        await pilot.pause()
        assert isinstance(app.screen, HitModal)


async def test_late_possible_notifies_without_modal(client: MemoryLookup) -> None:
    app = BellCountingApp(client)
    async with app.run_test(size=SIZE) as pilot:
        key = DocumentKey.create("UTO", "P", SIMILAR_NUMBER)
        app.notify_late_hit(key, client.lookup(key))
        await pilot.pause()
        assert not isinstance(app.screen, HitModal)
        assert app.bells == 1
        assert history_rows(app)[0][0] == "≈ POSSIBLE MATCH\nlate, re-check"


async def test_offline_no_record_says_queued(client: MemoryLookup) -> None:
    app = BellCountingApp(client)
    offline = dataclasses.replace(
        check_text(passport("C01X00T47"), client),
        lookup=LookupAnswer(
            Result.NO_HIT, data_version="6-20261203T060000Z", source="offline"
        ),
    )
    async with app.run_test(size=SIZE) as pilot:
        app.show_outcome(offline, queued=True)
        await pilot.pause()
        text = banner_text(app)
        assert "NO RECORD" in text
        assert "offline copy, queued for an online re-check" in text


async def test_wedge_burst_submits_once(client: MemoryLookup) -> None:
    app = BellCountingApp(client)
    lines = passport("C01X00T47")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m")
        area = app.screen.query_one("#entry-text", TextArea)
        # A fast wedge leaves several change events queued for the final text.
        area.load_text("\n".join(lines) + "\n")
        area.post_message(TextArea.Changed(area))
        area.post_message(TextArea.Changed(area))
        await settle(app, pilot)

        assert app.is_running
        assert app.screen is app.officer
        assert len(history_rows(app)) == 1


async def test_scanning_clears_previous_details(client: MemoryLookup) -> None:
    app = BellCountingApp(client)
    async with app.run_test(size=SIZE) as pilot:
        app.scan_lines(passport("C01X00T47"), source="test reader")
        await settle(app, pilot)
        assert "C01X00T47" in details_text(app)

        app.officer.show_scanning("next document")
        await pilot.pause()

        assert "CHECKING" in banner_text(app)
        assert "C01X00T47" not in details_text(app)
        assert app.officer.current is None


def details_text(app: KioskApp) -> str:
    from rich.console import Console
    from textual.widgets import Static

    console = Console(width=100, record=True, file=io.StringIO())
    console.print(app.officer.query_one("#details-fields", Static).content)
    return console.export_text()


def offline_no_record(client: MemoryLookup, number: str) -> ScanOutcome:
    return dataclasses.replace(
        check_text(passport(number), client),
        lookup=LookupAnswer(
            Result.NO_HIT, data_version="6-20261203T060000Z", source="offline"
        ),
    )


async def test_late_hit_replaces_banner_on_screen(client: MemoryLookup) -> None:
    app = BellCountingApp(client)
    async with app.run_test(size=SIZE) as pilot:
        app.show_outcome(offline_no_record(client, STOLEN_NUMBER), queued=True)
        await pilot.pause()
        assert "○  NO RECORD" in banner_text(app)

        key = DocumentKey.create("UTO", "P", STOLEN_NUMBER)
        app.notify_late_hit(key, client.lookup(key))
        await pilot.pause()
        assert isinstance(app.screen, HitModal)
        await pilot.press("enter")
        await pilot.pause()

        assert not isinstance(app.screen, HitModal)
        banner = app.officer.query_one(ResultBanner)
        text = banner_text(app)
        assert "✖  LATE HIT from re-check" in text
        assert "○  NO RECORD" not in text
        assert "replaced the earlier NO RECORD" in text
        assert "TEST-2025-00042" in text
        assert banner.has_class("hit")
        assert not banner.has_class("no-record")
        assert "HIT at 09:30:15, earlier NO RECORD" in details_text(app)
        assert app.officer.current is not None
        assert app.officer.current.lookup.result is Result.HIT


async def test_late_possible_replaces_not_checked(client: MemoryLookup) -> None:
    app = BellCountingApp(client)
    async with app.run_test(size=SIZE) as pilot:
        client.online = False
        app.scan_lines(passport(SIMILAR_NUMBER), source="test reader")
        await settle(app, pilot)
        assert "?  NOT CHECKED" in banner_text(app)

        client.online = True
        key, answer = client.recheck()[0]
        app.notify_late_hit(key, answer)
        await pilot.pause()

        text = banner_text(app)
        assert "≈  LATE POSSIBLE MATCH from re-check" in text
        assert "replaced the earlier NOT CHECKED" in text
        assert "Lost: UTO P X01234567" in text
        assert app.officer.query_one(ResultBanner).has_class("possible")
        assert app.bells == 1


async def test_late_hit_for_other_document_keeps_banner(
    client: MemoryLookup,
) -> None:
    app = BellCountingApp(client)
    async with app.run_test(size=SIZE) as pilot:
        app.show_outcome(offline_no_record(client, "C01X00T47"), queued=True)
        await pilot.pause()

        key = DocumentKey.create("UTO", "P", STOLEN_NUMBER)
        app.notify_late_hit(key, client.lookup(key))
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()

        text = banner_text(app)
        assert "○  NO RECORD" in text
        assert "LATE" not in text
        assert "Re-check" not in details_text(app)
        assert history_rows(app)[0][0].startswith("✖ HIT")


async def test_late_possible_keeps_hit_on_screen(client: MemoryLookup) -> None:
    app = BellCountingApp(client)
    async with app.run_test(size=SIZE) as pilot:
        app.scan_lines(passport(STOLEN_NUMBER), source="test reader")
        await settle(app, pilot)
        await pilot.press("enter")
        await pilot.pause()

        key = DocumentKey.create("UTO", "P", STOLEN_NUMBER)
        possible = dataclasses.replace(
            client.lookup(key), result=Result.POSSIBLE, source="online"
        )
        app.notify_late_hit(key, possible)
        await pilot.pause()

        text = banner_text(app)
        assert "✖  HIT" in text
        assert "POSSIBLE" not in text
        assert app.officer.query_one(ResultBanner).has_class("hit")


def column_keys(app: KioskApp) -> list[str]:
    table = app.officer.query_one("#history", DataTable)
    return [str(column.key.value) for column in table.ordered_columns]


async def show_durations(app: KioskApp, client: MemoryLookup, pilot: object) -> None:
    for elapsed_ms in (157.0, 4013.0, 12345.0):
        outcome = check_text(passport("C01X00T47"), client)
        app.show_outcome(dataclasses.replace(outcome, elapsed_ms=elapsed_ms))
    await pilot.pause()  # type: ignore[attr-defined]


async def test_history_columns_fit_whole(client: MemoryLookup) -> None:
    app = BellCountingApp(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await show_durations(app, client, pilot)
        table = app.officer.query_one("#history", DataTable)
        used = sum(column.get_render_width(table) for column in table.ordered_columns)

        assert column_keys(app) == ["result", "document", "time", "ms"]
        assert used <= table.scrollable_content_region.width
        assert [row[3] for row in history_rows(app)] == ["12345", "4013", "157"]
        assert table.ordered_columns[3].width == len("12345")


async def test_history_narrow_drops_whole_columns(client: MemoryLookup) -> None:
    app = BellCountingApp(client)
    async with app.run_test(size=(120, 40)) as pilot:
        await show_durations(app, client, pilot)
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        table = app.officer.query_one("#history", DataTable)
        used = sum(column.get_render_width(table) for column in table.ordered_columns)

        assert column_keys(app) == ["result", "document"]
        assert used <= table.scrollable_content_region.width
        assert history_rows(app)[0] == ["○ NO RECORD", "•••T47"]

        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        assert column_keys(app) == ["result", "document", "time", "ms"]


async def test_history_note_wraps_below_result(client: MemoryLookup) -> None:
    app = BellCountingApp(client)
    async with app.run_test(size=(120, 40)) as pilot:
        client.online = False
        app.scan_lines(passport(SIMILAR_NUMBER), source="test reader")
        await settle(app, pilot)
        client.online = True
        app.notify_late_hit(*client.recheck()[0])
        await pilot.pause()
        table = app.officer.query_one("#history", DataTable)
        result_width = table.ordered_columns[0].width

        assert column_keys(app) == ["result", "document", "time", "ms"]
        assert result_width == len("≈ POSSIBLE MATCH")
        assert history_rows(app)[1][0] == "? NOT CHECKED\n→ POSSIBLE MATCH 09:30"
        assert table.ordered_rows[1].height == 3


async def test_startup_notice_shown_with_bell(client: MemoryLookup) -> None:
    app = BellCountingApp(client)
    app.startup_notices = ["The re-check queue var/rechecks.sqlite3 was damaged"]
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        # Textual keeps the notifications it shows in App._notifications.
        notifications = list(app._notifications)
        assert [n.message for n in notifications] == app.startup_notices
        assert notifications[0].severity == "error"
        assert app.bells == 1
