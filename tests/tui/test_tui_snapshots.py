"""Snapshots of every state of every screen, with a frozen clock.

Refresh after an intended change with
`pytest tests/tui/test_tui_snapshots.py --snapshot-update` and review the
SVG files under tests/tui/__snapshots__/ before committing them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import TabbedContent, TextArea

from drivers.events import DeviceState, MrzLinesRead, StatusChanged
from kiosk.pipeline import ScanOutcome, check_text
from kiosk.tui import technician, tester
from kiosk.tui.app import KioskApp
from tests.tui.conftest import (
    FROZEN_NOW,
    SIMILAR_NUMBER,
    STOLEN_NUMBER,
    MemoryLookup,
    frozen_clock,
    passport,
)

SMALL = (80, 24)
LARGE = (120, 40)
CLEAN_NUMBER = "C01X00T47"

SnapCompare = Callable[..., bool]
Step = Callable[[Pilot[int]], Awaitable[None]]


def fixed_outcome(client: MemoryLookup, lines: list[str]) -> ScanOutcome:
    outcome = check_text(lines, client, source="desk reader", today=FROZEN_NOW.date())
    return dataclasses.replace(outcome, elapsed_ms=42.0)


def make_app(client: MemoryLookup, **kwargs: object) -> KioskApp:
    return KioskApp(
        client,
        clock=frozen_clock,
        status_interval_s=0,
        device_lister=lambda: [
            ("serial", "/dev/ttyUSB0", "USB 067b:2303 serial A1 MRZ reader", ""),
            ("camera", "/dev/video0", "Document camera", "/dev/v4l/by-id/cam"),
        ],
        **kwargs,  # type: ignore[arg-type]
    )


def show(app: KioskApp, *outcomes: ScanOutcome, queued: bool = False) -> Step:
    async def step(pilot: Pilot[int]) -> None:
        app.officer.set_device("desk reader: connected (/dev/ttyUSB0)")
        for outcome in outcomes:
            app.show_outcome(outcome, queued=queued)
        await pilot.pause()

    return step


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x40"])
def test_officer_waiting(
    snap_compare: SnapCompare, client: MemoryLookup, size: tuple[int, int]
) -> None:
    app = make_app(client)

    async def step(pilot: Pilot[int]) -> None:
        app.officer.set_device("desk reader: connected (/dev/ttyUSB0)")
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=step)


def test_officer_no_record(snap_compare: SnapCompare, client: MemoryLookup) -> None:
    app = make_app(client)
    outcome = fixed_outcome(client, passport(CLEAN_NUMBER))
    assert snap_compare(app, terminal_size=SMALL, run_before=show(app, outcome))


def test_officer_possible(snap_compare: SnapCompare, client: MemoryLookup) -> None:
    app = make_app(client)
    outcome = fixed_outcome(client, passport(SIMILAR_NUMBER))
    assert snap_compare(app, terminal_size=SMALL, run_before=show(app, outcome))


def test_officer_not_checked(snap_compare: SnapCompare, client: MemoryLookup) -> None:
    app = make_app(client)
    client.online = False
    outcome = fixed_outcome(client, passport(STOLEN_NUMBER))
    step = show(app, outcome, queued=True)
    assert snap_compare(app, terminal_size=SMALL, run_before=step)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x40"])
def test_officer_hit_modal(
    snap_compare: SnapCompare, client: MemoryLookup, size: tuple[int, int]
) -> None:
    app = make_app(client)
    outcome = fixed_outcome(client, passport(STOLEN_NUMBER))
    assert snap_compare(app, terminal_size=size, run_before=show(app, outcome))


def test_officer_hit_acknowledged(
    snap_compare: SnapCompare, client: MemoryLookup
) -> None:
    app = make_app(client)
    outcome = fixed_outcome(client, passport(STOLEN_NUMBER))
    step = show(app, outcome)

    async def acknowledge(pilot: Pilot[int]) -> None:
        await step(pilot)
        await pilot.press("enter")

    assert snap_compare(app, terminal_size=SMALL, run_before=acknowledge)


def test_officer_late_hit(snap_compare: SnapCompare, client: MemoryLookup) -> None:
    app = make_app(client)
    client.online = False
    first = fixed_outcome(client, passport(STOLEN_NUMBER))
    client.online = True
    second = fixed_outcome(client, passport(CLEAN_NUMBER))
    step = show(app, first, second)

    async def late(pilot: Pilot[int]) -> None:
        await step(pilot)
        key, answer = client.recheck()[0]
        app.notify_late_hit(key, answer)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SMALL, run_before=late)


def test_officer_history(snap_compare: SnapCompare, client: MemoryLookup) -> None:
    app = make_app(client)
    outcomes = [
        fixed_outcome(client, passport(CLEAN_NUMBER)),
        fixed_outcome(client, passport(SIMILAR_NUMBER)),
        fixed_outcome(client, passport("D12345678", state="D")),
    ]
    step = show(app, *outcomes)

    async def focus(pilot: Pilot[int]) -> None:
        await step(pilot)
        await pilot.press("h")

    assert snap_compare(app, terminal_size=LARGE, run_before=focus)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x40"])
def test_manual_entry_live_validation(
    snap_compare: SnapCompare, client: MemoryLookup, size: tuple[int, int]
) -> None:
    app = make_app(client)
    lines = passport(CLEAN_NUMBER)

    async def typing(pilot: Pilot[int]) -> None:
        await pilot.press("m")
        area = app.screen.query_one("#entry-text", TextArea)
        area.insert(lines[0] + "\n" + lines[1][:20])
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=typing)


def test_tester_empty(snap_compare: SnapCompare, client: MemoryLookup) -> None:
    app = make_app(client)
    assert snap_compare(app, terminal_size=SMALL, press=["f3"])


def test_tester_results(snap_compare: SnapCompare, client: MemoryLookup) -> None:
    app = make_app(client)
    truth = {
        "a.jpg": tester.TruthEntry(tuple(passport(CLEAN_NUMBER)), "NO_HIT"),
        "b.jpg": tester.TruthEntry(tuple(passport(STOLEN_NUMBER)), "HIT"),
        "c.jpg": tester.TruthEntry(tuple(passport(SIMILAR_NUMBER)), "NO_HIT"),
    }

    async def results(pilot: Pilot[int]) -> None:
        await pilot.press("f3")
        screen = app.screen
        assert isinstance(screen, tester.TesterScreen)
        screen.truth = truth
        for name, entry in truth.items():
            assert entry.lines is not None
            outcome = fixed_outcome(client, list(entry.lines))
            screen.post_message(tester.TesterRow(name, outcome))
        await pilot.pause()

    assert snap_compare(app, terminal_size=SMALL, run_before=results)


def technician_app(client: MemoryLookup, config: str | None) -> KioskApp:
    # A relative path keeps the machine's temporary folder out of the image.
    if config is not None:
        Path("kiosk.toml").write_text(config, encoding="utf-8")
    return make_app(client, config_path=Path("kiosk.toml"))


SIMULATOR_CONFIG = """\
[drivers.simulated]
type = "simulator"
protocol = "stx-etx"
interval_s = 0.2
"""


def test_technician_driver(snap_compare: SnapCompare, client: MemoryLookup) -> None:
    app = technician_app(client, SIMULATOR_CONFIG)
    assert snap_compare(app, terminal_size=SMALL, press=["f4"])


def test_technician_devices(snap_compare: SnapCompare, client: MemoryLookup) -> None:
    app = technician_app(client, SIMULATOR_CONFIG)

    async def devices(pilot: Pilot[int]) -> None:
        await pilot.press("f4")
        await pilot.pause()
        app.screen.query_one(TabbedContent).active = "tab-devices"
        await pilot.pause()

    assert snap_compare(app, terminal_size=SMALL, run_before=devices)


def test_technician_monitor(snap_compare: SnapCompare, client: MemoryLookup) -> None:
    app = technician_app(client, SIMULATOR_CONFIG)
    lines = passport(CLEAN_NUMBER)
    raw = b"\x02\r" + "\r".join(lines).encode("ascii") + b"\x03"

    async def monitor(pilot: Pilot[int]) -> None:
        await pilot.press("f4")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, technician.TechnicianScreen)
        screen.query_one(TabbedContent).active = "tab-monitor"
        for message in (
            technician.DeviceEventSeen(
                StatusChanged(DeviceState.CONNECTED, "/dev/ttyUSB0 at 9600 baud")
            ),
            technician.RawTraffic("rx", raw),
            technician.DeviceEventSeen(MrzLinesRead(lines, raw, "simulated")),
        ):
            screen.post_message(message)
        await pilot.pause()

    assert snap_compare(app, terminal_size=LARGE, run_before=monitor)


def test_technician_config_invalid(
    snap_compare: SnapCompare, client: MemoryLookup
) -> None:
    app = technician_app(client, SIMULATOR_CONFIG)

    async def invalid(pilot: Pilot[int]) -> None:
        await pilot.press("f4")
        await pilot.pause()
        area = app.screen.query_one("#config-text", TextArea)
        area.load_text(SIMULATOR_CONFIG.replace("stx-etx", "stx-etz"))
        await pilot.press("f8")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SMALL, run_before=invalid)


def test_technician_without_config(
    snap_compare: SnapCompare, client: MemoryLookup
) -> None:
    app = technician_app(client, None)
    assert snap_compare(app, terminal_size=SMALL, press=["f4"])
