"""The terminal UI stays at the edge: headless modules never load Textual."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

HEADLESS_MODULES = [
    "kiosk.mrz",
    "kiosk.pipeline",
    "kiosk.lookup",
    "kiosk.reader",
    "kiosk.config",
    "kiosk.cli",
    "drivers",
    "backend.records",
    "backend.store",
    "backend.app",
]


@pytest.mark.parametrize("module", HEADLESS_MODULES)
def test_module_does_not_import_textual(module: str) -> None:
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        "sys.exit(1 if 'textual' in sys.modules else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"{module} imports textual\n{result.stderr}"
