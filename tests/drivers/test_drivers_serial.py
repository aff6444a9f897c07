"""The serial driver against the simulator over real pseudo-terminals."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivers import DeviceState, ImageCaptured, MrzLinesRead, create_driver
from drivers.errors import DeviceNotFoundError, DeviceOpenError
from drivers.protocols import FAULTS, make_encoder
from drivers.protocols.command import CONTINUOUS_ON, READ_COMMAND
from drivers.serial_scanner import SerialScanner, open_port, resolve_port
from drivers.simulator import ScannerSimulator, fault_plan, load_documents
from drivers.specimens import SPECIMENS
from kiosk.config import SerialConfig, SimulatorConfig
from tests.drivers.driver_helpers import EventLog, jpeg_bytes, png_bytes

TD1, TD2, TD3 = SPECIMENS["td1"], SPECIMENS["td2"], SPECIMENS["td3"]
# (protocol, header, bcc) for every framing variant the driver can read.
VARIANTS = [
    ("plain", False, "auto"),
    ("stx-etx", False, "off"),
    ("stx-etx", True, "on"),
    ("cute", False, "on"),
    ("command", False, "auto"),
    ("json", False, "on"),
]


def serial_config(path: str, protocol: str, **options: object) -> SerialConfig:
    values: dict[str, object] = {
        "name": "reader",
        "port": path,
        "protocol": protocol,
        "frame_timeout_s": 0.1,
        "reconnect_max_s": 0.2,
    }
    values.update(options)
    return SerialConfig(**values)  # type: ignore[arg-type]


class Rig:
    """A simulator and a started serial driver on its pty."""

    def __init__(self, sim: ScannerSimulator, driver: SerialScanner) -> None:
        self.sim = sim
        self.driver = driver
        self.log = EventLog(driver)

    def settle(self) -> None:
        """Wait until the driver has no partial frame buffered."""
        self.log.wait_for(lambda: not self.driver.decoder.needs_flush, what="idle")


RigFactory = Callable[..., Rig]


@pytest.fixture
def make_rig() -> Iterator[RigFactory]:
    rigs: list[Rig] = []

    def build(
        protocol: str, header: bool = False, bcc: str = "auto", **options: object
    ) -> Rig:
        bcc_flag = {"auto": None, "on": True, "off": False}[bcc]
        documents = [jpeg_bytes(), png_bytes()] if protocol == "image" else None
        sim = ScannerSimulator(
            protocol, documents, header=header, bcc=bcc_flag, seed=11, interval_s=0.1
        )
        path = sim.open()
        config = serial_config(path, protocol, header=header, bcc=bcc, **options)
        rig = Rig(sim, SerialScanner(config))
        rigs.append(rig)
        rig.driver.start()
        rig.log.wait_status(DeviceState.CONNECTED)
        return rig

    yield build
    for rig in rigs:
        rig.driver.stop()
        rig.sim.stop()
        assert not rig.driver.running


@pytest.mark.parametrize(("protocol", "header", "bcc"), VARIANTS)
def test_serial_reads_documents_with_faults(
    make_rig: RigFactory, protocol: str, header: bool, bcc: str
) -> None:
    rig = make_rig(protocol, header, bcc)
    expected: list[list[str]] = []
    for fault in FAULTS:
        if fault not in rig.sim.encoder.supported_faults:
            continue
        drops = rig.driver.drops
        mrz_count = len(rig.log.mrz())
        rig.sim.send(TD1, fault)
        rig.log.wait_for(
            lambda: rig.driver.drops > drops or len(rig.log.mrz()) > mrz_count,  # noqa: B023
            what=f"fault {fault} to be dropped or read",
        )
        rig.settle()
        rig.log.drain()
        if len(rig.log.mrz()) > mrz_count:
            # Only garbage before an intact frame may still deliver it.
            assert fault == "garbage"
            expected.append(TD1)
        rig.sim.send(TD3)
        expected.append(TD3)
        rig.log.wait_for(lambda: len(rig.log.mrz()) == len(expected), what="clean MRZ")
    assert rig.log.mrz() == expected
    assert rig.driver.drops >= 3


def test_serial_unreadable_marker_and_raw(make_rig: RigFactory) -> None:
    rig = make_rig("stx-etx", False, "on")
    doc = [TD2[0], "D23145890_" + TD2[1][10:]]
    sent = rig.sim.send(doc)
    event = rig.log.wait_event(lambda e: isinstance(e, MrzLinesRead), "MRZ")
    assert isinstance(event, MrzLinesRead)
    assert event.lines == doc
    assert event.raw == sent
    assert event.source == "reader"


def test_serial_image_protocol(make_rig: RigFactory) -> None:
    rig = make_rig("image")
    rig.sim.send(jpeg_bytes(), "bad-bcc")
    rig.sim.send(png_bytes(32, 24))
    event = rig.log.wait_event(lambda e: isinstance(e, ImageCaptured), "image")
    assert isinstance(event, ImageCaptured)
    assert event.image.shape == (24, 32, 3)
    assert rig.driver.drops >= 1
    assert rig.driver.delivers_images


def test_serial_command_polling(make_rig: RigFactory) -> None:
    rig = make_rig("command", continuous=False, poll_interval_s=0.05)
    rig.sim.count = 2
    rig.sim.start()
    rig.log.wait_for(lambda: len(rig.log.mrz()) == 2, what="two polled documents")
    assert READ_COMMAND in rig.sim.commands
    assert CONTINUOUS_ON not in rig.sim.commands


def test_serial_command_continuous(make_rig: RigFactory) -> None:
    rig = make_rig("command")
    rig.sim.count = 2
    rig.sim.start()
    rig.log.wait_for(lambda: len(rig.log.mrz()) == 2, what="two pushed documents")
    assert rig.sim.commands[0] == CONTINUOUS_ON
    assert READ_COMMAND not in rig.sim.commands


def test_serial_json_status_events(make_rig: RigFactory) -> None:
    rig = make_rig("json")
    rig.sim.send(TD3)
    rig.log.wait_for(lambda: len(rig.log.mrz()) == 1, what="MRZ")
    assert DeviceState.DOCUMENT_PRESENT in rig.log.states()


def test_serial_reconnects_after_unplug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drivers")
    link = tmp_path / "usb-Test_Reader-if00"
    sim = ScannerSimulator("stx-etx", link_path=link, seed=1)
    sim.open()
    driver = SerialScanner(serial_config(str(link), "stx-etx"))
    log = EventLog(driver)
    driver.start()
    try:
        log.wait_status(DeviceState.CONNECTED)
        sim.send(TD1)
        log.wait_for(lambda: len(log.mrz()) == 1, what="first MRZ")
        sim.unplug()
        log.wait_status(DeviceState.DISCONNECTED)
        # Replug on a new pty behind the same link, as udev does for by-id.
        sim.open()
        log.wait_status(DeviceState.CONNECTED)
        sim.send(TD2)
        log.wait_for(lambda: len(log.mrz()) == 2, what="MRZ after replug")
    finally:
        driver.stop()
        sim.stop()
    assert log.mrz() == [TD1, TD2]
    assert log.states().count(DeviceState.CONNECTED) == 2
    assert "disconnected" in caplog.text
    for line in TD1 + TD2:
        assert line not in caplog.text


def test_serial_missing_port_reports_and_retries(tmp_path: Path) -> None:
    driver = SerialScanner(serial_config(str(tmp_path / "nothing"), "plain"))
    log = EventLog(driver)
    driver.start()
    try:
        event = log.wait_status(DeviceState.DISCONNECTED)
        assert "not found" in event.reason
        assert driver.running
    finally:
        driver.stop()
    assert not driver.running
    assert log.states() == [DeviceState.DISCONNECTED]


def test_resolve_port_errors(tmp_path: Path) -> None:
    with pytest.raises(DeviceNotFoundError, match="nothing"):
        resolve_port(serial_config(str(tmp_path / "nothing"), "plain"))
    usb = SerialConfig(name="u", usb="dead:beef:XYZ")
    with pytest.raises(DeviceNotFoundError, match="dead:beef"):
        resolve_port(usb)


def test_exclusive_port_rejects_second_open() -> None:
    sim = ScannerSimulator("plain")
    path = sim.open()
    config = serial_config(path, "plain", exclusive=True)
    first = open_port(config, path)
    try:
        with pytest.raises(DeviceOpenError, match=path):
            open_port(config, path)
    finally:
        first.close()
        sim.stop()


def test_fault_plan_alternates_clean() -> None:
    plan = fault_plan(["garbage", "partial"])
    assert [next(plan) for _ in range(6)] == [
        None,
        "garbage",
        None,
        "partial",
        None,
        "garbage",
    ]


def test_fault_plan_without_faults_is_clean() -> None:
    plan = fault_plan([])
    assert [next(plan) for _ in range(3)] == [None, None, None]


def test_simulator_rejects_unsupported_fault() -> None:
    with pytest.raises(ValueError, match="bad-bcc"):
        ScannerSimulator("plain", faults=["bad-bcc"])


def test_load_documents(tmp_path: Path) -> None:
    mrz_file = tmp_path / "docs.txt"
    mrz_file.write_text("# two documents\n" + "\n".join(TD1) + "\n\n" + "\n".join(TD3))
    assert load_documents(mrz_file, []) == [TD1, TD3]
    assert len(load_documents(None, [])) == 3
    with pytest.raises(ValueError, match="no documents"):
        empty = tmp_path / "empty.txt"
        empty.write_text("# nothing\n")
        load_documents(empty, [])


def test_simulator_driver_type_plays_specimens() -> None:
    config = SimulatorConfig(
        name="sim", protocol="cute", faults=["bad-bcc"], interval_s=0.05, count=5
    )
    driver = create_driver(config)
    log = EventLog(driver)
    driver.start()
    try:
        log.wait_for(lambda: len(log.mrz()) == 3, what="three clean specimens")
    finally:
        driver.stop()
    # Clean and faulty documents alternate: the second and fourth are dropped.
    assert log.mrz() == [TD3, TD2, TD1]
    assert log.states()[0] is DeviceState.CONNECTED


def test_encoders_cover_every_fault_somewhere() -> None:
    covered: set[str] = set()
    for protocol in ("plain", "stx-etx", "image"):
        covered |= make_encoder(protocol, bcc=True).supported_faults
    assert covered == set(FAULTS)


def test_simulator_rejects_wrong_document_kind() -> None:
    with pytest.raises(ValueError, match="MRZ lines only"):
        ScannerSimulator("plain", [jpeg_bytes()])
    with pytest.raises(ValueError, match="image files only"):
        ScannerSimulator("image", [TD3])
