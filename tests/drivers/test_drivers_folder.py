"""The folder driver: file lists, globs and a watched folder."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from drivers import DeviceState, ImageCaptured, create_driver
from drivers.errors import DriverConfigError, DriverStateError
from drivers.folder import FolderDriver
from drivers.specimens import SPECIMENS
from kiosk.config import DriverConfig, FolderConfig
from tests.drivers.driver_helpers import EventLog, jpeg_bytes, png_bytes, wait_until

TD1, TD3 = SPECIMENS["td1"], SPECIMENS["td3"]


def shapes(log: EventLog) -> list[tuple[int, ...]]:
    return [tuple(e.image.shape) for e in log.images()]


def test_folder_file_list_in_given_order(tmp_path: Path) -> None:
    (tmp_path / "b.png").write_bytes(png_bytes(20, 10))
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(30, 16))
    (tmp_path / "doc.mrz").write_text("\n".join(TD1) + "\n\n" + "\n".join(TD3) + "\n")
    files = [str(tmp_path / n) for n in ("b.png", "doc.mrz", "a.jpg")]
    driver = create_driver(FolderConfig(name="f", files=files, poll_interval_s=0.01))
    log = EventLog(driver)
    driver.start()
    log.wait_status(DeviceState.DISCONNECTED)
    driver.stop()
    assert shapes(log) == [(10, 20, 3), (16, 30, 3)]
    assert log.mrz() == [TD1, TD3]
    kinds = [type(e).__name__ for e in log.events if not hasattr(e, "state")]
    assert kinds == ["ImageCaptured", "MrzLinesRead", "MrzLinesRead", "ImageCaptured"]


def test_folder_glob_sorted_and_bad_file_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "2.png").write_bytes(png_bytes(8, 8))
    (tmp_path / "1.png").write_bytes(png_bytes(4, 4))
    (tmp_path / "3.png").write_bytes(b"not an image")
    config = FolderConfig(name="g", glob=str(tmp_path / "*.png"), poll_interval_s=0.01)
    driver = FolderDriver(config)
    log = EventLog(driver)
    with caplog.at_level(logging.WARNING, logger="drivers"):
        driver.start()
        log.wait_status(DeviceState.DISCONNECTED)
        driver.stop()
    assert shapes(log) == [(4, 4, 3), (8, 8, 3)]
    assert "3.png" in caplog.text


def test_folder_glob_without_match(tmp_path: Path) -> None:
    driver = FolderDriver(FolderConfig(name="g", glob=str(tmp_path / "*.png")))
    log = EventLog(driver)
    driver.start()
    event = log.wait_status(DeviceState.ERROR)
    driver.stop()
    assert "*.png" in event.reason


def test_folder_watch_reads_new_files_once_in_order(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "old.png").write_bytes(png_bytes(5, 5))
    config = FolderConfig(
        name="w", watch=str(inbox), poll_interval_s=0.02, stable_s=0.1
    )
    driver = FolderDriver(config)
    log = EventLog(driver)
    driver.start()
    try:
        log.wait_status(DeviceState.CONNECTED)
        first = png_bytes(11, 7)
        # A file written in two steps must be read once, complete.
        with open(inbox / "first.png", "wb") as handle:
            handle.write(first[:40])
            handle.flush()
            os.fsync(handle.fileno())
            handle.write(first[40:])
        log.wait_for(lambda: len(log.images()) == 1, what="first image")
        (inbox / "second.mrz.part").write_text("\n".join(TD3))
        (inbox / "second.mrz.part").rename(inbox / "second.mrz")
        log.wait_for(lambda: len(log.mrz()) == 1, what="MRZ file")
        (inbox / "third.jpg").write_bytes(jpeg_bytes(13, 9))
        log.wait_for(lambda: len(log.images()) == 2, what="second image")
        # Touching a file that was read does not read it again.
        os.utime(inbox / "first.png")
        log.drain(0.3)
    finally:
        driver.stop()
    assert shapes(log) == [(7, 11, 3), (9, 13, 3)]
    assert log.mrz() == [TD3]
    assert driver.files_read == 3


def test_folder_watch_rereads_completed_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A writer that stalls for longer than stable_s leaves a partial image.
    # It is skipped then, and read once the writer finishes it.
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = FolderConfig(
        name="w", watch=str(inbox), poll_interval_s=0.02, stable_s=0.05
    )
    driver = FolderDriver(config)
    log = EventLog(driver)
    image = png_bytes(11, 7)
    with caplog.at_level(logging.WARNING, logger="drivers"):
        driver.start()
        try:
            log.wait_status(DeviceState.CONNECTED)
            (inbox / "slow.png").write_bytes(image[:40])
            wait_until(lambda: "slow.png" in caplog.text, what="the partial read")
            assert log.images() == []
            with open(inbox / "slow.png", "ab") as handle:
                handle.write(image[40:])
            log.wait_for(lambda: len(log.images()) == 1, what="the completed image")
            # An unchanged unreadable file is not retried on every poll.
            (inbox / "bad.png").write_bytes(b"not an image")
            wait_until(lambda: "bad.png" in caplog.text, what="the bad file")
            log.drain(0.3)
        finally:
            driver.stop()
    assert shapes(log) == [(7, 11, 3)]
    assert caplog.text.count("bad.png") == 1
    assert driver.files_read == 1


def test_folder_watch_include_existing_and_missing_folder(tmp_path: Path) -> None:
    inbox = tmp_path / "later"
    config = FolderConfig(
        name="w",
        watch=str(inbox),
        include_existing=True,
        poll_interval_s=0.02,
        stable_s=0.0,
    )
    driver = FolderDriver(config)
    log = EventLog(driver)
    driver.start()
    try:
        log.wait_status(DeviceState.DISCONNECTED)
        inbox.mkdir()
        (inbox / "a.png").write_bytes(png_bytes(3, 2))
        log.wait_for(lambda: len(log.images()) == 1, what="image in new folder")
    finally:
        driver.stop()
    assert isinstance(log.images()[0], ImageCaptured)
    assert log.states()[:2] == [DeviceState.DISCONNECTED, DeviceState.CONNECTED]


def test_driver_start_twice_rejected(tmp_path: Path) -> None:
    driver = FolderDriver(FolderConfig(name="w", watch=str(tmp_path)))
    driver.start()
    try:
        with pytest.raises(DriverStateError, match="already started"):
            driver.start()
    finally:
        driver.stop()
    assert not driver.running


def test_create_driver_rejects_unknown_config() -> None:
    with pytest.raises(DriverConfigError, match="DriverConfig"):
        create_driver(DriverConfig(name="x"))
