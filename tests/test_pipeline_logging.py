"""What `check_image` logs when an image cannot be read."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from backend.records import Result
from kiosk.pipeline import check_image
from tests.tui.conftest import MemoryLookup


def test_image_not_read_log_names_scan_and_cause(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image = tmp_path / "empty.jpg"
    image.write_bytes(b"")
    caplog.set_level(logging.WARNING, logger="kiosk.pipeline")

    outcome = check_image(image, MemoryLookup())
    messages = [r.getMessage() for r in caplog.records]

    assert outcome.lookup.result is Result.UNKNOWN
    assert messages == [
        f"scan {outcome.scan_id}: image not read: ImageError: "
        "'image file empty.jpg is empty: scan the document again'"
    ]


def test_image_not_read_log_escapes_file_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image = tmp_path / os.fsdecode(b"a\nb\xff.jpg")
    image.write_bytes(b"not an image")
    caplog.set_level(logging.WARNING, logger="kiosk.pipeline")

    check_image(image, MemoryLookup())
    (message,) = [r.getMessage() for r in caplog.records]

    assert "\n" not in message
    assert "a\\nb\\udcff.jpg is not a readable image" in message
    assert "ImageError" in message
