"""End-to-end tests of `kiosk scan` and `kiosk parse` with the embedded store."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from backend.importer import import_csv
from backend.records import DocumentKey, LookupAnswer, Result
from backend.store import open_store
from kiosk.cli import SAMPLE_IMAGES, SAMPLE_RECORDS, main
from kiosk.lookup.http import HttpLookup
from kiosk.lookup.offline import OfflineCopy, copy_path
from kiosk.lookup.queue import RecheckQueue
from tests.lookup.conftest import API_KEY, SEED_LINES, serve_list
from tests.mrz.test_parser import TD1, TD3

TRUTH = json.loads((SAMPLE_IMAGES / "truth.json").read_text())


def _run(
    capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, list[dict[str, object]]]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.strip()]


def _store(tmp_path: Path) -> str:
    """Return the path of a store file loaded with the bundled sample list."""
    path = tmp_path / "store.sqlite3"
    if not path.exists():
        store = open_store(f"sqlite:///{path}")
        try:
            import_csv(store, SAMPLE_RECORDS)
        finally:
            store.close()
    return str(path)


def _hit_numbers() -> set[str]:
    with SAMPLE_RECORDS.open(newline="") as handle:
        return {row["document_number"] for row in csv.DictReader(handle)}


def test_parse_json_fields(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, results = _run(capsys, "parse", "--json", "--store", _store(tmp_path), *TD3)
    assert code == 0
    assert len(results) == 1
    result = results[0]
    assert result["format"] == "TD3"
    assert result["document_number"] == "L898902C3"
    assert result["issuing_state"] == "UTO"
    assert result["birth_date"] == "1974-08-12"
    assert result["expiry_date"] == "2012-04-15"
    assert result["valid"] is True
    assert result["checks"] == {
        "document_number": True,
        "birth_date": True,
        "expiry_date": True,
        "optional_data": True,
        "composite": True,
    }
    assert result["error"] is None
    lookup = result["lookup"]
    assert isinstance(lookup, dict)
    assert lookup["result"] in ("HIT", "NO_HIT", "POSSIBLE")


def test_parse_failed_check_is_not_no_hit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    broken = [TD3[0], TD3[1][:2] + "7" + TD3[1][3:]]
    _, results = _run(capsys, "parse", "--json", "--store", _store(tmp_path), *broken)
    assert results[0]["valid"] is False
    lookup = results[0]["lookup"]
    assert isinstance(lookup, dict)
    assert lookup["result"] == "UNKNOWN"
    assert "rescan" in str(lookup["reason"])


def test_parse_malformed_text_reports_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, results = _run(
        capsys, "parse", "--json", "--store", _store(tmp_path), "HELLO", "WORLD"
    )
    assert results[0]["mrz"] is None
    assert "unrecognised MRZ shape" in str(results[0]["error"])
    lookup = results[0]["lookup"]
    assert isinstance(lookup, dict)
    assert lookup["result"] == "UNKNOWN"


def test_parse_reads_documents_from_stdin(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    text = "\n".join(TD3) + "\n\n" + "\n".join(TD1) + "\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    _, results = _run(capsys, "parse", "--json", "--store", _store(tmp_path), "-")
    assert [r["format"] for r in results] == ["TD3", "TD1"]


def test_scan_samples_show_hit_and_no_hit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, results = _run(
        capsys, "scan", "--json", "--store", _store(tmp_path), str(SAMPLE_IMAGES)
    )
    assert code == 0
    by_name = {Path(str(r["source"])).name: r for r in results}
    kinds = {r["lookup"]["result"] for r in results if isinstance(r["lookup"], dict)}
    assert "HIT" in kinds
    assert "NO_HIT" in kinds
    for name, truth in TRUTH.items():
        if name not in by_name or not isinstance(truth, dict) or not truth.get("lines"):
            continue
        result = by_name[name]
        if result["valid"]:
            # A reading the kiosk accepted must be the printed one.
            assert result["mrz"] == truth["lines"], name


def test_scan_bad_inputs_continue_batch(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image")
    folder = tmp_path / "no-images"
    folder.mkdir()
    (folder / "readme.txt").write_text("nothing here")
    good = tmp_path / "good.jpg"
    shutil.copy(SAMPLE_IMAGES / "td3-passport-light.jpg", good)

    code, results = _run(
        capsys,
        "scan",
        "--json",
        "--store",
        _store(tmp_path),
        str(empty),
        str(text),
        str(folder),
        str(tmp_path / "missing.jpg"),
        str(good),
    )
    assert code == 0
    assert len(results) == 5
    for result in results[:4]:
        assert result["error"], result["source"]
        assert result["lookup"]["result"] == "UNKNOWN"  # type: ignore[index]
    assert "empty.png" in str(results[0]["error"])
    assert "notes.jpg" in str(results[1]["error"])
    assert "holds no images" in str(results[2]["error"])
    assert "not found" in str(results[3]["error"])
    assert results[4]["error"] is None


def test_scan_image_without_mrz(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((600, 800, 3), 200, np.uint8))
    _, results = _run(capsys, "scan", "--json", "--store", _store(tmp_path), str(blank))
    assert results[0]["mrz"] is None
    assert "MRZ not found" in str(results[0]["error"])


def test_scan_plain_text_output(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(
        [
            "scan",
            "--store",
            _store(tmp_path),
            str(SAMPLE_IMAGES / "td3-passport-light.jpg"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "td3-passport-light.jpg" in out
    assert "lookup" in out
    assert "checks" in out


def test_scan_text_labels_offline_answer(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KIOSK_API_KEY", API_KEY)
    with serve_list(tmp_path / "service", SEED_LINES) as service:
        url = service.url
        version = service.store.data_version()
        feed = HttpLookup(url, api_key=API_KEY)
        copy = OfflineCopy(copy_path(Path("var"), url), service_url=url)
        copy.sync(feed)
        copy.close()
        feed.close()
    # The service is down now, so the offline copy returns the result.
    code = main(
        ["--backend", url, "scan", str(SAMPLE_IMAGES / "td3-passport-light.jpg")]
    )
    out = capsys.readouterr().out

    assert code == 0
    assert "number W3180689" in out
    assert f"NO RECORD (offline copy, data version {version}, " in out
    assert re.search(r"data version [^,]+, \d+ (s|min) old\)", out)
    assert "re-check     queued" in out


def _queue_checked_offline(number: str) -> None:
    """Queue a check of UTO P `number` whose offline result was NO_HIT."""
    queue = RecheckQueue(Path("var") / "rechecks.sqlite3")
    first = LookupAnswer(Result.NO_HIT, data_version="1-x", source="offline")
    queue.enqueue(DocumentKey.create("UTO", "P", number), first)
    queue.close()


def test_scan_prints_late_hit(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KIOSK_API_KEY", API_KEY)
    _queue_checked_offline("L898902C3")
    with serve_list(tmp_path / "service", SEED_LINES) as service:
        code = main(
            [
                "--backend",
                service.url,
                "scan",
                str(SAMPLE_IMAGES / "td3-passport-light.jpg"),
            ]
        )
    out = capsys.readouterr().out
    queue = RecheckQueue(Path("var") / "rechecks.sqlite3")
    left = len(queue)
    queue.close()

    assert code == 0
    assert "late re-check 1: UTO P L898902C3" in out
    assert "first result NO RECORD" in out
    assert "lookup       HIT - reported document" in out
    assert "stolen UTO P L898902C3" in out
    assert left == 0


def test_parse_json_prints_late_hit(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KIOSK_API_KEY", API_KEY)
    _queue_checked_offline("L898902C3")
    with serve_list(tmp_path / "service", SEED_LINES) as service:
        code, results = _run(capsys, "--backend", service.url, "parse", "--json", *TD1)

    assert code == 0
    late = results[0]["late_recheck"]
    assert isinstance(late, dict)
    assert late["document_number"] == "L898902C3"
    assert late["first_result"] == "NO_HIT"
    assert late["lookup"]["result"] == "HIT"
    assert results[1]["document_number"] == "D23145890"


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["scan"])
    assert info.value.code == 2


def test_options_before_command_apply(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A closed loopback port: the check cannot happen, so never NO_HIT.
    code, results = _run(
        capsys,
        "--backend",
        "http://127.0.0.1:9",
        "--store",
        _store(tmp_path),
        "parse",
        "--json",
        *TD3,
    )
    assert code == 0
    assert results[0]["lookup"]["result"] == "UNKNOWN"  # type: ignore[index]


def test_missing_store_file_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "typo" / "store.sqlite3"
    code = main(["parse", "--store", str(missing), *TD3])
    err = capsys.readouterr().err
    assert code == 2
    assert "not found" in err
    assert not missing.parent.exists()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("[backend]\nurl = 5\n", "url"),
        ("[backnd]\nurl = 'http://127.0.0.1:9'\n", "backend"),
        ("[backend]\nurl = 'ftp://127.0.0.1/'\n", "http://HOST:PORT"),
    ],
)
def test_bad_config_exits_2_with_message(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, config: str, message: str
) -> None:
    path = tmp_path / "kiosk.toml"
    path.write_text(config)
    code = main(["parse", "--config", str(path), *TD3])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_default_store_is_seeded_from_samples(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The autouse fixture runs each test in an empty working directory.
    code, results = _run(capsys, "parse", "--json", *TD3)
    assert code == 0
    assert Path("var/kiosk.sqlite3").is_file()
    assert results[0]["lookup"]["data_version"]  # type: ignore[index]


def test_scan_reports_looping_symlink(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(loop)
    _, results = _run(capsys, "scan", "--json", "--store", _store(tmp_path), str(loop))
    assert "symbolic link" in str(results[0]["error"])


def test_file_name_with_newline_stays_on_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    odd = tmp_path / "two\nlines.jpg"
    odd.write_bytes(b"not an image")
    main(["scan", "--store", _store(tmp_path), str(odd)])
    out = capsys.readouterr().out
    assert "two\\nlines.jpg" in out
    assert not any(line.startswith("lines.jpg") for line in out.splitlines())


def test_mrz_not_found_says_what_to_do(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, results = _run(
        capsys,
        "scan",
        "--json",
        "--store",
        _store(tmp_path),
        str(SAMPLE_IMAGES / "no-mrz.jpg"),
    )
    assert "MRZ not found" in str(results[0]["error"])
    assert "scan the document again" in str(results[0]["error"])
