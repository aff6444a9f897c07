"""The tester's screen: read an image, a folder or a watched folder, and
compare each result with the ground truth where a truth.json is present."""

from __future__ import annotations

import json
import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import (
    Checkbox,
    DataTable,
    Footer,
    Header,
    Input,
    ProgressBar,
    Static,
)

from backend.records import Result
from drivers.folder import FolderDriver
from kiosk.config import FolderConfig
from kiosk.pipeline import ScanOutcome, check_image
from kiosk.tui.present import mask_number, verdict_of, verdict_of_result

if TYPE_CHECKING:
    from kiosk.tui.app import KioskApp

logger = logging.getLogger(__name__)

TRUTH_FILE = "truth.json"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"})


@dataclass(frozen=True, slots=True)
class TruthEntry:
    """Ground truth of one image: its MRZ lines (None when it has no
    readable MRZ) and the lookup result a correct reading gets."""

    lines: tuple[str, ...] | None
    lookup: str | None


def load_truth(folder: Path) -> dict[str, TruthEntry]:
    """Read `truth.json` of a folder of test images; {} when there is none."""
    path = folder / TRUTH_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("ground truth %s not loaded: %s", path, exc)
        return {}
    truth: dict[str, TruthEntry] = {}
    for name, entry in data.items():
        if not isinstance(entry, dict):
            continue
        lines = entry.get("lines")
        lookup = entry.get("lookup")
        truth[name] = TruthEntry(
            tuple(lines) if lines else None,
            lookup.get("result") if isinstance(lookup, dict) else None,
        )
    return truth


def judge(outcome: ScanOutcome, truth: TruthEntry) -> bool:
    """Return True when the reading (and, if the truth has one, the lookup
    result) matches the ground truth."""
    report = outcome.report
    if truth.lines is None:
        return report is None
    if report is None or tuple(report.lines) != truth.lines:
        return False
    return truth.lookup is None or outcome.lookup.result.value == truth.lookup


def _truth_label(truth: TruthEntry | None) -> str:
    if truth is None:
        return "-"
    if truth.lines is None:
        return "no MRZ"
    if truth.lookup is None:
        return "read only"
    try:
        return verdict_of_result(Result(truth.lookup)).label
    except ValueError:
        return f"unknown result {truth.lookup!r}"


class TesterRow(Message):
    def __init__(self, name: str, outcome: ScanOutcome) -> None:
        super().__init__()
        self.name = name
        self.outcome = outcome


class TesterDone(Message):
    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class _PathFolderDriver(FolderDriver):
    """The folder driver's watching, handing over paths instead of pixels, so
    each result keeps its file name for the ground-truth comparison.

    NOTE: relies on FolderDriver's watch loop calling `read_file` for each
    new file, because its image events carry the driver name, not the file.
    """

    def __init__(self, config: FolderConfig, paths: queue.Queue[Path | None]) -> None:
        super().__init__(config)
        self._paths = paths

    def read_file(self, path: Path) -> bool:
        """Hand an image path over to the tester; return False for other
        files, which the watcher then skips until they change."""
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            return False
        self._paths.put(path)
        return True


class TesterScreen(Screen[None]):
    """Batch reads with streaming results and ground-truth totals."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "focus_path", "Open path"),
        Binding("f6", "toggle_watch", "Watch folder"),
        Binding("f7", "stop", "Stop"),
    ]

    def __init__(self) -> None:
        super().__init__(id="tester")
        self.truth: dict[str, TruthEntry] = {}
        self.results: dict[str, bool] = {}
        self._paths: queue.Queue[Path | None] = queue.Queue()
        self._stop_requested = threading.Event()
        self._watcher: FolderDriver | None = None
        self._total: int | None = None
        self._done = 0
        self.reading = False

    @property
    def kiosk(self) -> KioskApp:
        from kiosk.tui.app import KioskApp

        assert isinstance(self.app, KioskApp)
        return self.app

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal(id="tester-open"):
            yield Input(
                placeholder="image file or folder, then Enter",
                id="tester-path",
            )
            yield Checkbox("Watch folder", id="tester-watch")
        with Horizontal(id="tester-progress-row"):
            # A known total keeps the bar still until a folder is opened.
            yield ProgressBar(total=1, id="tester-progress", show_eta=False)
            yield Static("No images read yet.", id="tester-status")
        yield DataTable(id="tester-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="tester-totals")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#tester-table", DataTable)
        for label in (
            "File",
            "Format",
            "Read",
            "Document",
            "Result",
            "Truth",
            "",
            "ms",
        ):
            table.add_column(label, key=label or "right")

    def action_focus_path(self) -> None:
        self.query_one("#tester-path", Input).focus()

    def action_toggle_watch(self) -> None:
        box = self.query_one("#tester-watch", Checkbox)
        box.value = not box.value

    @on(Input.Submitted, "#tester-path")
    def _path_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            self.notify("Type the path of an image file or a folder.")
            return
        watch = self.query_one("#tester-watch", Checkbox).value
        self.open_path(Path(text).expanduser(), watch=watch)

    def open_path(self, path: Path, *, watch: bool = False) -> None:
        """Read one image, every image of a folder, or a folder's new files."""
        if self.reading:
            self.notify("Still reading: press F7 to stop first.", severity="warning")
            return
        if not path.exists():
            self.notify(f"{path} not found; check the path.", severity="error")
            return
        if watch and not path.is_dir():
            self.notify(f"{path} is not a folder; only folders can be watched.")
            return

        folder = path if path.is_dir() else path.parent
        self.truth = load_truth(folder)
        self.results = {}
        self._done = 0
        self.query_one("#tester-table", DataTable).clear()
        self._paths = queue.Queue()
        self._stop_requested = threading.Event()

        if watch:
            self._total = None
            self._start_watch(path)
            status = f"Watching {path} for new images; F7 stops."
        else:
            images = _images_in(path)
            self._total = len(images)
            for image in images:
                self._paths.put(image)
            self._paths.put(None)
            status = f"Reading {len(images)} image(s) from {path}."

        self.query_one("#tester-progress", ProgressBar).update(
            total=self._total, progress=0
        )
        self.query_one("#tester-status", Static).update(status)
        self._update_totals()
        self.reading = True
        self.run_worker(self._read_all, thread=True, group="tester", exclusive=True)

    def _start_watch(self, folder: Path) -> None:
        config = FolderConfig(
            name="tester-watch",
            watch=str(folder),
            include_existing=True,
            poll_interval_s=0.2,
            stable_s=0.3,
        )
        self._watcher = _PathFolderDriver(config, self._paths)
        self._watcher.start()

    def _read_all(self) -> None:
        app = self.kiosk
        while not self._stop_requested.is_set():
            try:
                path = self._paths.get(timeout=0.2)
            except queue.Empty:
                continue
            if path is None:
                break
            outcome = check_image(path, app.client, source=path.name)
            self.post_message(TesterRow(path.name, outcome))
        self.post_message(
            TesterDone("stopped" if self._stop_requested.is_set() else "done")
        )

    def action_stop(self) -> None:
        self.stop_reading()

    def stop_reading(self) -> None:
        self._stop_requested.set()
        self._paths.put(None)
        if self._watcher is not None:
            # Joining the watcher takes up to one poll interval (0.2 s).
            watcher, self._watcher = self._watcher, None
            threading.Thread(target=watcher.stop, name="tester-watch-stop").start()

    def on_tester_row(self, message: TesterRow) -> None:
        outcome = message.outcome
        report = outcome.report
        truth = self.truth.get(message.name)
        right: Text | str = ""
        if truth is not None:
            correct = judge(outcome, truth)
            self.results[message.name] = correct
            right = (
                Text("✓ right", style="green")
                if correct
                else Text("✗ WRONG", style="bold red")
            )
        self._done += 1
        table = self.query_one("#tester-table", DataTable)
        table.add_row(
            message.name,
            report.format.value if report else "-",
            outcome.repair.status.value if outcome.repair else "not read",
            mask_number(report.document_number if report else None),
            verdict_of(outcome.lookup).label,
            _truth_label(truth),
            right,
            f"{outcome.elapsed_ms:.0f}",
        )
        table.move_cursor(row=table.row_count - 1)
        self.query_one("#tester-progress", ProgressBar).update(progress=self._done)
        self._update_totals()

    def on_tester_done(self, message: TesterDone) -> None:
        self.reading = False
        self.query_one("#tester-status", Static).update(
            f"Finished ({message.reason}): {self._done} image(s) read."
        )

    def _update_totals(self) -> None:
        totals = self.query_one("#tester-totals", Static)
        if not self.truth:
            totals.update(f"{self._done} read; no {TRUTH_FILE} beside the images.")
            return
        judged = len(self.results)
        right = sum(self.results.values())
        share = f" ({100 * right / judged:.0f} %)" if judged else ""
        totals.update(
            f"Ground truth: {right} of {judged} right{share}, "
            f"{judged - right} wrong; {self._done} read."
        )

    def on_unmount(self) -> None:
        self.stop_reading()


def _images_in(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
