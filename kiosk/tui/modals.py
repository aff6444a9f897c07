"""Modal screens: the HIT record that must be acknowledged, and manual entry."""

from __future__ import annotations

import time
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Footer, Label, Static, TextArea

from backend.records import LookupAnswer
from kiosk.tui.entry import validate_entry
from kiosk.tui.present import mask_number, record_rows

# The clock of the acknowledgement wait; tests replace it.
_monotonic = time.monotonic


def monotonic() -> float:
    """Return the clock of the acknowledgement wait."""
    return _monotonic()


class HitModal(ModalScreen[None]):
    """The whole reported record; only an explicit acknowledgement closes it.

    Escape and clicks outside do nothing here, so a HIT cannot be dismissed
    by accident. Enter, `a` or the button acknowledge only once `quiet_s`
    passed since the dialog opened and since any other key. A keyboard-wedge
    scanner types a whole MRZ and its Enter within a fraction of a second, so
    the Enter that ends a scan, meant for the entry dialog or for the next
    document, cannot close the alert.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "acknowledge", "Acknowledge", priority=True),
        Binding("a", "acknowledge", "Acknowledge", show=False, priority=True),
    ]

    quiet_s: ClassVar[float] = 1.0
    # The keys that acknowledge; any other key restarts the quiet second.
    ACK_KEYS: ClassVar[frozenset[str]] = frozenset({"enter", "a"})

    def __init__(self, answer: LookupAnswer, *, title: str, masked: str) -> None:
        super().__init__(classes="hit-modal")
        self.answer = answer
        self.heading = title
        self.masked = masked
        self._last_key = _monotonic()

    def compose(self) -> ComposeResult:
        with Vertical(id="hit-dialog"):
            yield Label(f"✖  {self.heading}", id="hit-title")
            yield Static(
                f"Document {self.masked}. Hold the document and follow the "
                "reported-document procedure.",
                id="hit-advice",
            )
            table: DataTable[str] = DataTable(
                id="hit-record", show_cursor=False, zebra_stripes=True
            )
            yield table
            if self.answer.type_mismatch:
                yield Static("⚠ The record's document type differs from the scan.")
            yield Static(
                f"Data version {self.answer.data_version or 'not stated'}, "
                f"source {self.answer.source}.",
                id="hit-version",
            )
            yield Button("Acknowledge (Enter)", id="hit-ack", variant="error")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#hit-record", DataTable)
        table.add_column("Field", key="field")
        for number, _ in enumerate(self.answer.records, start=1):
            table.add_column(f"Record {number}", key=f"record-{number}")
        if not self.answer.records:
            table.add_row("Record", "not sent by the backend")
            return
        labels = [label for label, _ in record_rows(self.answer.records[0])]
        columns = [record_rows(record) for record in self.answer.records]
        for index, label in enumerate(labels):
            table.add_row(label, *(rows[index][1] for rows in columns))
        self.app.bell()

    def on_key(self, event: events.Key) -> None:
        # Enter and `a` are priority bindings, so they reach the action and
        # never this handler, which would count them as other keys.
        self._last_key = _monotonic()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "hit-ack":
            self.action_acknowledge()

    def action_acknowledge(self) -> None:
        # The app records keys as they arrive. This screen's own handler gets
        # them only after its widgets, which can be after a priority Enter
        # that arrived in the same burst from a wedge.
        last_key = max(self._last_key, getattr(self.app, "last_key_at", 0.0))
        if _monotonic() - last_key < self.quiet_s:
            self.notify(
                "Not acknowledged: keys were still arriving, as from a scanner. "
                "Press Enter again to acknowledge the HIT.",
                severity="warning",
            )
            return
        self.dismiss(None)


class ManualEntryScreen(ModalScreen[list[str] | None]):
    """Typed, pasted or keyboard-wedge MRZ lines, validated as they arrive.

    A wedge scanner types the lines and presses Enter after the last one, so
    a complete entry followed by a line break is checked at once.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "submit", "Check", priority=True),
        Binding("escape", "cancel", "Cancel", priority=True),
    ]

    def __init__(self) -> None:
        super().__init__()
        # A wedge types fast, so several change events can see the finished
        # text; only the first may close the dialog.
        self._submitted = False

    def compose(self) -> ComposeResult:
        with Vertical(id="entry-dialog"):
            yield Label("Type or paste the MRZ lines (one per line)", id="entry-title")
            yield TextArea(id="entry-text", soft_wrap=False, show_line_numbers=False)
            with VerticalScroll(id="entry-feedback-box"):
                yield Static(self._feedback(""), id="entry-feedback")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#entry-text", TextArea).focus()

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        text = event.text_area.text
        self.query_one("#entry-feedback", Static).update(self._feedback(text))
        state = validate_entry(text)
        if state.ready and text.endswith("\n"):
            self._finish(list(state.lines))

    @staticmethod
    def _feedback(text: str) -> Text:
        state = validate_entry(text)
        if not state.lines:
            return Text(
                "Waiting for the first line: 30, 36 or 44 characters of A-Z, 0-9 "
                "and '<'.",
                style="dim",
            )
        out = Text()
        fmt = state.format_name or "format not known yet"
        out.append(f"Format: {fmt}\n", style="bold")
        for line in state.line_states:
            failed = bool(line.problems) or any(not ok for _, ok in line.checks)
            style = ""
            if failed:
                style = "bold red"
            elif line.complete:
                style = "green"
            out.append(line.summary() + "\n", style=style)
        for error in state.errors:
            out.append(error + "\n", style="bold red")
        if state.ready:
            out.append("Complete: press Ctrl+S to check.", style="bold")
        return out

    def action_submit(self) -> None:
        state = validate_entry(self.query_one("#entry-text", TextArea).text)
        if not state.lines:
            self.notify("Type the MRZ lines first.", severity="warning")
            return
        # Incomplete or failing lines are still checked: the banner then
        # explains why the document is NOT CHECKED.
        self._finish(list(state.lines))

    def action_cancel(self) -> None:
        self._finish(None)

    def _finish(self, lines: list[str] | None) -> None:
        if self._submitted:
            return
        self._submitted = True
        self.dismiss(lines)


__all__ = ["HitModal", "ManualEntryScreen", "mask_number"]
