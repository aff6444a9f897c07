"""Full imports that would wipe the list: mostly invalid, truncated or shrunk."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.cli import main
from backend.errors import ImportFailed
from backend.importer import import_csv
from backend.records import DocumentKey, Result
from backend.store import Store, open_store
from tests.backend.helpers import HEADER, record_line, write_csv

COUNT = 304


def good_lines(count: int = COUNT) -> list[list[str]]:
    return [record_line("UTO", f"N{index:07d}") for index in range(count)]


def seeded_store(tmp_path: Path) -> tuple[str, str]:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    with open_store(url) as store:
        version = import_csv(store, write_csv(tmp_path / "seed.csv", good_lines()))
    return url, version.result.version


def assert_untouched(url: str, version: str) -> None:
    with open_store(url) as store:
        assert store.data_version() == version
        assert store.count() == COUNT
        answer = store.lookup(DocumentKey.create("UTO", "P", "N0000303"))
        assert answer.result is Result.HIT


def test_semicolon_file_aborts_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, version = seeded_store(tmp_path)
    path = tmp_path / "semicolon.csv"
    rows = [";".join(line) for line in good_lines()]
    path.write_text(",".join(HEADER) + "\n" + "\n".join(rows) + "\n")

    code = main(["import", str(path), "--store", url, "--quiet"])

    assert code != 0
    assert "nothing was imported" in capsys.readouterr().err
    assert_untouched(url, version)


def test_mostly_invalid_share_aborts(tmp_path: Path) -> None:
    url, version = seeded_store(tmp_path)
    lines = good_lines()
    for index in range(0, COUNT, 10):
        lines[index] = record_line("UTO", f"N{index:07d}", status="misplaced")
    path = write_csv(tmp_path / "bad.csv", lines)

    with open_store(url) as store, pytest.raises(ImportFailed, match="over the limit"):
        import_csv(store, path)

    assert_untouched(url, version)


def test_few_invalid_lines_still_load(tmp_path: Path) -> None:
    url, _ = seeded_store(tmp_path)
    lines = [*good_lines(), record_line("UTO", "X1", status="misplaced")]
    with open_store(url) as store:
        report = import_csv(store, write_csv(tmp_path / "ok.csv", lines))
    assert [line for line, _ in report.rejected] == [COUNT + 2]
    assert report.result.record_count == COUNT


def test_truncated_file_aborts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, version = seeded_store(tmp_path)
    full = write_csv(tmp_path / "full.csv", good_lines()).read_bytes()
    cut = tmp_path / "cut.csv"
    cut.write_bytes(full[: len(full) // 2])

    code = main(["import", str(cut), "--store", url, "--quiet"])

    assert code != 0
    assert "--allow-shrink" in capsys.readouterr().err
    assert_untouched(url, version)


def test_truncated_last_line_is_rejected(tmp_path: Path) -> None:
    # Cut inside the last field, so the rest of the line still parses.
    path = tmp_path / "cut.csv"
    lines = [",".join(line) for line in good_lines(3)]
    last = "UTO,P,Z9,stolen,2024-03-01,FRA,REF"
    path.write_text(",".join(HEADER) + "\n" + "\n".join(lines) + "\n" + last + ",,")

    store = open_store(f"sqlite:///{tmp_path / 's.sqlite3'}")
    try:
        report = import_csv(store, path, max_rejected_share=None)
        assert report.rejected[0][0] == 5
        assert "truncated" in report.rejected[0][1]
        missing = store.lookup(DocumentKey.create("UTO", "P", "Z9"))
        assert missing.result is Result.NO_HIT
        assert store.count() == 3
    finally:
        store.close()


def test_shrink_needs_allow_shrink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, version = seeded_store(tmp_path)
    path = write_csv(tmp_path / "small.csv", good_lines(200))

    assert main(["import", str(path), "--store", url, "--quiet"]) != 0
    assert "would remove 104 records" in capsys.readouterr().err
    assert_untouched(url, version)

    assert main(["import", str(path), "--store", url, "--quiet", "--allow-shrink"]) == 0
    out = capsys.readouterr().out
    assert "104 deleted" in out
    assert "200 records in the store (before: 304)" in out


def test_delta_not_limited_by_share(tmp_path: Path) -> None:
    url, _ = seeded_store(tmp_path)
    lines = [
        ["delete", *record_line("UTO", "N0000001")],
        ["bogus", *record_line("UTO", "N0000002")],
    ]
    store: Store
    with open_store(url) as store:
        report = import_csv(
            store, write_csv(tmp_path / "d.csv", lines, delta=True), delta=True
        )
        assert report.result.deleted == 1
        assert store.count() == COUNT - 1


@pytest.mark.parametrize("parallel", [False, True], ids=["inline", "parser-process"])
def test_rejected_import_names_first_bad_lines(tmp_path: Path, parallel: bool) -> None:
    url, version = seeded_store(tmp_path)
    bad = [["UTO", "P", "N1", "misplaced"] for _ in range(7)]
    path = write_csv(tmp_path / "bad.csv", [*good_lines(10), *bad])

    with open_store(url) as store, pytest.raises(ImportFailed) as caught:
        import_csv(store, path, parallel=parallel)

    message = str(caught.value)
    assert "First invalid lines: line 12: expected 9 columns, found 4" in message
    assert "line 16:" in message
    assert "line 17:" not in message
    assert message.endswith("; 2 more")
    assert_untouched(url, version)


def test_file_without_valid_records_names_bad_lines(tmp_path: Path) -> None:
    url, version = seeded_store(tmp_path)
    path = write_csv(tmp_path / "bad.csv", [["UTO", "P"]])

    with open_store(url) as store, pytest.raises(ImportFailed) as caught:
        import_csv(store, path, max_rejected_share=None)

    assert "has no valid records" in str(caught.value)
    assert "line 2: expected 9 columns, found 2" in str(caught.value)
    assert_untouched(url, version)


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize(
    "kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_duplicates_count_against_limits(
    tmp_path: Path, kind: str, parallel: bool, request: pytest.FixtureRequest
) -> None:
    # The store finds duplicates after parsing. They still count as invalid
    # lines, so 150 of 454 lines stop the import at the 1% limit.
    url = (
        request.getfixturevalue("pg_schema_url")
        if kind == "postgresql"
        else f"sqlite:///{tmp_path / 'store.sqlite3'}"
    )
    with open_store(url) as store:
        seed = import_csv(store, write_csv(tmp_path / "seed.csv", good_lines()))
        copies = [
            record_line("UTO", f"N{index:07d}", reference=f"COPY-{index}")
            for index in range(150)
        ]
        path = write_csv(tmp_path / "dups.csv", [*good_lines(), *copies])
        with pytest.raises(ImportFailed, match="150 of 454 lines") as failure:
            import_csv(store, path, parallel=parallel)
        assert "duplicate of the record on line 2" in str(failure.value)
        assert store.data_version() == seed.result.version
        assert store.count() == COUNT


@pytest.mark.parametrize("parallel", [False, True])
def test_duplicates_count_against_max_rejected(tmp_path: Path, parallel: bool) -> None:
    url, version = seeded_store(tmp_path)
    copies = [record_line("UTO", f"N{index:07d}", reference="B") for index in range(3)]
    path = write_csv(tmp_path / "dups.csv", [*good_lines(), *copies])
    with open_store(url) as store:
        with pytest.raises(ImportFailed, match="more than 2 invalid lines"):
            import_csv(store, path, max_rejected=2, parallel=parallel)
        # Within the limits the duplicates are reported and not loaded.
        report = import_csv(store, path, max_rejected_share=None, parallel=parallel)
    assert [line for line, _ in report.rejected] == [306, 307, 308]
    assert report.result.record_count == COUNT
    assert version != report.result.version


def test_delta_with_no_valid_line_fails(tmp_path: Path) -> None:
    url, version = seeded_store(tmp_path)
    path = tmp_path / "delta.csv"
    path.write_text(
        "op," + ",".join(HEADER) + "\n"
        "upsert," + ",".join(record_line("UTO", "N0000001")) + "\n"
    )
    with (
        open_store(url) as store,
        pytest.raises(ImportFailed, match="no valid changes"),
    ):
        import_csv(store, path, delta=True)
    assert_untouched(url, version)


def test_header_only_delta_fails(tmp_path: Path) -> None:
    url, version = seeded_store(tmp_path)
    path = tmp_path / "delta.csv"
    path.write_text("op," + ",".join(HEADER) + "\n")
    with (
        open_store(url) as store,
        pytest.raises(ImportFailed, match="no valid changes"),
    ):
        import_csv(store, path, delta=True)
    assert_untouched(url, version)


def test_limit_message_quotes_first_lines_with_duplicates(tmp_path: Path) -> None:
    # Duplicates on lines 306 to 308, an invalid status on line 309: the
    # message quotes the file's first invalid lines, duplicates included.
    url, _ = seeded_store(tmp_path)
    copies = [record_line("UTO", f"N{index:07d}", reference="B") for index in range(3)]
    bad = record_line("UTO", "X1", status="misplaced")
    path = write_csv(tmp_path / "dups.csv", [*good_lines(), *copies, bad])
    with open_store(url) as store, pytest.raises(ImportFailed) as failure:
        import_csv(store, path, max_rejected=2, max_rejected_share=None)
    message = str(failure.value)
    assert "First invalid lines: line 306: duplicate" in message
    assert "line 309: invalid status" in message
