"""Isolate every test from the machine: no config discovery, no API keys."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

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


# CI runs the property tests on a fixed set of examples, so a red run can be
# reproduced; local runs keep exploring (and replay any saved failure).
settings.register_profile("ci", derandomize=True, database=None, deadline=None)
settings.register_profile("dev", deadline=None)
# `HYPOTHESIS_PROFILE=thorough` runs many more examples, for a search by hand.
settings.register_profile("thorough", max_examples=3000, deadline=None)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE")
    or ("ci" if os.environ.get("CI") == "true" else "dev")
)
