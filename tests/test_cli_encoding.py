"""`kiosk scan` and `kiosk parse` on file names and input that are not UTF-8.

Python keeps each undecodable byte as a lone surrogate. Written to standard
output, such a string is either invalid UTF-8 or an encoding error, so every
output line must encode as UTF-8 on its own.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from kiosk.cli import SAMPLE_IMAGES, display_path, main, printable, valid_text
from tests.mrz.test_parser import TD3
from tests.test_cli import _store

NON_UTF8_NAME = os.fsdecode(b"caf\xe9-\xff.jpg")


def _stdin_bytes(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    """Replace standard input with `data`, decoded as Python decodes it."""
    stream = io.TextIOWrapper(
        io.BytesIO(data), encoding="utf-8", errors="surrogateescape"
    )
    monkeypatch.setattr("sys.stdin", stream)


def test_scan_json_non_utf8_file_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    image = tmp_path / NON_UTF8_NAME
    image.write_bytes((SAMPLE_IMAGES / "broken-truncated.jpg").read_bytes())

    assert main(["scan", "--json", "--store", _store(tmp_path), str(image)]) == 0
    out = capsys.readouterr().out
    out.encode("utf-8")  # raises UnicodeEncodeError on a lone surrogate
    result = json.loads(out)

    assert result["source"] == str(tmp_path / "caf\\xe9-\\xff.jpg")
    assert "caf\\xe9-\\xff.jpg is not a readable image" in result["error"]
    assert result["lookup"]["result"] == "UNKNOWN"


def test_scan_text_non_utf8_file_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    image = tmp_path / NON_UTF8_NAME
    image.write_bytes(b"not an image")

    main(["scan", "--store", _store(tmp_path), str(image)])
    out = capsys.readouterr().out
    out.encode("utf-8")

    assert out.startswith(str(tmp_path / "caf\\xe9-\\xff.jpg") + "\n")
    assert "\\udc" not in out


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
def test_parse_stdin_names_undecodable_byte(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    as_json: bool,
) -> None:
    first = TD3[0].encode()
    data = first[:5] + b"\xd6" + first[6:] + b"\n" + TD3[1].encode() + b"\n"
    _stdin_bytes(monkeypatch, data)
    options = ["--json"] if as_json else []

    assert main(["parse", *options, "--store", _store(tmp_path), "-"]) == 0
    out = capsys.readouterr().out
    out.encode("utf-8")
    if as_json:
        out = json.loads(out)["error"]

    assert "line 1 position 6 contains the byte 0xD6" in out
    assert "which is not UTF-8 text" in out
    assert "\\udcd6" not in out


def test_parse_argument_names_undecodable_byte(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    second = os.fsdecode(TD3[1][:3].encode() + b"\x80" + TD3[1][4:].encode())

    main(["parse", "--json", "--store", _store(tmp_path), TD3[0], second])
    result = json.loads(capsys.readouterr().out)

    assert "line 2 position 4 contains the byte 0x80" in result["error"]


def test_parse_stdin_valid_after_undecodable(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bad = b"\xff" + TD3[0][1:].encode() + b"\n" + TD3[1].encode() + b"\n"
    good = "\n".join(TD3).encode() + b"\n"
    _stdin_bytes(monkeypatch, bad + b"\n" + good)

    main(["parse", "--json", "--store", _store(tmp_path), "-"])
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert len(results) == 2
    assert "the byte 0xFF" in results[0]["error"]
    assert results[1]["document_number"] == "L898902C3"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain.jpg", "plain.jpg"),
        ("café.jpg", "café.jpg"),
        (os.fsdecode(b"caf\xe9.jpg"), "caf\\xe9.jpg"),
        ("\ud800", "\\ud800"),
    ],
)
def test_valid_text(text: str, shown: str) -> None:
    assert valid_text(text) == shown
    assert valid_text(text).encode("utf-8")


def test_display_path_and_printable() -> None:
    path = Path(os.fsdecode(b"/tmp/a\nb\xff.jpg"))

    assert display_path(path) == "/tmp/a\nb\\xff.jpg"
    assert printable(str(path)) == "/tmp/a\\nb\\xff.jpg"
