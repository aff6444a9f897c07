from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest


def _encode(extension: str, width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(extension, image)
    assert ok
    return bytes(encoded.tobytes())


@pytest.fixture
def jpeg_bytes() -> bytes:
    return _encode(".jpg", 64, 40, 0)


@pytest.fixture
def png_bytes() -> bytes:
    return _encode(".png", 32, 24, 1)


@pytest.fixture
def make_image_file() -> Callable[[str, int, int, int], bytes]:
    return _encode
