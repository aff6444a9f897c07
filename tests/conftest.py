"""Isolate every test from the machine: no config discovery, no API keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    for name in ("KIOSK_CONFIG", "KIOSK_API_KEY", "KIOSK_LOG_LEVEL", "KIOSK_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    # A config file in the working directory must not leak into tests.
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    yield


@pytest.fixture
def shared_specimens() -> Path:
    """The public specimen photos beside the checkout, or a skip."""
    folder = SHARED_DATA / "specimens"
    if not (folder / "truth.json").exists():
        pytest.skip(f"specimen photos not present at {folder}")
    return folder
