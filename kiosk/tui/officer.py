"""The officer's screen: waiting state, the answer banner, details, history."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label, Static

from backend.records import DocumentKey, LookupAnswer
from kiosk.pipeline import ScanOutcome
from kiosk.tui.present import (
    Verdict,
    banner_for,
    check_marks,
    field_rows,
    late_banner_for,
    mask_number,
    replaces_on_screen,
    verdict_of,
    warning_lines,
)
from kiosk.tui.widgets import ResultBanner

# Scans kept in the session history; older ones drop off the end.
HISTORY_LIMIT = 200


@dataclass(slots=True)
class HistoryEntry:
    scan_id: str
    at: dt.datetime
    masked: str
    key: DocumentKey | None
    verdict: Verdict
    elapsed_ms: float | None
    note: str = ""


# Session history columns, left to right. The result comes first: a narrow
# terminal has room only for the columns on the left.
HISTORY_COLUMNS = ("Result", "Document", "Time", "ms")
# A note such as "→ HIT 09:30" wraps below the verdict within this width.
RESULT_WIDTH = max(cell_len(verdict.label) for verdict in Verdict)


def columns_that_fit(widths: Sequence[int], available: int, padding: int) -> int:
    """Return how many leading columns fit whole into `available` cells, at
    least one, when each column has `padding` cells on either side."""
    used = 0
    for count, width in enumerate(widths):
        used += width + 2 * padding
        if used > available:
            return max(count, 1)
    return len(widths)


class HistoryTable(DataTable[str | Text]):
    """Session history, newest first, that shows only whole columns.

    A column clipped at the box's edge would cut a number short, so 157 ms
    showed as 15. Columns that do not fit whole are left out from the right.
    """

    def __init__(self, *, id: str) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._entries: list[HistoryEntry] = []
        self._built_width = -1

    def show_entries(self, entries: Sequence[HistoryEntry]) -> None:
        self._entries = list(entries)
        self._rebuild()

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != self._built_width:
            self._rebuild()

    def _rebuild(self) -> None:
        rows = [history_cells(entry) for entry in self._entries]
        widths = [RESULT_WIDTH]
        for index, label in enumerate(HISTORY_COLUMNS[1:], start=1):
            values = [cell_len(str(row[index])) for row in rows]
            widths.append(max([cell_len(label), *values]))
        # Room for the vertical scrollbar is kept even while it is hidden, so
        # the columns shown do not change as rows are added.
        available = self.size.width - self.styles.scrollbar_size_vertical
        shown = columns_that_fit(widths, available, self.cell_padding)
        self._built_width = self.size.width
        self.clear(columns=True)
        for label, width in zip(HISTORY_COLUMNS[:shown], widths, strict=False):
            self.add_column(label, key=label.lower(), width=width)
        for entry, row in zip(self._entries, rows, strict=True):
            # A row with a note grows to the height its wrapped note needs.
            height = None if entry.note else 1
            self.add_row(*row[:shown], height=height)


def history_cells(entry: HistoryEntry) -> tuple[Text, str, str, Text]:
    """Return the result, masked number, time and duration of one row."""
    result = Text(entry.verdict.label)
    if entry.verdict is Verdict.HIT:
        result.stylize("bold red")
    if entry.note:
        result.append(f"\n{entry.note}", style="bold")
    elapsed = "-" if entry.elapsed_ms is None else f"{entry.elapsed_ms:.0f}"
    return (
        result,
        entry.masked,
        f"{entry.at:%H:%M:%S}",
        Text(elapsed, justify="right"),
    )


def key_of(outcome: ScanOutcome) -> DocumentKey | None:
    """Return the lookup key of a scan, or None when it has no valid one."""
    report = outcome.report
    if report is None:
        return None
    try:
        return DocumentKey.create(
            report.issuing_state, report.document_type, report.document_number
        )
    except ValueError:
        return None


class OfficerScreen(Screen[None]):
    """Screen of the officer at the counter: verdict, details, history."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("m", "app.manual_entry", "Type MRZ"),
        Binding("r", "app.retry", "Retry"),
        Binding("escape", "clear", "Clear"),
        Binding("h", "focus_history", "History"),
    ]

    def __init__(self) -> None:
        super().__init__(id="officer")
        self.history: list[HistoryEntry] = []
        self.current: ScanOutcome | None = None
        self._current_thumbnail: Text | None = None
        self.device_text = "no device"
        self.backend_text = "checking the lookup backend…"

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static(id="status-bar")
        yield ResultBanner(id="banner")
        with Horizontal(id="officer-body"):
            # Checks and warnings come first: on a 24-line terminal they are
            # what stays visible without scrolling.
            with VerticalScroll(id="details"):
                yield Static(id="details-checks")
                yield Static(id="details-warnings")
                yield Static(id="details-fields")
                yield Static(id="details-mrz")
            with Vertical(id="history-box"):
                yield Label("Session history", classes="box-title")
                yield HistoryTable(id="history")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._refresh_history()
        self._refresh_status_bar()
        self.show_waiting()

    # Status of the device and the lookup backend.

    def set_device(self, text: str) -> None:
        self.device_text = text
        self._refresh_status_bar()
        if self.current is None:
            self.show_waiting()

    def set_backend(self, text: str) -> None:
        self.backend_text = text
        self._refresh_status_bar()
        if self.current is None:
            self.show_waiting()

    def _refresh_status_bar(self) -> None:
        bar = self.query_one("#status-bar", Static)
        bar.update(f"Device: {self.device_text}  │  Lookup: {self.backend_text}")

    # The banner and details.

    def show_waiting(self) -> None:
        self.query_one(ResultBanner).show_waiting(self.device_text, self.backend_text)
        self._clear_details()

    def show_scanning(self, source: str) -> None:
        # The previous document's fields must not stand under the banner of
        # the next one, or an officer could read them as its result.
        self.current = None
        self._current_thumbnail = None
        self._clear_details()
        self.query_one(ResultBanner).show_scanning(source)

    def show_outcome(
        self,
        outcome: ScanOutcome,
        *,
        queued: bool,
        thumbnail: Text | None = None,
        late_alerts: bool = True,
    ) -> None:
        self.current = outcome
        self._current_thumbnail = thumbnail
        view = banner_for(outcome, queued=queued, late_alerts=late_alerts)
        self.query_one(ResultBanner).show_verdict(view)
        self._show_details(outcome, thumbnail)

    def show_late_answer(
        self, key: DocumentKey, answer: LookupAnswer, at: dt.datetime
    ) -> bool:
        """Show a late HIT or POSSIBLE MATCH in the banner and details when
        its document is the one on screen; return whether it was.

        A late answer never replaces a verdict that demands more, so a late
        POSSIBLE MATCH leaves a HIT on screen.
        """
        shown = self.current
        if shown is None or key_of(shown) != key:
            return False
        earlier = verdict_of(shown.lookup)
        if not replaces_on_screen(verdict_of(answer), earlier):
            return False
        late = dataclasses.replace(shown, lookup=answer)
        self.current = late
        view = late_banner_for(late, earlier, at)
        self.query_one(ResultBanner).show_verdict(view)
        recheck = f"{view.verdict.title} at {at:%H:%M:%S}, earlier {earlier.title}"
        self._show_details(late, self._current_thumbnail, recheck=recheck)
        return True

    def action_clear(self) -> None:
        self.current = None
        self._current_thumbnail = None
        self.show_waiting()

    def action_focus_history(self) -> None:
        self.query_one("#history", HistoryTable).focus()

    def _clear_details(self) -> None:
        for name in ("fields", "checks", "warnings", "mrz"):
            self.query_one(f"#details-{name}", Static).update("")

    def _show_details(
        self,
        outcome: ScanOutcome,
        thumbnail: Text | None,
        *,
        recheck: str | None = None,
    ) -> None:
        report = outcome.report
        fields = Table.grid(padding=(0, 2))
        fields.add_column(style="dim")
        fields.add_column()
        if report is not None:
            for label, value in field_rows(report):
                fields.add_row(label, value)
        else:
            fields.add_row("Document", "no MRZ read")
        fields.add_row("Time taken", f"{outcome.elapsed_ms:.0f} ms")
        fields.add_row("Source", outcome.source)
        if recheck is not None:
            fields.add_row("Re-check", Text(recheck, style="bold"))
        self.query_one("#details-fields", Static).update(fields)

        checks = Text("Check digits:", style="bold")
        if report is not None:
            for mark, passed in check_marks(report):
                checks.append("  ")
                checks.append(mark, style="" if passed else "bold red")
        else:
            checks.append("  none, no MRZ read")
        self.query_one("#details-checks", Static).update(checks)

        warnings = warning_lines(outcome)
        shown = Text("Warnings:", style="bold")
        if warnings:
            shown.append("\n" + "\n".join(f"  {w}" for w in warnings))
        else:
            shown.append("  none")
        self.query_one("#details-warnings", Static).update(shown)

        mrz = Text("MRZ as read:\n", style="bold")
        if report is not None:
            mrz.append("\n".join(report.lines), style="reverse")
        else:
            mrz.append("  not read")
        if thumbnail is not None:
            mrz.append("\nMRZ crop from the image:\n", style="bold")
            mrz.append_text(thumbnail)
        self.query_one("#details-mrz", Static).update(mrz)

    # Session history.

    def add_history(self, entry: HistoryEntry) -> None:
        self.history.insert(0, entry)
        del self.history[HISTORY_LIMIT:]
        self._refresh_history()

    def mark_late_hit(
        self, key: DocumentKey, answer: LookupAnswer, at: dt.datetime
    ) -> str:
        """Record a late HIT or POSSIBLE in the history, noting it on the
        earlier scans of the same document; return the masked number."""
        masked = mask_number(key.document_number)
        verdict = verdict_of(answer)
        for entry in self.history:
            if entry.key == key and entry.verdict is not Verdict.HIT:
                entry.note = f"→ {verdict.title} {at:%H:%M}"
        self.history.insert(
            0,
            HistoryEntry(
                scan_id=answer.request_id or "re-check",
                at=at,
                masked=masked,
                key=key,
                verdict=verdict,
                elapsed_ms=None,
                note="late, re-check",
            ),
        )
        self._refresh_history()
        return masked

    def _refresh_history(self) -> None:
        self.query_one("#history", HistoryTable).show_entries(self.history)
