"""Technician screen against the scanner simulator on a real pty."""

from __future__ import annotations

import asyncio
import shutil
import stat
from pathlib import Path

import pytest
from textual.widgets import DataTable, TextArea

from drivers import Driver, EventCallback, create_driver
from kiosk.cli import SAMPLE_IMAGES
from kiosk.config import load_config
from kiosk.tui import technician
from kiosk.tui.app import KioskApp
from tests.tui.conftest import MemoryLookup, frozen_clock

SIMULATOR_CONFIG = """\
[drivers.simulated]
type = "simulator"
protocol = "stx-etx"
interval_s = 0.2
"""


def log_text(screen: technician.TechnicianScreen) -> str:
    log = screen.query_one("#monitor-log")
    return "\n".join(line.text for line in log.lines)  # type: ignore[attr-defined]


async def wait_idle(screen: technician.TechnicianScreen, timeout_s: float = 15) -> None:
    for _ in range(int(timeout_s / 0.05)):
        await asyncio.sleep(0.05)
        if screen.session == "idle":
            return
    raise AssertionError(f"device session still running after {timeout_s} s")


async def open_technician(app: KioskApp, pilot: object) -> technician.TechnicianScreen:
    await pilot.press("f4")  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]
    screen = app.screen
    assert isinstance(screen, technician.TechnicianScreen)
    return screen


async def test_test_read_from_simulator(tmp_path: Path) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text(SIMULATOR_CONFIG, encoding="utf-8")
    app = KioskApp(
        MemoryLookup(), clock=frozen_clock, config_path=config, status_interval_s=0
    )
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_technician(app, pilot)
        settings = screen.query_one("#driver-settings", DataTable)
        values = {
            str(settings.get_row_at(i)[0]): str(settings.get_row_at(i)[1])
            for i in range(settings.row_count)
        }
        assert values["driver"] == "simulated"
        assert values["type"] == "simulator"
        assert values["protocol"] == "'stx-etx'"

        await pilot.press("f6")
        await wait_idle(screen)
        await pilot.pause()

        text = log_text(screen)
        assert screen.documents_seen == 1
        assert "<STX>" in text
        assert "0000  02" in text
        assert "document number ✓ ok" in text
        assert "test ended: one document read" in text


async def test_monitor_streams_until_stopped(tmp_path: Path) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text(SIMULATOR_CONFIG, encoding="utf-8")
    app = KioskApp(
        MemoryLookup(), clock=frozen_clock, config_path=config, status_interval_s=0
    )
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_technician(app, pilot)
        await pilot.press("f7")
        for _ in range(200):
            await asyncio.sleep(0.05)
            if screen.documents_seen >= 2:
                break
        assert screen.session == "monitor"
        await pilot.press("f7")
        await wait_idle(screen)
        assert screen.documents_seen >= 2
        assert "monitor ended: stopped" in log_text(screen)


async def test_test_read_without_config_explains(tmp_path: Path) -> None:
    app = KioskApp(
        MemoryLookup(),
        clock=frozen_clock,
        config_path=tmp_path / "absent.toml",
        status_interval_s=0,
    )
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_technician(app, pilot)
        await pilot.press("f6")
        await pilot.pause()
        assert screen.session == "idle"
        assert "no configuration file" in log_text(screen)


async def test_invalid_config_is_not_saved(tmp_path: Path) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text(SIMULATOR_CONFIG, encoding="utf-8")
    app = KioskApp(
        MemoryLookup(), clock=frozen_clock, config_path=config, status_interval_s=0
    )
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_technician(app, pilot)
        area = screen.query_one("#config-text", TextArea)
        area.load_text(SIMULATOR_CONFIG.replace("stx-etx", "stx-etz"))
        await pilot.press("ctrl+s")
        await pilot.pause()
        state = str(screen.query_one("#config-state").render())
        assert "invalid" in state
        assert "stx-etz" in state
        assert config.read_text(encoding="utf-8") == SIMULATOR_CONFIG


async def test_valid_config_is_saved(tmp_path: Path) -> None:
    config = tmp_path / "kiosk.toml"
    app = KioskApp(
        MemoryLookup(), clock=frozen_clock, config_path=config, status_interval_s=0
    )
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_technician(app, pilot)
        area = screen.query_one("#config-text", TextArea)
        area.load_text(SIMULATOR_CONFIG.replace("0.2", "1.5"))
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "saved" in str(screen.query_one("#config-state").render())
    saved = load_config(config)
    assert saved.driver().name == "simulated"
    assert saved.driver().interval_s == 1.5  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("before", "after"), [(0o600, 0o600), (0o640, 0o640), (None, 0o600)]
)
async def test_saved_config_keeps_private_mode(
    tmp_path: Path, before: int | None, after: int
) -> None:
    # kiosk.toml can hold the API key; saving must not widen its mode.
    config = tmp_path / "kiosk.toml"
    if before is not None:
        config.write_text(SIMULATOR_CONFIG, encoding="utf-8")
        config.chmod(before)
    app = KioskApp(
        MemoryLookup(), clock=frozen_clock, config_path=config, status_interval_s=0
    )
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_technician(app, pilot)
        screen.query_one("#config-text", TextArea).load_text(
            SIMULATOR_CONFIG.replace("0.2", "1.5")
        )
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "saved" in str(screen.query_one("#config-state").render())
    assert stat.S_IMODE(config.stat().st_mode) == after


async def test_test_read_borrows_officer_device(tmp_path: Path) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text(SIMULATOR_CONFIG.replace("0.2", "0.5"), encoding="utf-8")
    section = load_config(config).driver()

    def officer_driver(on_event: EventCallback) -> Driver:
        return create_driver(section, on_event)

    app = KioskApp(
        MemoryLookup(),
        clock=frozen_clock,
        config_path=config,
        drivers=[officer_driver],
        status_interval_s=0,
    )
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(100):
            await asyncio.sleep(0.05)
            if app.drivers and app.drivers[0].running:
                break
        first = app.drivers[0]
        screen = await open_technician(app, pilot)
        await pilot.press("f6")
        await wait_idle(screen, timeout_s=20)
        await pilot.pause()

        assert not first.running
        for _ in range(100):
            await asyncio.sleep(0.05)
            if app.drivers and app.drivers[0].running:
                break
        assert app.drivers[0] is not first
        assert app.drivers[0].running


async def test_test_read_times_out(tmp_path: Path) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text(SIMULATOR_CONFIG.replace("0.2", "600"), encoding="utf-8")
    app = KioskApp(
        MemoryLookup(), clock=frozen_clock, config_path=config, status_interval_s=0
    )
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_technician(app, pilot)
        screen.test_timeout_s = 1.0
        await pilot.press("f6")
        await wait_idle(screen)
        await pilot.pause()
        assert screen.documents_seen == 0
        assert "test ended: no document within 1 s" in log_text(screen)


async def test_f7_stops_waiting_test_read(tmp_path: Path) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text(SIMULATOR_CONFIG.replace("0.2", "600"), encoding="utf-8")
    app = KioskApp(
        MemoryLookup(), clock=frozen_clock, config_path=config, status_interval_s=0
    )
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_technician(app, pilot)
        await pilot.press("f6")
        await pilot.pause()
        assert screen.session == "test"
        await pilot.press("f7")
        await wait_idle(screen)
        await pilot.pause()
        assert "test ended: stopped" in log_text(screen)


async def test_monitor_shows_camera_frame_checks(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(SAMPLE_IMAGES / "td3-passport-light.jpg", frames / "0001.jpg")
    config = tmp_path / "kiosk.toml"
    config.write_text(
        f'[drivers.desk-camera]\ntype = "camera"\ndevice = "{frames}"\n',
        encoding="utf-8",
    )
    app = KioskApp(
        MemoryLookup(), clock=frozen_clock, config_path=config, status_interval_s=0
    )
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_technician(app, pilot)
        await pilot.press("f7")
        for _ in range(200):
            await asyncio.sleep(0.05)
            if "frame: " in log_text(screen):
                break
        await pilot.press("f7")
        await wait_idle(screen)
        text = log_text(screen)
        assert "status connected: image folder" in text
        assert "frame: " in text
