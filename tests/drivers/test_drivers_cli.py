"""The technician commands, through an argparse parser like the kiosk's."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

import cv2
import pytest

from drivers import DeviceState, MrzLinesRead
from drivers.cli import readable, register, simulate_scanner
from drivers.serial_scanner import SerialScanner
from drivers.simulator import ScannerSimulator
from drivers.specimens import SPECIMENS
from kiosk.config import SerialConfig
from tests.drivers.driver_helpers import EventLog, card_frame, wait_until

TD3 = SPECIMENS["td3"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kiosk")
    parser.add_argument("--config", type=Path, default=None)
    sub = parser.add_subparsers(dest="command")
    register(sub)
    return parser


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.handler(args)
    return result


def test_cli_top_level_config_survives_subparser(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["--config", str(tmp_path / "k.toml"), "drivers", "test"]
    )
    assert args.config == tmp_path / "k.toml"
    args = build_parser().parse_args(
        ["drivers", "monitor", "--config", "x.toml", "cam"]
    )
    assert args.config == Path("x.toml")
    assert args.name == "cam"


def test_cli_drivers_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["drivers", "list"]) == 0
    out = capsys.readouterr().out
    assert "Serial ports:" in out
    assert "Cameras:" in out


def test_cli_drivers_without_action(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["drivers"]) == 2
    assert "list" in capsys.readouterr().err


def test_cli_drivers_test_simulator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text(
        "[drivers.sim]\ntype = 'simulator'\nprotocol = 'stx-etx'\nbcc = 'on'\n"
        "interval_s = 0.1\nfaults = ['bad-bcc']\n"
    )
    assert run(["--config", str(config), "drivers", "test", "--timeout", "30"]) == 0
    out = capsys.readouterr().out
    assert "status connected" in out
    assert "<STX>" in out
    assert "<ETX>" in out
    assert "0000  02" in out
    assert TD3[0] in out
    assert TD3[1] in out


def test_cli_drivers_monitor_shows_drops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text(
        "[drivers.sim]\ntype = 'simulator'\nprotocol = 'cute'\n"
        "interval_s = 0.1\nfaults = ['bad-bcc']\n"
    )
    assert (
        run(["--config", str(config), "drivers", "monitor", "sim", "--count", "2"]) == 0
    )
    out = capsys.readouterr().out
    assert "dropped: " in out
    assert "block check mismatch" in out
    assert out.count("MRZ from sim") == 2


def test_cli_drivers_test_camera_saves_capture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    frames = [card_frame(TD3, present=False)] * 3 + [card_frame(TD3)] * 8
    for index, frame in enumerate(frames):
        cv2.imwrite(str(frames_dir / f"{index:02d}.png"), frame)
    config = tmp_path / "kiosk.toml"
    config.write_text(f"[drivers.cam]\ntype = 'camera'\ndevice = '{frames_dir}'\n")
    saved = tmp_path / "capture.png"
    argv = ["--config", str(config), "drivers", "test", "cam", "--save", str(saved)]
    assert run(argv) == 0
    out = capsys.readouterr().out
    assert "frame: present" in out
    assert "sharpness" in out
    assert "image from cam: 640x480" in out
    image = cv2.imread(str(saved))
    assert image is not None
    assert image.shape == (480, 640, 3)


def test_cli_drivers_test_unknown_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text("[drivers.desk]\ntype = 'camera'\n")
    assert run(["--config", str(config), "drivers", "test", "dsk"]) == 2
    assert "did you mean 'desk'" in capsys.readouterr().err


def test_cli_drivers_test_times_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = ScannerSimulator("plain")
    path = sim.open()
    config = tmp_path / "kiosk.toml"
    config.write_text(f"[drivers.r]\ntype = 'serial'\nport = '{path}'\n")
    try:
        assert (
            run(["--config", str(config), "drivers", "test", "--timeout", "0.3"]) == 1
        )
    finally:
        sim.stop()
    assert "no document within" in capsys.readouterr().out


def test_cli_simulate_scanner_feeds_serial_driver(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    link = tmp_path / "ttySIM"
    mrz_file = tmp_path / "docs.mrz"
    mrz_file.write_text("\n".join(TD3) + "\n")
    argv = [
        "simulate-scanner",
        "--protocol",
        "stx-etx",
        "--header",
        "--mrz-file",
        str(mrz_file),
        "--fault",
        "garbage",
        "--fault",
        "cut-line",
        "--interval",
        "0.1",
        "--link",
        str(link),
        "--seed",
        "4",
    ]
    args = build_parser().parse_args(argv)
    stop = threading.Event()
    results: list[int] = []
    thread = threading.Thread(
        target=lambda: results.append(simulate_scanner(args, stop))
    )
    thread.start()
    driver = None
    try:
        wait_until(link.exists, "simulator link")
        config = SerialConfig(name="r", port=str(link), protocol="stx-etx", header=True)
        driver = SerialScanner(config)
        log = EventLog(driver)
        driver.start()
        log.wait_status(DeviceState.CONNECTED)
        log.wait_for(lambda: len(log.mrz()) >= 3, what="three documents")
    finally:
        stop.set()
        thread.join(10)
        if driver is not None:
            driver.stop()
    assert results == [0]
    assert all(lines == TD3 for lines in log.mrz())
    assert all(isinstance(e, MrzLinesRead) for e in log.events if hasattr(e, "lines"))
    out = capsys.readouterr().out
    assert out.startswith("/dev/pts/")
    assert f"link: {link}" in out
    assert not link.exists()


def test_cli_simulate_scanner_rejects_bad_fault(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["simulate-scanner", "--protocol", "plain", "--fault", "bad-bcc"]) == 2
    assert "cannot inject fault 'bad-bcc'" in capsys.readouterr().err


def test_cli_simulate_scanner_image_needs_files(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["simulate-scanner", "--protocol", "image"]) == 2
    assert "--image" in capsys.readouterr().err


def test_readable_names_controls() -> None:
    assert readable(b"\x02AB\r\x03\xff") == "<STX>AB<CR><ETX>\\xff"


def test_cli_simulate_scanner_bad_bcc_needs_bcc(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["simulate-scanner", "--protocol", "stx-etx", "--fault", "bad-bcc"]) == 2
    err = capsys.readouterr().err
    assert "cannot inject fault 'bad-bcc'" in err
    assert "add --bcc on" in err


def test_cli_simulate_scanner_plain_bad_bcc_no_hint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["simulate-scanner", "--protocol", "plain", "--fault", "bad-bcc"]) == 2
    assert "--bcc on" not in capsys.readouterr().err
