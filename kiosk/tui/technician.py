"""The technician's screen: devices found, the configured driver, a test
read, a live raw monitor, and the configuration file with validation."""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import threading
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import (
    DataTable,
    Footer,
    Header,
    RichLog,
    Static,
    TabbedContent,
    TabPane,
    TextArea,
)

from drivers import Driver, DriverError, create_driver
from drivers.camera import CameraDriver, FrameCheck
from drivers.events import DriverEvent, ImageCaptured, MrzLinesRead, StatusChanged
from kiosk.config import DriverConfig, KioskConfig, config_path, parse_config
from kiosk.errors import ConfigError, KioskError
from kiosk.mrz import parse
from kiosk.tui.present import check_labels, field_rows

if TYPE_CHECKING:
    from kiosk.tui.app import KioskApp

logger = logging.getLogger(__name__)

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "kiosk.example.toml"
# Seconds a test read waits for a document before giving up.
TEST_READ_TIMEOUT_S = 30.0
TECHNICIAN_TABS = {
    "tab-driver": "Driver",
    "tab-devices": "Devices",
    "tab-monitor": "Test read / monitor",
    "tab-config": "Config file",
}
# Bytes per hex row in the raw monitor, as in `kiosk drivers monitor`.
HEX_ROW = 16


DeviceRow = tuple[str, str, str, str]


class DevicesFound(Message):
    def __init__(self, rows: list[DeviceRow]) -> None:
        super().__init__()
        self.rows = rows


class RawTraffic(Message):
    def __init__(self, direction: Literal["rx", "tx"], data: bytes) -> None:
        super().__init__()
        self.direction = direction
        self.data = data


class DeviceEventSeen(Message):
    def __init__(self, event: DriverEvent) -> None:
        super().__init__()
        self.event = event


class FrameChecked(Message):
    def __init__(self, check: FrameCheck) -> None:
        super().__init__()
        self.check = check


class DeviceSessionEnded(Message):
    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


def hex_dump(direction: str, data: bytes) -> Text:
    """Return raw bytes as a readable line and hex rows."""
    from drivers.cli import readable

    text = Text(f"{direction} {len(data)} bytes: ", style="bold")
    text.append(readable(data))
    for offset in range(0, len(data), HEX_ROW):
        chunk = data[offset : offset + HEX_ROW]
        text.append(f"\n   {offset:04x}  {chunk.hex(' ')}", style="dim")
    return text


def describe_frame_check(check: FrameCheck) -> str:
    """Return one line about a camera frame: the auto-capture decision and,
    when an MRZ band was found, its box, sharpness, glare and steadiness."""
    if check.band is None:
        return f"frame: {check.decision} (no MRZ band)"
    band = check.band
    return (
        f"frame: {check.decision}; band {band.width}x{band.height} at "
        f"({band.x},{band.y}), sharpness {check.sharpness:.0f}, "
        f"glare {check.glare:.2f}, steady {check.steady}"
    )


def settings_rows(config: KioskConfig) -> list[tuple[str, str]]:
    """Return the active driver's type, name and every setting as rows."""
    section = config.driver()
    rows = [("driver", section.name or "(unnamed)"), ("type", section.type)]
    for spec in dataclasses.fields(section):
        if spec.name == "name":
            continue
        rows.append((spec.name, repr(getattr(section, spec.name))))
    return rows


def find_devices() -> list[DeviceRow]:
    """Return (kind, device, identity, by-id links) for each serial port and
    camera the system lists."""
    from drivers.cli import list_cameras
    from drivers.serial_scanner import list_serial_ports

    rows: list[DeviceRow] = []
    for port in list_serial_ports():
        identity = " ".join(
            part
            for part in (
                f"USB {port.usb_id}" if port.usb_id else "",
                f"serial {port.serial_number}" if port.serial_number else "",
                port.description,
            )
            if part
        )
        rows.append(("serial", port.device, identity, " ".join(port.by_id)))
    for device, name, links in list_cameras():
        rows.append(("camera", device, name, " ".join(links)))
    return rows


class TechnicianScreen(Screen[None]):
    """Device set-up: what is plugged in, what is configured, what it sends."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # Priority, because the config editor binds F6 and F7 to selections.
        Binding("f5", "find_devices", "Devices", priority=True),
        Binding("f6", "test_read", "Test read", priority=True),
        Binding("f7", "toggle_monitor", "Monitor", priority=True),
        # Left out of the footer for room; the command palette lists it.
        Binding("f8", "validate", "Validate", show=False, priority=True),
        Binding("ctrl+s", "save", "Save", priority=True),
    ]

    def __init__(self, *, test_timeout_s: float = TEST_READ_TIMEOUT_S) -> None:
        super().__init__(id="technician")
        self.test_timeout_s = test_timeout_s
        self.session: Literal["idle", "test", "monitor"] = "idle"
        self._session_driver: Driver | None = None
        self._session_stop = threading.Event()
        self.documents_seen = 0
        self._saved_text = ""
        self._last_decision = ""
        self._last_check_at = 0.0
        # The change event of an edit can arrive after F8 or Ctrl+S already
        # judged that text, so the verdict stays until the text changes.
        self._judged_text: str | None = None

    @property
    def kiosk(self) -> KioskApp:
        from kiosk.tui.app import KioskApp

        assert isinstance(self.app, KioskApp)
        return self.app

    @property
    def config_file(self) -> Path:
        return config_path(self.kiosk.config_path)

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with TabbedContent(initial="tab-driver"):
            with TabPane(TECHNICIAN_TABS["tab-driver"], id="tab-driver"):
                yield Static(id="driver-summary")
                yield DataTable(id="driver-settings", show_cursor=False)
            with TabPane(TECHNICIAN_TABS["tab-devices"], id="tab-devices"):
                yield DataTable(id="devices", cursor_type="row", zebra_stripes=True)
            with TabPane(TECHNICIAN_TABS["tab-monitor"], id="tab-monitor"):
                yield Static(
                    "F6 waits for one document; F7 streams, or stops either.",
                    id="monitor-state",
                )
                yield RichLog(id="monitor-log", wrap=True, max_lines=2000)
            with TabPane(TECHNICIAN_TABS["tab-config"], id="tab-config"), Vertical():
                yield Static(id="config-state")
                yield TextArea(id="config-text", language=None, soft_wrap=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        devices = self.query_one("#devices", DataTable)
        for label in ("Kind", "Device", "Identity", "Links"):
            devices.add_column(label, key=label.lower())
        settings = self.query_one("#driver-settings", DataTable)
        settings.add_column("Setting", key="setting")
        settings.add_column("Value", key="value")
        self._load_config_text()
        self.show_driver()
        self._refresh_devices()

    # Configured driver.

    def show_driver(self) -> None:
        summary = self.query_one("#driver-summary", Static)
        table = self.query_one("#driver-settings", DataTable)
        table.clear()
        path = self.config_file
        try:
            config = self._read_config()
            rows = settings_rows(config)
        except ConfigError as exc:
            summary.update(Text(f"{path}: {exc}", style="bold red"))
            return
        summary.update(f"Configuration {path}" + ("" if path.exists() else " (absent)"))
        for setting, value in rows:
            table.add_row(setting, value)

    def _read_config(self) -> KioskConfig:
        path = self.config_file
        if not path.exists():
            raise ConfigError(
                f"no configuration file at {path}; write one in the Config file tab "
                "and save it with Ctrl+S"
            )
        return parse_config(path.read_text(encoding="utf-8"), source=path)

    # Devices found.

    def show_tab(self, tab_id: str) -> None:
        self.query_one(TabbedContent).active = tab_id

    def action_find_devices(self) -> None:
        self.show_tab("tab-devices")
        self._refresh_devices()

    def _refresh_devices(self) -> None:
        self.run_worker(
            self._find_devices, thread=True, group="devices", exclusive=True
        )

    def _find_devices(self) -> None:
        self.post_message(DevicesFound(self.kiosk.device_lister()))

    def on_devices_found(self, message: DevicesFound) -> None:
        table = self.query_one("#devices", DataTable)
        table.clear()
        for row in message.rows:
            table.add_row(*row)
        if not message.rows:
            table.add_row("-", "no serial ports or cameras found", "", "")

    # Test read and raw monitor.

    def action_test_read(self) -> None:
        self._start_session("test")

    def action_toggle_monitor(self) -> None:
        # F7 also ends a test read that is still waiting.
        if self.session != "idle":
            self.stop_session()
            return
        self._start_session("monitor")

    def _start_session(self, kind: Literal["test", "monitor"]) -> None:
        if self.session != "idle":
            self.notify(f"A {self.session} is running; press F7 to stop it first.")
            return
        try:
            section = self._read_config().driver()
        except ConfigError as exc:
            self._log(Text(f"Cannot open the device: {exc}", style="bold red"))
            self.show_tab("tab-monitor")
            return
        self.session = kind
        self.documents_seen = 0
        self._session_stop = threading.Event()
        self.show_tab("tab-monitor")
        activity = (
            f"Test read: waiting up to {self.test_timeout_s:.0f} s for one document"
            " (F7 stops)"
            if kind == "test"
            else "Monitor: streaming raw traffic and events; F7 stops"
        )
        self.query_one("#monitor-state", Static).update(
            f"{section.name} ({section.type}): {activity}."
        )
        self._log(Text(f"── {activity} ──", style="bold"))
        self.run_worker(
            partial(self._run_session, section, kind),
            thread=True,
            group="device-session",
        )

    def _on_raw(self, direction: Literal["rx", "tx"], data: bytes) -> None:
        # Runs on the driver's thread.
        self.post_message(RawTraffic(direction, data))

    def _on_frame_check(self, check: FrameCheck) -> None:
        # Runs on the camera thread, tens of times a second: pass on a
        # change of decision at once and the measures once a second.
        now = time.monotonic()
        if check.decision == self._last_decision and now - self._last_check_at < 1.0:
            return
        self._last_decision, self._last_check_at = check.decision, now
        self.post_message(FrameChecked(check))

    def on_frame_checked(self, message: FrameChecked) -> None:
        self._log(Text(describe_frame_check(message.check), style="dim"))

    def _run_session(
        self, section: DriverConfig, kind: Literal["test", "monitor"]
    ) -> None:
        try:
            # Creating a driver can load image files (image protocol), so
            # it happens here rather than on the UI thread.
            driver = create_driver(section)
        except DriverError as exc:
            self.post_message(DeviceSessionEnded(f"cannot open the device: {exc}"))
            return
        driver.raw_listener = self._on_raw
        if isinstance(driver, CameraDriver):
            driver.check_listener = self._on_frame_check
        self._session_driver = driver
        deadline = None
        if kind == "test":
            deadline = time.monotonic() + self.test_timeout_s
        reason = "stopped"
        self.kiosk.release_devices()
        try:
            driver.start()
            while not self._session_stop.is_set():
                event = driver.get_event(0.1)
                if event is not None:
                    self.post_message(DeviceEventSeen(event))
                    if kind == "test" and isinstance(
                        event, MrzLinesRead | ImageCaptured
                    ):
                        reason = "one document read"
                        break
                if deadline is not None and time.monotonic() >= deadline:
                    reason = f"no document within {self.test_timeout_s:.0f} s"
                    break
        except DriverError as exc:
            reason = f"device failed: {exc}"
        finally:
            driver.stop()
            self.kiosk.reclaim_devices()
        self.post_message(DeviceSessionEnded(reason))

    def stop_session(self) -> None:
        self._session_stop.set()

    def on_raw_traffic(self, message: RawTraffic) -> None:
        self._log(hex_dump(message.direction, message.data))

    def on_device_event_seen(self, message: DeviceEventSeen) -> None:
        event = message.event
        if isinstance(event, StatusChanged):
            self._log(Text(f"status {event.state.value}: {event.reason}"))
        elif isinstance(event, MrzLinesRead):
            self.documents_seen += 1
            self._log(self._parse_text(event))
        elif isinstance(event, ImageCaptured):
            self.documents_seen += 1
            height, width = event.image.shape[:2]
            self._log(Text(f"image from {event.source}: {width}x{height} pixels"))

    def _parse_text(self, event: MrzLinesRead) -> Text:
        text = Text(f"MRZ from {event.source}:\n", style="bold")
        text.append("\n".join(f"    {line}" for line in event.lines) + "\n")
        try:
            report = parse(event.lines, today=self.kiosk.clock().date())
        except KioskError as exc:
            text.append(f"parse: {exc}", style="bold red")
            return text
        fields = ", ".join(f"{label} {value}" for label, value in field_rows(report))
        checks = ", ".join(f"{name} {result}" for name, result in check_labels(report))
        text.append(f"parse: {fields}\nchecks: {checks}")
        for warning in report.warnings:
            text.append(f"\nwarning: {warning.message}", style="bold")
        return text

    def on_device_session_ended(self, message: DeviceSessionEnded) -> None:
        self._log(Text(f"── {self.session} ended: {message.reason} ──", style="bold"))
        self.query_one("#monitor-state", Static).update(
            f"Last {self.session}: {message.reason}. F6 test read, F7 monitor."
        )
        self.session = "idle"
        self._session_driver = None

    def _log(self, text: Text) -> None:
        self.query_one("#monitor-log", RichLog).write(text)

    # Configuration file.

    def _load_config_text(self) -> None:
        path = self.config_file
        area = self.query_one("#config-text", TextArea)
        state = self.query_one("#config-state", Static)
        if path.exists():
            self._saved_text = path.read_text(encoding="utf-8")
            area.load_text(self._saved_text)
            state.update(f"{path}: F8 validates, Ctrl+S validates and saves.")
        elif EXAMPLE_CONFIG.exists():
            example = EXAMPLE_CONFIG.read_text(encoding="utf-8")
            # Loading raises a change event; it must not read as an edit.
            self._judged_text = example
            area.load_text(example)
            state.update(f"{path} does not exist; this is the example. Ctrl+S saves.")
        else:
            state.update(f"{path} does not exist; Ctrl+S saves what you type here.")

    def action_validate(self) -> bool:
        text = self.query_one("#config-text", TextArea).text
        self._judged_text = text
        state = self.query_one("#config-state", Static)
        try:
            config = parse_config(text, source=self.config_file)
            if config.drivers:
                config.driver()
        except ConfigError as exc:
            state.update(Text(f"✗ invalid: {exc}", style="bold red"))
            self.show_tab("tab-config")
            return False
        state.update(Text(f"✓ valid: {len(config.drivers)} driver(s)", style="green"))
        return True

    def action_save(self) -> None:
        if not self.action_validate():
            self.notify("Not saved: fix the configuration first.", severity="error")
            return
        path = self.config_file
        text = self.query_one("#config-text", TextArea).text
        temporary = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # The file can hold the API key: keep the mode it had, and make
            # a new one readable by its owner only.
            try:
                mode = stat.S_IMODE(path.stat().st_mode)
            except FileNotFoundError:
                mode = 0o600
            temporary.unlink(missing_ok=True)
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with open(descriptor, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(temporary, mode)
            os.replace(temporary, path)
        except OSError as exc:
            logger.error("saving the configuration to %s failed: %s", path, exc)
            self.notify(f"Cannot save {path}: {exc}", severity="error")
            return
        self._saved_text = text
        logger.info("configuration saved to %s", path)
        self.query_one("#config-state", Static).update(
            Text(f"✓ saved to {path}; restart the kiosk to use it.", style="green")
        )
        self.show_driver()

    @on(TextArea.Changed, "#config-text")
    def _config_edited(self, event: TextArea.Changed) -> None:
        if event.text_area.text in (self._saved_text, self._judged_text):
            return
        self.query_one("#config-state", Static).update(
            f"{self.config_file}: edited, not saved. F8 validates, Ctrl+S saves."
        )

    def on_unmount(self) -> None:
        self.stop_session()
