"""Tester screen: a folder of real sample images against its ground truth."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from textual import events
from textual.widgets import DataTable

from kiosk.cli import SAMPLE_IMAGES, SAMPLE_RECORDS
from kiosk.lookup.embedded import EmbeddedLookup
from kiosk.tui import tester
from kiosk.tui.app import KioskApp
from tests.tui.conftest import frozen_clock

HIT_IMAGE = "td3-passport-light.jpg"
NO_MRZ_IMAGE = "no-mrz.jpg"


@pytest.fixture
def embedded(tmp_path: Path) -> EmbeddedLookup:
    return EmbeddedLookup(tmp_path / "store.sqlite3", seed_csv=SAMPLE_RECORDS)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Two sample images; the truth of the first is altered so it must be
    judged wrong."""
    folder = tmp_path / "images"
    folder.mkdir()
    truth = json.loads((SAMPLE_IMAGES / "truth.json").read_text(encoding="utf-8"))
    for name in (HIT_IMAGE, NO_MRZ_IMAGE):
        shutil.copy(SAMPLE_IMAGES / name, folder / name)
    altered = dict(truth[HIT_IMAGE], lookup={"result": "NO_HIT", "status": None})
    subset = {HIT_IMAGE: altered, NO_MRZ_IMAGE: truth[NO_MRZ_IMAGE]}
    (folder / "truth.json").write_text(json.dumps(subset), encoding="utf-8")
    return folder


async def wait_until_idle(screen: tester.TesterScreen, timeout_s: float = 30.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        await asyncio.sleep(0.05)
        if not screen.reading:
            return
    raise AssertionError(f"tester still reading after {timeout_s} s")


def table_rows(screen: tester.TesterScreen) -> dict[str, list[str]]:
    table = screen.query_one("#tester-table", DataTable)
    rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
    return {row[0]: row for row in rows}


async def test_folder_judged_against_truth(
    embedded: EmbeddedLookup, image_folder: Path
) -> None:
    app = KioskApp(embedded, clock=frozen_clock, status_interval_s=0)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f3")
        screen = app.screen
        assert isinstance(screen, tester.TesterScreen)
        await pilot.press("f5")
        app.post_message(events.Paste(str(image_folder)))
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        await wait_until_idle(screen)
        await pilot.pause()

        rows = table_rows(screen)
        assert rows[HIT_IMAGE][4] == "✖ HIT"
        assert rows[HIT_IMAGE][5] == "○ NO RECORD"
        assert rows[HIT_IMAGE][6] == "✗ WRONG"
        assert rows[NO_MRZ_IMAGE][4] == "? NOT CHECKED"
        assert rows[NO_MRZ_IMAGE][6] == "✓ right"
        totals = str(screen.query_one("#tester-totals").render())
        assert "1 of 2 right" in totals
        # Tester results never raise the officer's HIT modal.
        assert app.screen is screen


async def test_watched_folder_reads_new_files(
    embedded: EmbeddedLookup, image_folder: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    app = KioskApp(embedded, clock=frozen_clock, status_interval_s=0)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f3")
        screen = app.screen
        assert isinstance(screen, tester.TesterScreen)
        screen.open_path(inbox, watch=True)
        await pilot.pause()
        shutil.copy(image_folder / NO_MRZ_IMAGE, inbox / NO_MRZ_IMAGE)
        for _ in range(200):
            await asyncio.sleep(0.05)
            if table_rows(screen):
                break
        assert list(table_rows(screen)) == [NO_MRZ_IMAGE]
        assert screen.reading
        await pilot.press("f7")
        await wait_until_idle(screen)
        assert "stopped" in str(screen.query_one("#tester-status").render())


async def test_missing_path_is_reported(
    embedded: EmbeddedLookup, tmp_path: Path
) -> None:
    app = KioskApp(embedded, clock=frozen_clock, status_interval_s=0)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f3")
        screen = app.screen
        assert isinstance(screen, tester.TesterScreen)
        screen.open_path(tmp_path / "absent")
        await pilot.pause()
        assert not screen.reading
        assert table_rows(screen) == {}
