"""A simulated serial document reader on a pseudo-terminal.

The simulator owns the master side of a pty and plays documents in one
protocol, optionally with injected faults. A serial driver opens the slave
side like a real port. Closing the master simulates an unplugged cable.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import select
import threading
import time
import tty
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from drivers.base import Driver, EventCallback
from drivers.errors import DriverConfigError, DriverError
from drivers.events import DeviceState, DriverEvent, StatusChanged
from drivers.protocols import Document, Encoder, make_encoder
from drivers.protocols.command import (
    CONTINUOUS_OFF,
    CONTINUOUS_ON,
    READ_COMMAND,
    response,
    split_commands,
)
from drivers.serial_scanner import SerialScanner, bcc_setting
from drivers.specimens import parse_mrz_file, specimen_documents
from kiosk.config import SerialConfig, SimulatorConfig

log = logging.getLogger(__name__)

_WRITE_POLL_S = 0.1


@dataclass(frozen=True, slots=True)
class Played:
    """One document the simulator sent, and the fault injected into it."""

    document: Document
    fault: str | None


def load_documents(mrz_file: Path | None, images: Sequence[Path]) -> list[Document]:
    """Read documents from an MRZ text file or image files; default: specimens."""
    if images:
        documents: list[Document] = []
        for path in images:
            try:
                documents.append(path.read_bytes())
            except OSError as exc:
                raise DriverConfigError(
                    f"cannot read image file {path}: {exc}"
                ) from exc
        return documents
    if mrz_file is not None:
        try:
            text = mrz_file.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise DriverConfigError(f"cannot read MRZ file {mrz_file}: {exc}") from exc
        parsed = parse_mrz_file(text)
        if not parsed:
            raise DriverConfigError(f"MRZ file {mrz_file} contains no documents")
        return list(parsed)
    return list(specimen_documents())


def fault_plan(faults: Sequence[str]) -> Iterator[str | None]:
    """Faults per document: clean, first fault, clean, second fault, ..., and
    round again, so a monitor that connects late still sees every fault.

    A clean document after each fault shows that the stream resynchronised."""
    if not faults:
        return itertools.repeat(None)
    return itertools.cycle([item for fault in faults for item in (None, fault)])


def _unsupported_fault(
    protocol: str, fault: str, encoder: Encoder, *, header: bool
) -> str:
    """Say why `encoder` cannot inject `fault`, and how to make it able to."""
    supported = ", ".join(sorted(encoder.supported_faults))
    message = (
        f"protocol {protocol!r} cannot inject fault {fault!r}; supported: {supported}"
    )
    with_bcc = make_encoder(protocol, header=header, bcc=True)
    if fault == "bad-bcc" and fault in with_bcc.supported_faults:
        message += (
            ". Fault 'bad-bcc' corrupts the block check, which is off: add "
            '--bcc on, or set bcc = "on" in the simulator\'s kiosk.toml section'
        )
    return message


class ScannerSimulator:
    """Plays documents on the master side of a pty.

    `send()` writes one document now (tests use it); `start()` runs a thread
    that plays `count` documents, one every `interval_s` (0 = forever)."""

    def __init__(
        self,
        protocol: str,
        documents: Sequence[Document] | None = None,
        *,
        faults: Sequence[str] = (),
        interval_s: float = 2.0,
        count: int = 0,
        header: bool = False,
        bcc: bool | None = None,
        seed: int | None = None,
        link_path: Path | None = None,
    ) -> None:
        self.protocol = protocol
        self.encoder: Encoder = make_encoder(
            protocol, header=header, bcc=bcc, seed=seed
        )
        self.documents = list(documents) if documents else list(specimen_documents())
        for document in self.documents:
            if isinstance(document, bytes) != self.encoder.delivers_images:
                wanted = "image files" if self.encoder.delivers_images else "MRZ lines"
                raise DriverConfigError(f"protocol {protocol!r} sends {wanted} only")
        for fault in faults:
            if fault not in self.encoder.supported_faults:
                raise DriverConfigError(
                    _unsupported_fault(protocol, fault, self.encoder, header=header)
                )
        self.faults = list(faults)
        self.interval_s = interval_s
        self.count = count
        self.link_path = link_path
        self.played: list[Played] = []
        self.commands: list[bytes] = []
        self._plan = fault_plan(self.faults)
        self._next_document = 0
        self._master: int | None = None
        self._slave: int | None = None
        self.slave_path = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._continuous = protocol != "command"
        self._next_send = 0.0
        self._command_buffer = bytearray()

    # -- pty lifetime ---------------------------------------------------------

    def open(self) -> str:
        """Create a new pty pair (replugging if one was open); return the slave path."""
        self.unplug()
        master, slave = os.openpty()
        # Raw mode: the line discipline must not turn CR into LF or echo.
        tty.setraw(slave)
        tty.setraw(master)
        os.set_blocking(master, False)
        with self._lock:
            self._master, self._slave = master, slave
        self.slave_path = os.ttyname(slave)
        if self.link_path is not None:
            temporary = self.link_path.with_name(self.link_path.name + ".new")
            temporary.unlink(missing_ok=True)
            temporary.symlink_to(self.slave_path)
            temporary.replace(self.link_path)
        log.info("simulator: %s reader on %s", self.protocol, self.slave_path)
        return self.slave_path

    def unplug(self) -> None:
        """Close both pty sides: readers of the slave get an I/O error."""
        with self._lock:
            fds = [fd for fd in (self._master, self._slave) if fd is not None]
            self._master = self._slave = None
        for fd in fds:
            os.close(fd)
        if fds:
            log.info("simulator: unplugged %s", self.slave_path)

    @property
    def is_open(self) -> bool:
        return self._master is not None

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if not self.is_open:
            self.open()
        self._thread = threading.Thread(
            target=self._play, name="scanner-sim", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self.unplug()
        if self.link_path is not None and self.link_path.is_symlink():
            self.link_path.unlink()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait for the player thread to finish `count` documents; True when done."""
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    # -- sending --------------------------------------------------------------

    def next_document(self) -> tuple[Document, str | None]:
        document = self.documents[self._next_document % len(self.documents)]
        self._next_document += 1
        return document, next(self._plan)

    def send(self, document: Document | None = None, fault: str | None = None) -> bytes:
        """Encode and write one document now; without arguments, the next in plan."""
        if document is None:
            document, fault = self.next_document()
        data = self.encoder.encode(document, fault)
        self.write(data)
        self.played.append(Played(document, fault))
        log.info("simulator: sent document %d (fault: %s)", len(self.played), fault)
        return data

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            master = self._master
            if master is None:
                raise DriverError("simulator pty is closed")
            _, writable, _ = select.select([], [master], [], _WRITE_POLL_S)
            if self._stop.is_set():
                return
            if not writable:
                continue
            try:
                written = os.write(master, view)
            except BlockingIOError:
                continue
            view = view[written:]

    def poll_commands(self) -> None:
        """Read host commands from the master and respond to them (command protocol)."""
        master = self._master
        if master is None:
            return
        try:
            data = os.read(master, 1024)
        except BlockingIOError:
            return
        except OSError as exc:
            # EIO: no process has the slave open right now.
            if exc.errno != errno.EIO:
                raise
            return
        if self.protocol != "command":
            return
        self._command_buffer += data
        for command in split_commands(self._command_buffer):
            self.commands.append(command)
            self._answer(command)

    def _answer(self, command: bytes) -> None:
        if command == CONTINUOUS_ON:
            self._continuous = True
            self.write(response("A"))
        elif command == CONTINUOUS_OFF:
            self._continuous = False
            self.write(response("A"))
        elif command == READ_COMMAND:
            # A polled reader has a document on its window once per interval.
            if time.monotonic() >= self._next_send:
                self.send()
                self._next_send = time.monotonic() + self.interval_s
            else:
                self.write(response("N"))
        else:
            self.write(response("E", b"unknown command"))

    # -- player thread --------------------------------------------------------

    def _play(self) -> None:
        self._next_send = time.monotonic() + self.interval_s
        while not self._stop.is_set():
            if self.count and len(self.played) >= self.count:
                break
            try:
                self.poll_commands()
                if self._continuous and time.monotonic() >= self._next_send:
                    self.send()
                    self._next_send = time.monotonic() + self.interval_s
            except DriverError:
                log.info("simulator: pty closed, player stops")
                break
            self._stop.wait(0.02)


class SimulatedScanner(Driver):
    """Driver type `simulator`: a pty simulator read by the real serial driver."""

    def __init__(
        self, config: SimulatorConfig, on_event: EventCallback | None = None
    ) -> None:
        super().__init__(config.name or "simulator", on_event)
        self.config = config
        documents = load_documents(
            Path(config.mrz_file) if config.mrz_file else None,
            [Path(p) for p in config.images],
        )
        self.delivers_images = config.protocol == "image"
        self.delivers_text = config.protocol != "image"
        self.simulator = ScannerSimulator(
            config.protocol,
            documents,
            faults=config.faults,
            interval_s=config.interval_s,
            count=config.count,
            header=config.header,
            bcc=bcc_setting(config.bcc),
        )
        self.scanner: SerialScanner | None = None

    def _forward(self, event: DriverEvent) -> None:
        self.emit(event)
        if (
            isinstance(event, StatusChanged)
            and event.state is DeviceState.CONNECTED
            and not self.simulator.started
        ):
            # pyserial discards pending input on open, so play only from now.
            self.simulator.start()

    def _run(self) -> None:
        path = self.simulator.open()
        serial_config = SerialConfig(
            name=self.name,
            port=path,
            protocol=self.config.protocol,
            header=self.config.header,
            bcc=self.config.bcc,
        )
        self.scanner = SerialScanner(serial_config, self._forward, queue_events=False)
        self.scanner.raw_listener = self.raw_listener
        self.scanner.start()
        self._stop_event.wait()
        self.scanner.stop()
        self.simulator.stop()
