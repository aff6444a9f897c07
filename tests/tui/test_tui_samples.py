"""The bundled samples through the embedded store, as `make run` plays them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from kiosk.cli import SAMPLE_IMAGES, SAMPLE_RECORDS, build_parser
from kiosk.lookup.embedded import EmbeddedLookup
from kiosk.tui import app as app_module
from kiosk.tui.app import KioskApp
from kiosk.tui.feeder import SampleFeeder, demo_order
from kiosk.tui.modals import HitModal
from kiosk.tui.officer import HistoryEntry
from kiosk.tui.present import Verdict
from tests.tui.conftest import frozen_clock

SAMPLES = [SAMPLE_IMAGES / "td3-passport-light.jpg", SAMPLE_IMAGES / "fra-id-light.jpg"]


def verdicts(history: list[HistoryEntry]) -> list[Verdict]:
    return [entry.verdict for entry in reversed(history)]


async def test_samples_show_hit_then_no_record(tmp_path: Path) -> None:
    client = EmbeddedLookup(tmp_path / "store.sqlite3", seed_csv=SAMPLE_RECORDS)
    feeders: list[SampleFeeder] = []
    holder: list[KioskApp] = []

    def feeder(on_event):  # type: ignore[no-untyped-def]
        created = SampleFeeder(
            SAMPLES, interval_s=0.05, ready=holder[0].ready_for_next, on_event=on_event
        )
        feeders.append(created)
        return created

    app = KioskApp(client, clock=frozen_clock, drivers=[feeder], status_interval_s=0)
    holder.append(app)
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(300):
            await asyncio.sleep(0.05)
            if isinstance(app.screen, HitModal):
                break
        assert isinstance(app.screen, HitModal)
        details = str(app.officer.query_one("#details-mrz").render())
        assert "MRZ crop from the image" in details
        # The feeder keeps the next document back until the HIT is acknowledged.
        await asyncio.sleep(0.3)
        assert verdicts(app.officer.history) == [Verdict.HIT]

        await pilot.press("enter")
        for _ in range(300):
            await asyncio.sleep(0.05)
            if len(app.officer.history) == 2:
                break
        assert verdicts(app.officer.history) == [Verdict.HIT, Verdict.NO_RECORD]
        assert "samples" in app.officer.device_text
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert feeders
    assert not feeders[0].running


def test_demo_order_puts_hit_then_no_record_first(tmp_path: Path) -> None:
    names = ["a-hit-heavy.jpg", "b-none.jpg", "c-hit-light.jpg", "d-clear-light.jpg"]
    truth = {
        "a-hit-heavy.jpg": {"level": "heavy", "lookup": {"result": "HIT"}},
        "b-none.jpg": {"lookup": None},
        "c-hit-light.jpg": {"level": "light", "lookup": {"result": "HIT"}},
        "d-clear-light.jpg": {"level": "light", "lookup": {"result": "NO_HIT"}},
    }
    (tmp_path / "truth.json").write_text(json.dumps(truth), encoding="utf-8")
    paths = [tmp_path / name for name in reversed(names)]

    ordered = [p.name for p in demo_order(paths, tmp_path / "truth.json")]

    assert ordered == [
        "c-hit-light.jpg",
        "d-clear-light.jpg",
        "a-hit-heavy.jpg",
        "b-none.jpg",
    ]


def test_demo_order_without_truth_keeps_order(tmp_path: Path) -> None:
    paths = [tmp_path / "b.jpg", tmp_path / "a.jpg"]
    assert demo_order(paths, tmp_path / "truth.json") == paths


def test_run_app_rejects_bad_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The log file handler would replace pytest's own log capture.
    monkeypatch.setattr(app_module, "configure_logging", lambda level: None)
    config = tmp_path / "kiosk.toml"
    config.write_text('[drivers.x]\ntype = "serial"\nbaudrate = "fast"\n')
    args = build_parser().parse_args(
        ["--config", str(config), "--store", str(tmp_path / "store.sqlite3")]
    )

    assert app_module.run_app(args) == 2
    assert "baudrate = 'fast' is invalid" in capsys.readouterr().err
