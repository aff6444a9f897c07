"""Technician commands: `simulate-scanner` and `drivers list|test|monitor`.

The kiosk command line adds them with `register(subparsers)`; each sets a
`handler(args) -> int` default that the main program calls. These commands
print raw device traffic and MRZ text to the terminal on purpose: they are
run by a technician at the device, and nothing of it goes to the log.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import threading
import time
from pathlib import Path
from typing import Literal, TextIO, TypeAlias

import cv2

from drivers import create_driver
from drivers.base import Driver
from drivers.camera import CameraDriver, FrameCheck
from drivers.errors import DriverError
from drivers.events import DriverEvent, ImageCaptured, MrzLinesRead, StatusChanged
from drivers.protocols import FAULTS, PROTOCOLS
from drivers.serial_scanner import SerialScanner, bcc_setting, list_serial_ports
from kiosk.config import load_config
from kiosk.errors import ConfigError

# argparse's class is generic only to type checkers on Python 3.11.
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

_CONTROL_NAMES = {
    0x01: "<SOH>",
    0x02: "<STX>",
    0x03: "<ETX>",
    0x04: "<EOT>",
    0x06: "<ACK>",
    0x0A: "<LF>",
    0x0D: "<CR>",
    0x15: "<NAK>",
    0x1C: "<FS>",
    0x1D: "<GS>",
    0x1E: "<RS>",
}


def register(subparsers: SubParsers) -> None:
    """Add `simulate-scanner` and `drivers` to the kiosk's subcommands."""
    _register_simulator(subparsers)
    drivers = subparsers.add_parser(
        "drivers",
        help="list capture devices, test or monitor the configured driver",
        description="Technician tools for cameras, serial document readers and "
        "the other capture drivers configured in kiosk.toml.",
    )
    _add_config_option(drivers)
    drivers.set_defaults(handler=lambda args: _usage(drivers))
    commands = drivers.add_subparsers(dest="drivers_command", metavar="ACTION")

    listing = commands.add_parser(
        "list", help="list serial ports and cameras on this machine"
    )
    listing.set_defaults(handler=run_list)

    test = commands.add_parser(
        "test",
        help="open a configured driver, wait for one document, show bytes and parse",
    )
    _add_driver_options(test)
    test.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds to wait for a document (default: 60)",
    )
    test.add_argument(
        "--save",
        type=Path,
        metavar="FILE",
        help="write a captured image to FILE (PNG or JPEG by its suffix)",
    )
    test.set_defaults(handler=run_test)

    monitor = commands.add_parser(
        "monitor",
        help="stream a configured driver's raw traffic and events until Ctrl-C",
    )
    _add_driver_options(monitor)
    monitor.add_argument(
        "--count",
        type=int,
        default=0,
        metavar="N",
        help="stop after N documents (default: 0, run until Ctrl-C)",
    )
    monitor.set_defaults(handler=run_monitor)


def _register_simulator(subparsers: SubParsers) -> None:
    sim = subparsers.add_parser(
        "simulate-scanner",
        help="play documents as a serial reader on a pseudo-terminal",
        description="Create a pseudo-terminal, print its path, and play documents "
        "on it in one reader protocol, optionally with injected faults. Point a "
        "serial driver's port at the printed path. Documents alternate clean "
        "and faulty, one fault after another, round again until --count is "
        "reached. "
        "Documents sent before a driver opens the port are lost, as with a "
        "real reader.",
    )
    sim.add_argument(
        "--protocol", required=True, choices=PROTOCOLS, help="reader protocol"
    )
    source = sim.add_mutually_exclusive_group()
    source.add_argument(
        "--mrz-file",
        type=Path,
        metavar="FILE",
        help="MRZ text file, documents separated by blank lines "
        "(default: built-in ICAO specimens of the fictional state UTO)",
    )
    source.add_argument(
        "--image",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="JPEG or PNG file to send (image protocol); repeat for more",
    )
    sim.add_argument(
        "--fault",
        action="append",
        default=[],
        choices=FAULTS,
        help="fault to inject, in every other document; repeat for more",
    )
    sim.add_argument(
        "--interval",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds between documents (default: 2)",
    )
    sim.add_argument(
        "--count",
        type=int,
        default=0,
        metavar="N",
        help="documents to play, then exit (default: 0, until Ctrl-C)",
    )
    sim.add_argument(
        "--header", action="store_true", help="stx-etx: send SOH/length/source/type"
    )
    sim.add_argument(
        "--bcc",
        choices=("auto", "on", "off"),
        default="auto",
        help="append an XOR block check (default: auto, on for cute only)",
    )
    sim.add_argument(
        "--link",
        type=Path,
        metavar="PATH",
        help="also create a symbolic link PATH to the pty, like /dev/serial/by-id",
    )
    sim.add_argument("--seed", type=int, help="random seed for the injected faults")
    sim.set_defaults(handler=run_simulate_scanner)


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: a default here would overwrite the main program's --config.
    parser.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="kiosk.toml to read (default: $KIOSK_CONFIG or ./kiosk.toml)",
    )


def _add_driver_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name",
        nargs="?",
        help="[drivers.NAME] section to use (default: active_driver)",
    )
    _add_config_option(parser)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


# -- simulate-scanner -----------------------------------------------------------


def run_simulate_scanner(args: argparse.Namespace) -> int:
    return simulate_scanner(args)


def simulate_scanner(
    args: argparse.Namespace,
    stop: threading.Event | None = None,
    out: TextIO | None = None,
) -> int:
    """Run the simulator until `count` documents, Ctrl-C or `stop` is set."""
    from drivers.simulator import ScannerSimulator, load_documents

    out = out or sys.stdout
    try:
        if args.protocol == "image" and not args.image:
            raise DriverError("the image protocol needs at least one --image FILE")
        documents = load_documents(args.mrz_file, args.image)
        simulator = ScannerSimulator(
            args.protocol,
            documents,
            faults=args.fault,
            interval_s=args.interval,
            count=args.count,
            header=args.header,
            bcc=bcc_setting(args.bcc),
            seed=args.seed,
            link_path=args.link,
        )
        path = simulator.open()
    except (DriverError, OSError) as exc:
        print(f"simulate-scanner: {exc}", file=sys.stderr)
        return 2
    print(path, file=out, flush=True)
    if args.link:
        print(f"link: {args.link} -> {path}", file=out, flush=True)
    simulator.start()
    stop = stop or threading.Event()
    try:
        while not stop.is_set() and not simulator.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
    print(f"{len(simulator.played)} documents sent", file=out)
    return 0


# -- drivers list ---------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    ports = list_serial_ports()
    print("Serial ports:")
    if not ports:
        print("  none found")
    for port in ports:
        usb = f"USB {port.usb_id}" if port.usb_id else "no USB id"
        serial_number = f" serial {port.serial_number}" if port.serial_number else ""
        print(f"  {port.device}  {usb}{serial_number}  {port.description}")
        for link in port.by_id:
            print(f"    {link}")
    cameras = list_cameras()
    print("Cameras:")
    if not cameras:
        print("  none found")
    for device, name, links in cameras:
        print(f"  {device}  {name}")
        for link in links:
            print(f"    {link}")
    return 0


def list_cameras() -> list[tuple[str, str, list[str]]]:
    """Return (device, name, by-id links) for each /dev/video* node."""
    links: dict[str, list[str]] = {}
    for link in sorted(glob.glob("/dev/v4l/by-id/*")):
        links.setdefault(os.path.realpath(link), []).append(link)
    cameras = []
    for device in sorted(glob.glob("/dev/video*")):
        name_file = Path("/sys/class/video4linux") / Path(device).name / "name"
        try:
            name = name_file.read_text(encoding="utf-8").strip()
        except OSError:
            name = ""
        cameras.append((device, name, links.get(os.path.realpath(device), [])))
    return cameras


# -- drivers test / monitor -------------------------------------------------------


class _Printer:
    """Prints raw traffic, events and frame checks from several threads."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._lock = threading.Lock()
        self._last_decision = ""
        self._last_check_at = 0.0

    def line(self, text: str) -> None:
        with self._lock:
            print(text, file=self.out, flush=True)

    def raw(self, direction: Literal["rx", "tx"], data: bytes) -> None:
        lines = [f"{direction} {len(data)} bytes: {readable(data)}"]
        for offset in range(0, len(data), 16):
            chunk = data[offset : offset + 16]
            lines.append(f"   {offset:04x}  {chunk.hex(' ')}")
        self.line("\n".join(lines))

    def event(self, event: DriverEvent) -> None:
        if isinstance(event, MrzLinesRead):
            lengths = "/".join(str(len(line)) for line in event.lines)
            text = "\n".join(f"    {line}" for line in event.lines)
            self.line(f"MRZ from {event.source} ({lengths} characters):\n{text}")
        elif isinstance(event, ImageCaptured):
            height, width = event.image.shape[:2]
            self.line(f"image from {event.source}: {width}x{height}")
        elif isinstance(event, StatusChanged):
            self.line(f"status {event.state.value}: {event.reason}")

    def check(self, check: FrameCheck) -> None:
        # A camera delivers tens of frames a second: print changes, and the
        # measures once a second.
        now = time.monotonic()
        if check.decision == self._last_decision and now - self._last_check_at < 1.0:
            return
        self._last_decision, self._last_check_at = check.decision, now
        if check.band is None:
            self.line(f"frame: {check.decision} (no MRZ band)")
            return
        band = check.band
        self.line(
            f"frame: {check.decision}; band {band.width}x{band.height} at "
            f"({band.x},{band.y}), sharpness {check.sharpness:.0f}, "
            f"glare {check.glare:.2f}, steady {check.steady}"
        )


def readable(data: bytes) -> str:
    """Show bytes as text, with control characters named and others in hex."""
    parts = []
    for byte in data:
        if byte in _CONTROL_NAMES:
            parts.append(_CONTROL_NAMES[byte])
        elif 0x20 <= byte < 0x7F:
            parts.append(chr(byte))
        else:
            parts.append(f"\\x{byte:02x}")
    return "".join(parts)


def _open_driver(args: argparse.Namespace, printer: _Printer) -> Driver | None:
    try:
        config = load_config(getattr(args, "config", None))
        section = config.driver(args.name)
        driver = create_driver(section)
    except (ConfigError, DriverError) as exc:
        print(f"drivers: {exc}", file=sys.stderr)
        return None
    printer.line(f"driver {section.name} ({section.type})")
    driver.raw_listener = printer.raw
    if isinstance(driver, CameraDriver):
        driver.check_listener = printer.check
    return driver


def _new_drops(driver: Driver, already_shown: int) -> tuple[int, list[str]]:
    """Return the serial decoder's drop count and the reasons not yet shown."""
    scanner = getattr(driver, "scanner", driver)
    if not isinstance(scanner, SerialScanner):
        return already_shown, []
    total = scanner.drops
    recent = list(scanner.decoder.dropped)
    fresh = min(total - already_shown, len(recent))
    return total, recent[len(recent) - fresh :] if fresh > 0 else []


def _watch(
    driver: Driver,
    printer: _Printer,
    max_documents: int,
    timeout_s: float | None,
    save: Path | None = None,
) -> int:
    """Print events until `max_documents` documents (0 = forever) or timeout."""
    shown_drops = 0
    documents = 0
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    driver.start()
    try:
        while deadline is None or time.monotonic() < deadline:
            event = driver.get_event(0.1)
            shown_drops, reasons = _new_drops(driver, shown_drops)
            for reason in reasons:
                printer.line(f"dropped: {reason}")
            if event is None:
                continue
            printer.event(event)
            if isinstance(event, ImageCaptured | MrzLinesRead):
                documents += 1
                if save is not None and isinstance(event, ImageCaptured):
                    if not cv2.imwrite(str(save), event.image):
                        printer.line(f"cannot write {save}")
                        return 1
                    printer.line(f"saved {save}")
                if max_documents and documents >= max_documents:
                    return 0
    except KeyboardInterrupt:
        return 0
    finally:
        driver.stop()
    if max_documents:
        printer.line(f"no document within {timeout_s:.0f} s")
        return 1
    return 0


def run_test(args: argparse.Namespace) -> int:
    printer = _Printer(sys.stdout)
    driver = _open_driver(args, printer)
    if driver is None:
        return 2
    printer.line(f"waiting up to {args.timeout:.0f} s for a document")
    return _watch(driver, printer, 1, args.timeout, args.save)


def run_monitor(args: argparse.Namespace) -> int:
    printer = _Printer(sys.stdout)
    driver = _open_driver(args, printer)
    if driver is None:
        return 2
    printer.line("monitoring; stop with Ctrl-C")
    return _watch(driver, printer, args.count, None)
