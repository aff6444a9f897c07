"""An API key that cannot go in an HTTP header is a configuration error, not
an unreachable service."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.records import DocumentKey, Result
from kiosk.cli import main
from kiosk.errors import ConfigError
from kiosk.lookup.http import HttpLookup
from tests.lookup.conftest import API_KEY, LiveService

SPECIMEN = [
    "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<",
    "L898902C36UTO7408122F1204159ZE184226B<<<<<10",
]


def test_key_file_line_break_is_removed(live_service: LiveService) -> None:
    client = HttpLookup(live_service.url, api_key=f"{API_KEY}\r\n", retries=0)

    answer = client.lookup(DocumentKey.create("UTO", "P", "L898902C3"))
    client.close()

    assert answer.result is Result.HIT


@pytest.mark.parametrize("key", ["abc\x01def", "abc def", "clé-abc", "ab\ncd"])
def test_unusable_key_is_config_error(key: str) -> None:
    with pytest.raises(ConfigError, match="invalid API key: character") as caught:
        HttpLookup("http://127.0.0.1:9", api_key=key)

    # The key is a secret: only its length and the position are quoted.
    assert key not in str(caught.value)


def test_cli_reports_unusable_key(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KIOSK_API_KEY", "abc\x01def")

    code = main(["parse", "--backend", "http://127.0.0.1:9", *SPECIMEN])

    assert code == 2
    assert "invalid API key: character 4 of 7" in capsys.readouterr().err
