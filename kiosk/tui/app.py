"""The officer's terminal app: `kiosk` with no command starts it.

Every blocking call runs in a thread worker: image reading, lookups, the
backend status, driver start and stop. The workers report back with
messages, which Textual delivers on the UI thread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import inspect
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal

import cv2
import numpy as np
import numpy.typing as npt
from rich.text import Text
from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen

from backend.errors import BackendError
from backend.records import DocumentKey, LookupAnswer, Result
from drivers.base import Driver, EventCallback
from drivers.errors import DriverError
from drivers.events import (
    DeviceState,
    DriverEvent,
    ImageCaptured,
    MrzLinesRead,
    StatusChanged,
)
from kiosk.errors import KioskError
from kiosk.lookup.base import BackendStatus, LookupClient
from kiosk.pipeline import ScanOutcome, check_image, check_text
from kiosk.tui import modals
from kiosk.tui.modals import HitModal, ManualEntryScreen
from kiosk.tui.officer import HistoryEntry, OfficerScreen, key_of
from kiosk.tui.present import Verdict, mask_number, verdict_of
from kiosk.tui.technician import (
    TECHNICIAN_TABS,
    DeviceRow,
    TechnicianScreen,
    find_devices,
)
from kiosk.tui.tester import TesterScreen
from kiosk.tui.thumbnail import crop_mrz, half_blocks
from kiosk.tui.widgets import describe_backend

logger = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
# Builds a started-later driver that reports through the given callback.
DriverFactory = Callable[[EventCallback], Driver]
ScanInput = tuple[Literal["text"], list[str]] | tuple[Literal["image"], Any]

LOG_FILE = Path("var") / "kiosk-tui.log"
NATIVE_STDERR_FILE = Path("var") / "kiosk-stderr.log"
# Seconds quitting waits for a running check before closing the client. An
# estimate: above one image read plus an online lookup with its retries.
SCAN_FINISH_TIMEOUT_S = 10.0
# `source` of answers from the offline copy, which are queued for re-check.
OFFLINE_SOURCE = "offline"


def local_now() -> dt.datetime:
    """Return the time in the kiosk's time zone, which history rows show."""
    return dt.datetime.now().astimezone()


class ScanFinished(Message):
    def __init__(
        self, outcome: ScanOutcome, queued: bool, thumbnail: Text | None
    ) -> None:
        super().__init__()
        self.outcome = outcome
        self.queued = queued
        self.thumbnail = thumbnail


class DeviceEvent(Message):
    def __init__(self, driver_name: str, event: DriverEvent) -> None:
        super().__init__()
        self.driver_name = driver_name
        self.event = event


class BackendStatusRead(Message):
    def __init__(self, status: BackendStatus) -> None:
        super().__init__()
        self.status = status


class LateHit(Message):
    def __init__(self, key: DocumentKey, answer: LookupAnswer) -> None:
        super().__init__()
        self.key = key
        self.answer = answer


class KioskApp(App[int]):
    """Officer, tester and technician screens over one lookup client."""

    CSS_PATH = Path(__file__).with_name("kiosk.tcss")
    TITLE = "Border kiosk"
    DEFAULT_MODE = "officer"
    # Below 100 columns the history narrows so the details keep room.
    HORIZONTAL_BREAKPOINTS = [  # noqa: RUF012 - the base class declares a list
        (0, "-narrow"),
        (100, "-wide"),
    ]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "show_mode('officer')", "Officer"),
        Binding("f3", "show_mode('tester')", "Tester"),
        Binding("f4", "show_mode('technician')", "Tech"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
        # The footer shows Quit only on the officer screen (see
        # check_action); this unlisted binding quits from the others.
        Binding("ctrl+q", "quit_from_any_screen", show=False, priority=True),
    ]

    def __init__(
        self,
        client: LookupClient,
        *,
        clock: Clock = local_now,
        drivers: Sequence[DriverFactory] = (),
        config_path: Path | None = None,
        status_interval_s: float = 5.0,
        device_lister: Callable[[], list[DeviceRow]] = find_devices,
    ) -> None:
        super().__init__()
        self.client = client
        self.clock = clock
        self.config_path = config_path
        self.status_interval_s = status_interval_s
        self.device_lister = device_lister
        # False when late answers from the re-check queue cannot reach the
        # app, so the NOT CHECKED banner does not promise a late HIT.
        self.late_alerts = True
        # Shown once the screen is up: damaged local files that the lookup
        # client replaced when it opened.
        self.startup_notices: list[str] = []
        # When the last key other than an acknowledgement arrived.
        self.last_key_at = 0.0
        self._driver_factories = list(drivers)
        self.drivers: list[Driver] = []
        self._drivers_lock = threading.Lock()
        # Set while no check is running and no HIT waits for acknowledgement;
        # the sample feeder waits for it before it hands over a document.
        self.ready_for_next = threading.Event()
        self.ready_for_next.set()
        self._open_hits = 0
        self.scans_pending = 0
        # One worker checks documents in arrival order, so results and
        # history never appear out of order.
        self._scan_queue: queue.Queue[tuple[ScanInput, str] | None] = queue.Queue()
        self._scan_loop_started = threading.Event()
        self._scan_loop_done = threading.Event()
        self._last_input: tuple[ScanInput, str] | None = None
        self._stopped = False
        self.officer = OfficerScreen()
        self.add_mode("officer", lambda: self.officer)
        self.add_mode("tester", TesterScreen)
        self.add_mode("technician", TechnicianScreen)

    # Start and stop.

    async def on_event(self, event: events.Event) -> None:
        # Keys are recorded in arrival order, before any screen handles them,
        # so that the HIT dialog can tell whether other keys came just before
        # an Enter.
        if (
            isinstance(event, events.Key)
            and not event.is_forwarded
            and event.key not in HitModal.ACK_KEYS
        ):
            self.last_key_at = modals.monotonic()
        await super().on_event(event)

    def on_mount(self) -> None:
        self.run_worker(self._scan_loop, thread=True, group="scan", name="scan-loop")
        self.officer.set_device(self._initial_device_text())
        self.refresh_backend_status()
        if self.status_interval_s > 0:
            self.set_interval(self.status_interval_s, self.refresh_backend_status)
        if self._driver_factories:
            self.run_worker(self._start_drivers, thread=True, group="drivers")
        for notice in self.startup_notices:
            self.bell()
            self.notify(notice, severity="error", timeout=120)

    def _initial_device_text(self) -> str:
        if not self._driver_factories:
            return "none configured; press m to type the MRZ"
        return "starting…"

    def _start_drivers(self) -> None:
        with self._drivers_lock:
            if self._stopped or self.drivers:
                return
            self.drivers = [
                factory(self._on_driver_event) for factory in self._driver_factories
            ]
            drivers = list(self.drivers)
        for driver in drivers:
            try:
                driver.start()
            except Exception as exc:
                logger.exception("driver %s failed to start", driver.name)
                self.post_message(
                    DeviceEvent(
                        driver.name,
                        StatusChanged(DeviceState.ERROR, f"failed to start: {exc}"),
                    )
                )

    def _on_driver_event(self, event: DriverEvent) -> None:
        # Runs on the driver's thread; post_message is thread-safe.
        name = event.source if isinstance(event, StatusChanged) else "device"
        self.post_message(DeviceEvent(name or "device", event))

    def release_devices(self) -> None:
        """Stop the officer's drivers so that a technician session can open
        the same device (serial ports are opened for exclusive use).

        Blocks until the drivers stopped: call it from a worker thread.
        """
        with self._drivers_lock:
            drivers, self.drivers = self.drivers, []
        for driver in drivers:
            driver.stop()
        if drivers:
            logger.info("devices released for a technician session")
            self.post_message(
                DeviceEvent(
                    "device",
                    StatusChanged(
                        DeviceState.DISCONNECTED, "in use by the technician screen"
                    ),
                )
            )

    def reclaim_devices(self) -> None:
        """Start the officer's drivers again after `release_devices`."""
        self._start_drivers()

    def stop_everything(self) -> None:
        """Stop drivers and close the lookup client; safe to call twice."""
        with self._drivers_lock:
            if self._stopped:
                return
            self._stopped = True
            drivers, self.drivers = self.drivers, []
        self._scan_queue.put(None)
        self.ready_for_next.set()
        for driver in drivers:
            driver.stop()
        # A check still running uses the client, so it may finish first.
        started = self._scan_loop_started.is_set()
        if started and not self._scan_loop_done.wait(SCAN_FINISH_TIMEOUT_S):
            logger.warning(
                "a check was still running after %.0f s; closing the client anyway",
                SCAN_FINISH_TIMEOUT_S,
            )
        try:
            self.client.close()
        except Exception:
            logger.exception("closing the lookup client failed")
        logger.info("kiosk app stopped")

    async def action_quit(self) -> None:
        self.workers.cancel_all()
        await asyncio.to_thread(self.stop_everything)
        self.exit(0)

    def on_unmount(self) -> None:
        self.stop_everything()

    # Modes and commands.

    def action_show_mode(self, mode: str) -> None:
        self.switch_mode(mode)
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # The footer has room for 80 columns only when it leaves out the key
        # of the screen already shown, and Quit outside the officer screen,
        # where Ctrl+Q runs the unlisted quit_from_any_screen instead.
        if action == "show_mode":
            return parameters[0] != self.current_mode
        if action == "quit":
            return self.current_mode == "officer"
        return True

    async def action_quit_from_any_screen(self) -> None:
        await self.action_quit()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if isinstance(screen, TechnicianScreen):
            yield SystemCommand(
                "Validate configuration",
                "Check the edited kiosk.toml without saving it (F8)",
                screen.action_validate,
            )
            for tab_id, title in TECHNICIAN_TABS.items():
                yield SystemCommand(
                    f"Technician tab: {title}",
                    "Also reached with Left and Right on the tab bar",
                    partial(screen.show_tab, tab_id),
                )
        yield SystemCommand(
            "Officer screen", "Scan results and history (F2)", self._officer
        )
        yield SystemCommand(
            "Tester screen",
            "Read images or folders against ground truth (F3)",
            lambda: self.action_show_mode("tester"),
        )
        yield SystemCommand(
            "Technician screen",
            "Devices, driver settings, test read, raw monitor (F4)",
            lambda: self.action_show_mode("technician"),
        )
        yield SystemCommand(
            "Manual entry", "Type or paste MRZ lines (m)", self.action_manual_entry
        )
        yield SystemCommand(
            "Retry last check", "Check the last document again (r)", self.action_retry
        )
        yield SystemCommand(
            "Refresh lookup status",
            "Ask the lookup backend for its state now",
            self.refresh_backend_status,
        )

    def _officer(self) -> None:
        self.action_show_mode("officer")

    # Backend status.

    def refresh_backend_status(self) -> None:
        self.run_worker(self._read_status, thread=True, group="status", exclusive=True)

    def _read_status(self) -> None:
        self.post_message(BackendStatusRead(self.client.status()))

    def on_backend_status_read(self, message: BackendStatusRead) -> None:
        self.officer.set_backend(describe_backend(message.status))

    # Scans.

    def on_device_event(self, message: DeviceEvent) -> None:
        event = message.event
        if isinstance(event, StatusChanged):
            self.officer.set_device(
                f"{event.source or message.driver_name}: "
                f"{event.state.value} ({event.reason})"
            )
        elif isinstance(event, MrzLinesRead):
            self.scan_lines(list(event.lines), source=event.source)
        elif isinstance(event, ImageCaptured):
            self.scan_image(event.image, source=event.source)

    def scan_lines(self, lines: list[str], *, source: str) -> None:
        self._start_scan(("text", lines), source)

    def scan_image(self, image: npt.NDArray[np.uint8] | Path, *, source: str) -> None:
        self._start_scan(("image", image), source)

    def _start_scan(self, scan_input: ScanInput, source: str) -> None:
        self._last_input = (scan_input, source)
        self.scans_pending += 1
        self._update_ready()
        self.officer.show_scanning(source)
        self._scan_queue.put((scan_input, source))

    def _scan_loop(self) -> None:
        self._scan_loop_started.set()
        try:
            while (item := self._scan_queue.get()) is not None:
                self._scan(*item)
        finally:
            self._scan_loop_done.set()

    def _scan(self, scan_input: ScanInput, source: str) -> None:
        today = self.clock().date()
        if scan_input[0] == "text":
            outcome = check_text(scan_input[1], self.client, source=source, today=today)
        else:
            # NOTE: check_image takes no date, so expiry warnings on images
            # use the system date even when the app has another clock.
            outcome = check_image(scan_input[1], self.client, source=source)
        thumbnail = None
        if scan_input[0] == "image":
            thumbnail = mrz_thumbnail(scan_input[1], outcome)
        queued = False
        answer = outcome.lookup
        unanswered = answer.result is Result.UNKNOWN and answer.source != "kiosk"
        if unanswered or answer.source == OFFLINE_SOURCE:
            status = self.client.status()
            queued = status.queued_rechecks > 0
            self.post_message(BackendStatusRead(status))
        self.post_message(ScanFinished(outcome, queued, thumbnail))

    def on_scan_finished(self, message: ScanFinished) -> None:
        self.scans_pending -= 1
        self.show_outcome(
            message.outcome, queued=message.queued, thumbnail=message.thumbnail
        )
        self._update_ready()

    def _update_ready(self) -> None:
        if self.scans_pending == 0 and self._open_hits == 0:
            self.ready_for_next.set()
        else:
            self.ready_for_next.clear()

    def show_outcome(
        self,
        outcome: ScanOutcome,
        *,
        queued: bool = False,
        thumbnail: Text | None = None,
    ) -> None:
        """Show one finished check on the officer screen and in the history."""
        key = key_of(outcome)
        verdict = verdict_of(outcome.lookup)
        self.officer.show_outcome(
            outcome, queued=queued, thumbnail=thumbnail, late_alerts=self.late_alerts
        )
        self.officer.add_history(
            HistoryEntry(
                scan_id=outcome.scan_id,
                at=self.clock(),
                masked=mask_number(key.document_number if key else None),
                key=key,
                verdict=verdict,
                elapsed_ms=outcome.elapsed_ms,
            )
        )
        if verdict is Verdict.HIT:
            self._raise_hit(outcome.lookup, "HIT: REPORTED DOCUMENT", key)

    def action_retry(self) -> None:
        if self._last_input is None:
            self.notify("Nothing to retry yet: scan or type a document first.")
            return
        scan_input, source = self._last_input
        self._start_scan(scan_input, source)

    def action_manual_entry(self) -> None:
        self.switch_mode("officer")
        self.push_screen(ManualEntryScreen(), self._manual_entry_done)

    def _manual_entry_done(self, lines: list[str] | None) -> None:
        if lines:
            self.scan_lines(lines, source="manual entry")

    # HITs, on time or late.

    def notify_late_hit(self, key: DocumentKey, answer: LookupAnswer) -> None:
        """Raise a HIT or POSSIBLE that a re-check found after the officer saw
        NOT CHECKED or an offline answer.

        Safe to call from any thread.
        """
        self.post_message(LateHit(key, answer))

    def on_late_hit(self, message: LateHit) -> None:
        answer = message.answer
        now = self.clock()
        on_screen = self.officer.show_late_answer(message.key, answer, now)
        masked = self.officer.mark_late_hit(message.key, answer, now)
        logger.warning(
            "late %s from a re-check raised (document on screen: %s)",
            answer.result.value,
            "yes" if on_screen else "no",
        )
        if answer.result is Result.HIT:
            self._raise_hit(answer, f"LATE HIT from re-check: {masked}", message.key)
            return
        self.bell()
        self.notify(
            f"Late POSSIBLE MATCH for document {masked}: verify it against the "
            "record before the holder leaves.",
            severity="warning",
            timeout=60,
        )

    def _raise_hit(
        self, answer: LookupAnswer, title: str, key: DocumentKey | None
    ) -> None:
        self.switch_mode("officer")
        self._open_hits += 1
        self._update_ready()
        masked = mask_number(key.document_number if key else None)
        self.push_screen(
            HitModal(answer, title=title, masked=masked), self._hit_acknowledged
        )

    def _hit_acknowledged(self, _: None) -> None:
        self._open_hits -= 1
        logger.info("HIT acknowledged by the officer")
        self._update_ready()


def configure_logging(level: str, path: Path = LOG_FILE) -> None:
    """Send the log to a file, because writing to the terminal would tear the
    screen."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.WARNING))


def _configured_drivers(config_file: Path | None) -> list[DriverFactory]:
    from drivers import create_driver
    from kiosk.config import load_config

    config = load_config(config_file)
    if not config.drivers:
        return []
    section = config.driver()

    def factory(on_event: EventCallback) -> Driver:
        return create_driver(section, on_event)

    return [factory]


def mrz_thumbnail(
    image: npt.NDArray[np.uint8] | Path, outcome: ScanOutcome
) -> Text | None:
    """Draw the MRZ crop of an image the reader located, or return None."""
    box = getattr(outcome.reader, "box", ())
    lines = getattr(outcome.reader, "lines", ())
    if len(box) != 4 or not lines:
        return None
    if isinstance(image, Path):
        decoded = cv2.imread(str(image), cv2.IMREAD_COLOR)
        if decoded is None:
            return None
        image = np.asarray(decoded, dtype=np.uint8)
    crop = crop_mrz(image, box, len(lines))
    return None if crop is None else half_blocks(crop, lines=len(lines))


class LateHitRelay:
    """The re-check queue's `on_late_hit` callback, handed to the lookup
    client before the app exists, so it keeps late answers until then."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._app: KioskApp | None = None
        self._pending: list[tuple[DocumentKey, LookupAnswer]] = []

    def __call__(self, check: Any, answer: LookupAnswer) -> None:
        key: DocumentKey = check.key
        with self._lock:
            if self._app is None:
                self._pending.append((key, answer))
                return
            app = self._app
        app.notify_late_hit(key, answer)

    def attach(self, app: KioskApp) -> None:
        with self._lock:
            self._app = app
            pending, self._pending = self._pending, []
        for key, answer in pending:
            app.notify_late_hit(key, answer)


def _open_client(
    args: argparse.Namespace,
    relay: LateHitRelay,
    notices: list[str] | None = None,
) -> tuple[LookupClient, bool]:
    """Open the lookup client; also return whether late HITs reach the app.

    Messages about damaged local files that were replaced go to `notices`.
    """
    from kiosk.cli import open_lookup

    if "on_late_hit" in inspect.signature(open_lookup).parameters:
        client: LookupClient = open_lookup(
            args,
            on_late_hit=relay,
            on_notice=notices.append if notices is not None else None,
        )  # type: ignore[call-arg,unused-ignore]
        return client, True
    # NOTE: until kiosk.cli.open_lookup passes on_late_hit to open_client,
    # late HITs from re-checks reach only the log, not the screen.
    logger.warning("late HITs from re-checks will not reach the screen")
    return open_lookup(args), False


def run_app(args: argparse.Namespace) -> int:
    """Start the terminal app with the command line's lookup and devices."""
    from kiosk.cli import IMAGE_SUFFIXES, SAMPLE_IMAGES

    configure_logging(getattr(args, "log_level", "WARNING"))
    config_file = getattr(args, "config", None)
    relay = LateHitRelay()
    factories: list[DriverFactory] = []
    # Before the screen starts, the terminal is the place to say what failed.
    notices: list[str] = []
    try:
        client, late_alerts = _open_client(args, relay, notices)
    except (KioskError, BackendError) as exc:
        logger.error("kiosk app not started: %s", exc)
        print(f"kiosk: {exc}", file=sys.stderr)
        return 2
    if not getattr(args, "samples", False):
        try:
            factories.extend(_configured_drivers(config_file))
        except (KioskError, DriverError) as exc:
            client.close()
            logger.error("kiosk app not started: %s", exc)
            print(f"kiosk: {exc}", file=sys.stderr)
            return 2
    app_ready: list[KioskApp] = []
    if getattr(args, "samples", False):
        from kiosk.tui.feeder import SampleFeeder, demo_order

        images = demo_order(
            [p for p in SAMPLE_IMAGES.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES],
            SAMPLE_IMAGES / "truth.json",
        )

        def feeder(on_event: EventCallback) -> Driver:
            return SampleFeeder(
                images, ready=app_ready[0].ready_for_next, on_event=on_event
            )

        factories.append(feeder)
    with native_stderr_to(NATIVE_STDERR_FILE):
        app = KioskApp(client, drivers=factories, config_path=config_file)
        app.late_alerts = late_alerts
        app.startup_notices = notices
        app_ready.append(app)
        relay.attach(app)
        logger.info("kiosk app starting with %d device(s)", len(factories))
        app.run()
        app.stop_everything()
    if app.return_code:
        logger.error("kiosk app stopped on an error (exit code %d)", app.return_code)
    return app.return_code or 0


@contextlib.contextmanager
def native_stderr_to(path: Path) -> Iterator[None]:
    """Send what C libraries write to file descriptor 2 to a file while the
    app runs, and keep the terminal on a duplicate descriptor for Textual.

    libjpeg, inside OpenCV, prints warnings such as "Premature end of JPEG
    file" straight to descriptor 2, which would tear the screen. Textual
    draws on `sys.__stderr__` and reads it when the App is created, so this
    must wrap the App's creation.
    """
    original = sys.__stderr__
    if original is None or not original.isatty():
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    original.flush()
    saved = os.dup(2)
    terminal = open(  # noqa: SIM115 - closed in the finally block
        os.dup(2), "w", encoding=original.encoding, errors="backslashreplace"
    )
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    # Python-level messages, such as a crash report, still reach the user.
    python_stderr = sys.stderr
    sys.__stderr__ = terminal  # type: ignore[misc]
    sys.stderr = terminal
    try:
        yield
    finally:
        terminal.flush()
        sys.__stderr__ = original  # type: ignore[misc]
        sys.stderr = python_stderr
        os.dup2(saved, 2)
        os.close(saved)
        terminal.close()
