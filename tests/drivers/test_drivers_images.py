"""Image bytes from drivers: cut-off files and oversized images are refused
before OpenCV decodes them."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from PIL import Image

from drivers import DeviceState, images
from drivers.folder import FolderDriver
from drivers.images import (
    ImageIncomplete,
    ImageTooLarge,
    decode_image,
    decode_image_file,
)
from kiosk.config import FolderConfig
from tests.drivers.driver_helpers import EventLog, jpeg_bytes, png_bytes, wait_until


def test_whole_images_decode() -> None:
    assert decode_image(png_bytes(11, 7), "a.png").shape == (7, 11, 3)
    assert decode_image(jpeg_bytes(32, 24), "a.jpg").shape == (24, 32, 3)


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_cut_off_image_is_incomplete(kind: str) -> None:
    # OpenCV decodes the first half of a JPEG to a grey-filled image.
    data = jpeg_bytes(64, 48) if kind == "jpeg" else png_bytes(64, 48)
    with pytest.raises(ImageIncomplete, match="ends before"):
        decode_image(data[: len(data) // 2], "half")


def test_small_file_of_huge_image_refused() -> None:
    buffer = io.BytesIO()
    Image.new("L", (20_000, 20_000), 255).save(buffer, format="PNG")
    data = buffer.getvalue()
    assert len(data) < 1_000_000
    with pytest.raises(ImageTooLarge, match="too large to decode safely"):
        decode_image(data, "huge.png")


def test_image_over_driver_pixel_limit_refused() -> None:
    # Under Pillow's bomb limit, over the driver's 60 megapixels.
    buffer = io.BytesIO()
    Image.new("L", (10_000, 8_000), 255).save(buffer, format="PNG")
    with pytest.raises(ImageTooLarge, match="10000 x 8000 pixels, over the limit"):
        decode_image(buffer.getvalue(), "big.png")


def test_file_over_size_limit_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(jpeg_bytes(32, 24))
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 100)

    def fail(_self: Path) -> bytes:
        raise AssertionError("the file was read before its size was checked")

    monkeypatch.setattr(Path, "read_bytes", fail)
    with pytest.raises(ImageTooLarge, match="over the 0 MB limit"):
        decode_image_file(path)


def test_not_an_image_and_empty_refused() -> None:
    with pytest.raises(ImageIncomplete, match="not a readable image"):
        decode_image(b"hello, not an image", "x.png")
    with pytest.raises(ImageIncomplete, match="empty"):
        decode_image(b"", "x.png")


def test_folder_rereads_jpeg_finished_late(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A JPEG whose writer stalls halfway must not be checked as a grey
    # half-image; the whole file is read once it is complete.
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    driver = FolderDriver(
        FolderConfig(name="w", watch=str(inbox), poll_interval_s=0.02, stable_s=0.05)
    )
    log = EventLog(driver)
    image = jpeg_bytes(64, 48)
    with caplog.at_level(logging.WARNING, logger="drivers"):
        driver.start()
        try:
            log.wait_status(DeviceState.CONNECTED)
            (inbox / "slow.jpg").write_bytes(image[: len(image) // 2])
            wait_until(lambda: "slow.jpg" in caplog.text, what="the partial read")
            assert log.images() == []
            with open(inbox / "slow.jpg", "ab") as handle:
                handle.write(image[len(image) // 2 :])
            log.wait_for(lambda: len(log.images()) == 1, what="the completed image")
        finally:
            driver.stop()
    assert log.images()[0].image.shape == (48, 64, 3)
    assert driver.files_read == 1
