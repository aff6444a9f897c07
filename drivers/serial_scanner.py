"""Serial document readers (RS-232 or USB serial adapters) via pyserial.

The driver finds its port by path, /dev/serial/by-id link or USB id, decodes
the configured protocol and reconnects by itself, with backoff, when the port
disappears or fails.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import serial
import serial.tools.list_ports

from drivers.base import Driver, EventCallback
from drivers.errors import DeviceNotFoundError, DeviceOpenError, DriverError
from drivers.events import DeviceState, ImageCaptured, MrzLinesRead
from drivers.images import decode_image
from drivers.protocols import (
    Decoder,
    Frame,
    ImageFrame,
    MrzFrame,
    StatusFrame,
    make_decoder,
)
from drivers.protocols.command import CONTINUOUS_ON, READ_COMMAND
from kiosk.config import SerialConfig, parse_usb_id

log = logging.getLogger(__name__)

BY_ID_DIR = Path("/dev/serial/by-id")
_PARITY = {
    "none": serial.PARITY_NONE,
    "even": serial.PARITY_EVEN,
    "odd": serial.PARITY_ODD,
    "mark": serial.PARITY_MARK,
    "space": serial.PARITY_SPACE,
}
# Read timeout of one poll: short, so stop() and the frame timeout react fast.
_READ_TIMEOUT_S = 0.05
_FIRST_BACKOFF_S = 0.1
# Device status reports and the event state they mean; others are only logged.
_STATUS_STATES = {
    "read_start": DeviceState.DOCUMENT_PRESENT,
    "document_removed": DeviceState.DOCUMENT_REMOVED,
    "error": DeviceState.ERROR,
}


@dataclass(frozen=True, slots=True)
class SerialPortInfo:
    device: str
    by_id: list[str]
    vid: int | None
    pid: int | None
    serial_number: str | None
    description: str

    @property
    def usb_id(self) -> str:
        if self.vid is None or self.pid is None:
            return ""
        return f"{self.vid:04x}:{self.pid:04x}"


def list_serial_ports() -> list[SerialPortInfo]:
    """List the system's serial ports with their /dev/serial/by-id links."""
    links: dict[str, list[str]] = {}
    for link in sorted(glob.glob(str(BY_ID_DIR / "*"))):
        links.setdefault(os.path.realpath(link), []).append(link)
    ports = []
    for port in sorted(serial.tools.list_ports.comports(), key=lambda p: p.device):
        ports.append(
            SerialPortInfo(
                device=port.device,
                by_id=links.get(os.path.realpath(port.device), []),
                vid=port.vid,
                pid=port.pid,
                serial_number=port.serial_number,
                description=port.description or "",
            )
        )
    return ports


def resolve_port(config: SerialConfig) -> str:
    """Return the device path for `config`'s port or USB id.

    Raises DeviceNotFoundError naming what was searched."""
    if config.port:
        if not os.path.exists(config.port):
            raise DeviceNotFoundError(
                f"serial port {config.port} not found; check the cable, or list "
                "ports with `kiosk drivers list`"
            )
        return config.port
    vid, pid, serial_number = parse_usb_id(config.usb)
    for port in serial.tools.list_ports.comports():
        if port.vid != vid or port.pid != pid:
            continue
        if serial_number is not None and port.serial_number != serial_number:
            continue
        return str(port.device)
    raise DeviceNotFoundError(
        f"no serial port with USB id {config.usb}; list ports with `kiosk drivers list`"
    )


def open_port(config: SerialConfig, path: str) -> serial.Serial:
    try:
        return serial.Serial(
            port=path,
            baudrate=config.baudrate,
            bytesize=config.bytesize,
            parity=_PARITY[config.parity],
            stopbits=config.stopbits,
            xonxoff=config.flow_control == "xonxoff",
            rtscts=config.flow_control == "rtscts",
            dsrdtr=config.flow_control == "dsrdtr",
            exclusive=config.exclusive,
            timeout=_READ_TIMEOUT_S,
            write_timeout=1.0,
        )
    except (serial.SerialException, OSError, ValueError) as exc:
        if not os.path.exists(path):
            raise DeviceNotFoundError(f"serial port {path} disappeared") from exc
        raise DeviceOpenError(f"cannot open serial port {path}: {exc}") from exc


def bcc_setting(value: str) -> bool | None:
    return {"auto": None, "on": True, "off": False}[value]


class SerialScanner(Driver):
    """A document reader on a serial port."""

    delivers_text = True

    def __init__(
        self,
        config: SerialConfig,
        on_event: EventCallback | None = None,
        *,
        queue_events: bool = True,
    ) -> None:
        super().__init__(config.name or "serial", on_event, queue_events=queue_events)
        self.config = config
        self.delivers_images = config.protocol == "image"
        self.delivers_text = config.protocol != "image"
        self.port_path: str | None = None
        self._port: serial.Serial | None = None
        self._port_lock = threading.Lock()
        self._decoder: Decoder = self._new_decoder()
        self._earlier_drops = 0
        self.frames_read = 0

    @property
    def drops(self) -> int:
        """Frames and noise runs dropped since start, over all connections."""
        return self._earlier_drops + self._decoder.drop_count

    @property
    def decoder(self) -> Decoder:
        return self._decoder

    def _new_decoder(self) -> Decoder:
        return make_decoder(
            self.config.protocol,
            header=self.config.header,
            bcc=bcc_setting(self.config.bcc),
        )

    def _run(self) -> None:
        backoff = _FIRST_BACKOFF_S
        reported_outage = False
        while not self._stop_event.is_set():
            try:
                port = self._connect()
            except (DeviceNotFoundError, DeviceOpenError) as exc:
                if not reported_outage:
                    self.emit_status(DeviceState.DISCONNECTED, str(exc))
                    reported_outage = True
                log.debug("driver %s: retry in %.1f s", self.name, backoff)
                self._stop_event.wait(backoff)
                backoff = min(backoff * 2, self.config.reconnect_max_s)
                continue
            backoff = _FIRST_BACKOFF_S
            reported_outage = False
            try:
                reason = self._serve(port)
            finally:
                self._close_port()
            if not self._stop_event.is_set():
                self.emit_status(DeviceState.DISCONNECTED, reason)
                reported_outage = True
        self._close_port()

    def _connect(self) -> serial.Serial:
        path = resolve_port(self.config)
        port = open_port(self.config, path)
        with self._port_lock:
            self._port = port
        self.port_path = path
        self._earlier_drops += self._decoder.drop_count
        self._decoder = self._new_decoder()
        self.emit_status(
            DeviceState.CONNECTED,
            f"{path} at {self.config.baudrate} baud, protocol {self.config.protocol}",
        )
        return port

    def _serve(self, port: serial.Serial) -> str:
        """Read and decode until stop or a port failure; return the failure."""
        command_mode = self.config.protocol == "command"
        next_poll = 0.0
        last_rx = time.monotonic()
        try:
            if command_mode and self.config.continuous:
                self._write(port, CONTINUOUS_ON)
            while not self._stop_event.is_set():
                now = time.monotonic()
                if command_mode and not self.config.continuous and now >= next_poll:
                    self._write(port, READ_COMMAND)
                    next_poll = now + self.config.poll_interval_s
                data = port.read(max(1, port.in_waiting))
                if data:
                    last_rx = time.monotonic()
                    self._emit_raw("rx", data)
                    self._handle(self._decoder.feed(data))
                elif (
                    self._decoder.needs_flush
                    and time.monotonic() - last_rx >= self.config.frame_timeout_s
                ):
                    self._handle(self._decoder.flush())
        except (serial.SerialException, OSError) as exc:
            if self._stop_event.is_set():
                return "stopped"
            log.warning("driver %s: port %s failed: %s", self.name, self.port_path, exc)
            return f"port {self.port_path} lost: {type(exc).__name__}"
        return "stopped"

    def _write(self, port: serial.Serial, data: bytes) -> None:
        self._emit_raw("tx", data)
        port.write(data)

    def _handle(self, frames: list[Frame]) -> None:
        for frame in frames:
            self.frames_read += 1
            if isinstance(frame, MrzFrame):
                log.info("driver %s: MRZ of %d lines read", self.name, len(frame.lines))
                self.emit(MrzLinesRead(frame.lines, frame.raw, self.name))
            elif isinstance(frame, ImageFrame):
                self._handle_image(frame)
            elif isinstance(frame, StatusFrame):
                state = _STATUS_STATES.get(frame.status)
                if state is None:
                    log.debug("driver %s: device status %s", self.name, frame.status)
                else:
                    self.emit_status(state, f"device reports {frame.status}")

    def _handle_image(self, frame: ImageFrame) -> None:
        try:
            image = decode_image(frame.data, f"{frame.format} image")
        except DriverError as exc:
            log.warning(
                "driver %s: image of %d bytes dropped: %s",
                self.name,
                len(frame.data),
                exc,
            )
            self.emit_status(
                DeviceState.ERROR, f"image dropped ({exc}); scan the document again"
            )
            return
        log.info(
            "driver %s: image %dx%d read", self.name, image.shape[1], image.shape[0]
        )
        self.emit(ImageCaptured(image, self.name))

    def _close_port(self) -> None:
        with self._port_lock:
            port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError) as exc:
                log.debug("driver %s: close failed: %s", self.name, exc)

    def _interrupt(self) -> None:
        with self._port_lock:
            port = self._port
        if port is not None:
            try:
                port.cancel_read()
            except (serial.SerialException, OSError, TypeError) as exc:
                log.debug("driver %s: cancel_read failed: %s", self.name, exc)
