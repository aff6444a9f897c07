"""CSV import: line validation, headers and rejection reporting."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from backend.errors import ImportFailed, InvalidRecord
from backend.importer import (
    _FAST_ROW_RE,
    _CsvSource,
    import_csv,
    parse_record_fields,
    parse_record_fields_fast,
)
from backend.records import DocumentKey, Result
from backend.store import Store, open_store
from tests.backend.helpers import HEADER, record_line, write_csv


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path / 's.sqlite3'}")


def test_bad_lines_reported_and_skipped(sqlite_store: Store, tmp_path: Path) -> None:
    lines = [
        record_line("UTO", "L898902C3"),
        record_line("UTO", "BAD*NUMBER"),
        record_line("UTO", "A1", status="misplaced"),
        record_line("UTO", "A2", reported_on="2024-13-01"),
        record_line("U1O", "A3"),
        ["UTO", "P", "A4"],
        record_line("UTO", "A5", doc_type="PPP"),
        record_line("UTO", "A6", reference=""),
        record_line("UTO", "A7", expiry_date="tomorrow"),
        record_line("UTO", "A 8-9<"),
    ]
    report = import_csv(
        sqlite_store, write_csv(tmp_path / "f.csv", lines), max_rejected_share=None
    )
    rejected = dict(report.rejected)
    assert sorted(rejected) == [3, 4, 5, 6, 7, 8, 9, 10]
    assert "invalid document number" in rejected[3]
    assert "BAD" not in rejected[3]
    assert "invalid status 'misplaced'" in rejected[4]
    assert "reported_on" in rejected[5]
    assert "issuing state" in rejected[6]
    assert "expected 9 columns, found 3" in rejected[7]
    assert "document type" in rejected[8]
    assert "reference" in rejected[9]
    assert "expiry_date" in rejected[10]
    assert report.result.record_count == 2
    assert report.rows_read == 10
    normalized = DocumentKey.create("UTO", "P", "A89")
    assert sqlite_store.lookup(normalized).result is Result.HIT


def test_delta_file_needs_delta_flag(sqlite_store: Store, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "d.csv", [["add", *record_line("UTO", "1")]], delta=True
    )
    with pytest.raises(ImportFailed, match="with --delta"):
        import_csv(sqlite_store, path)


def test_full_file_refused_as_delta(sqlite_store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "f.csv", [record_line("UTO", "1")])
    with pytest.raises(ImportFailed, match="without --delta"):
        import_csv(sqlite_store, path, delta=True)


def test_wrong_header_names_expected(sqlite_store: Store, tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("state,number\nUTO,1\n", encoding="utf-8")
    with pytest.raises(ImportFailed, match=",".join(HEADER)):
        import_csv(sqlite_store, path)


def test_invalid_op_rejected(sqlite_store: Store, tmp_path: Path) -> None:
    import_csv(sqlite_store, write_csv(tmp_path / "f.csv", [record_line("UTO", "1")]))
    path = write_csv(
        tmp_path / "d.csv",
        [["upsert", *record_line("UTO", "2")], ["add", *record_line("UTO", "3")]],
        delta=True,
    )
    report = import_csv(sqlite_store, path, delta=True)
    assert report.rejected == [(2, "invalid op 'upsert': expected add or delete")]
    assert report.result.added == 1


def test_max_rejected_rolls_back(sqlite_store: Store, tmp_path: Path) -> None:
    first = import_csv(
        sqlite_store, write_csv(tmp_path / "f.csv", [record_line("UTO", "1")])
    ).result.version
    lines = [record_line("UTO", "2"), *[record_line("UTO", "?")] * 5]
    with pytest.raises(ImportFailed, match="more than 3 invalid lines"):
        import_csv(sqlite_store, write_csv(tmp_path / "g.csv", lines), max_rejected=3)
    assert sqlite_store.data_version() == first


def test_not_utf8_fails(sqlite_store: Store, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        (",".join(HEADER) + "\n").encode() + b"UTO,P,1,stolen,2024-01-01,FRA,\xe9,,\n"
    )
    with pytest.raises(ImportFailed, match="not valid UTF-8"):
        import_csv(sqlite_store, path)
    assert sqlite_store.data_version() is None


@pytest.mark.parametrize("parallel", [False, True])
def test_not_utf8_names_exact_line(
    sqlite_store: Store, tmp_path: Path, parallel: bool
) -> None:
    # The text layer reads ahead, so the line being parsed when decoding
    # failed was far before the bad byte.
    lines = [record_line("UTO", f"N{index:05d}") for index in range(400)]
    text = (
        ",".join(HEADER) + "\n" + "".join(",".join(line) + "\n" for line in lines)
    ).encode()
    line_starts = [0, *[i + 1 for i, byte in enumerate(text) if byte == 10]]
    # Line 306 of the file: the header is line 1.
    at = text.index(b"REF-1", line_starts[305])
    path = tmp_path / "latin1.csv"
    path.write_bytes(text[:at] + b"\xe9" + text[at + 1 :])

    with pytest.raises(ImportFailed, match="not valid UTF-8 at line 306"):
        import_csv(sqlite_store, path, parallel=parallel)


def test_overlong_field_names_unclosed_quote(
    sqlite_store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "quote.csv"
    path.write_text(
        ",".join(HEADER)
        + "\n"
        + 'UTO,P,1,stolen,2024-01-01,FRA,"'
        + "x" * 200_000
        + "\n"
    )
    with pytest.raises(ImportFailed, match="a quote that is never closed"):
        import_csv(sqlite_store, path)


def test_binary_file_fails_naming_first_line(
    sqlite_store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "photo.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00" * 100)

    with pytest.raises(ImportFailed) as caught:
        import_csv(sqlite_store, path)

    assert "not valid UTF-8 at line 1" in str(caught.value)
    assert "Save the list as UTF-8 CSV" in str(caught.value)
    assert sqlite_store.data_version() is None


def test_missing_file_fails(sqlite_store: Store, tmp_path: Path) -> None:
    with pytest.raises(ImportFailed, match="cannot read"):
        import_csv(sqlite_store, tmp_path / "absent.csv")


def test_progress_reports_bytes(sqlite_store: Store, tmp_path: Path) -> None:
    calls: list[tuple[int, int, int]] = []
    path = write_csv(
        tmp_path / "f.csv", [record_line("UTO", str(i)) for i in range(10)]
    )
    import_csv(sqlite_store, path, progress=lambda *args: calls.append(args))
    size = path.stat().st_size
    assert calls[-1] == (10, size, size)


def test_bundled_sample_imports_cleanly(sqlite_store: Store) -> None:
    sample = Path(__file__).resolve().parents[2] / "fixtures" / "sltd_sample.csv"
    if not sample.exists():
        pytest.skip(f"bundled sample list not present at {sample}")
    report = import_csv(sqlite_store, sample)
    assert report.rejected == []
    assert report.result.record_count == report.rows_read
    assert report.rows_read > 0


_FIELD_VARIANTS: list[list[str]] = [
    ["UTO", "D", "D<<", "<<<", "uto", " UTO", "U1O", "UTOX", ""],
    ["P", "PK", "P<", "<", "p", "PPP", "1", ""],
    ["L898902C3", "0012", "A 8-9<", "a1", "BAD*NUMBER", "Ä1", "٣٤", "X" * 30, ""],
    ["stolen", "lost", "stolen_blank", "Stolen", " lost", "misplaced", ""],
    ["2024-02-29", "2023-02-29", "2024-13-01", "٢٠٢٤-01-01", " 2024-01-01", ""],
    ["UTO", "D<<", "d", "ZZZZ"],
    ["REF-1", " REF", "REF ", "R" * 64, "R" * 65, "a\tb", "a\u00a0", "x,y", ""],
    ["", "2020-01-31", "2020-02-30", "20200131", " "],
    ["", "2030-12-31", "2030-00-01"],
]


def _outcome(parse: object, fields: list[str]) -> object:
    assert callable(parse)
    try:
        return parse(fields)
    except InvalidRecord as exc:
        return ("error", str(exc))


def test_fast_parse_matches_full_parse() -> None:
    # Each column's variants with the other columns at a valid default, so
    # every variant meets both paths once.
    base = [variants[0] for variants in _FIELD_VARIANTS]
    checked = 0
    for column, variants in enumerate(_FIELD_VARIANTS):
        for value in variants:
            fields = list(base)
            fields[column] = value
            fast = _outcome(parse_record_fields_fast, fields)
            assert fast == _outcome(parse_record_fields, fields), (column, value)
            checked += 1
    assert _outcome(parse_record_fields_fast, base) == (
        "UTO", "P", "L898902C3", "1898902C3", "stolen", "2024-02-29", "UTO",
        "REF-1", None, None,
    )  # fmt: skip
    assert _FAST_ROW_RE.fullmatch("\x1f".join(base)) is not None
    # Wrong column counts and a separator inside a field take the full path.
    for fields in (base[:8], [*base, ""], ["UTO\x1fD", *base[1:]]):
        assert _outcome(parse_record_fields_fast, fields) == _outcome(
            parse_record_fields, fields
        )
    assert checked == sum(len(v) for v in _FIELD_VARIANTS)


def _expected_by_line(path: Path) -> dict[int, object]:
    """Parse `path` with csv.reader and parse_record_fields, line by line."""
    expected: dict[int, object] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for fields in reader:
            if fields:
                expected[reader.line_num] = _outcome(parse_record_fields, fields)
    return expected


def test_line_fast_path_matches_csv_path(tmp_path: Path) -> None:
    # Every field variant on its own line, written by csv.writer (which
    # quotes the commas), plus quoting, CRLF and line breaks in a field.
    base = [variants[0] for variants in _FIELD_VARIANTS]
    lines: list[list[str]] = []
    for column, variants in enumerate(_FIELD_VARIANTS):
        for value in variants:
            fields = list(base)
            fields[column] = value
            lines.append(fields)
    lines.append([*base[:6], 'say "x"', "", ""])
    lines.append([*base[:6], "two\nlines", "", ""])
    lines.append([*base[:2], "N2", *base[3:]])
    path = tmp_path / "variants.csv"
    text = ",".join(HEADER) + "\n"
    for index, fields in enumerate(lines):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n" if index % 2 else "\n").writerow(
            fields
        )
        text += buffer.getvalue()
    text += "\n"  # an empty line, skipped but counted
    # Unquoted, so only the csv module's split separates the columns.
    text += "UTO,P,N3,stolen,2024-01-01,UTO,a,b,,\n"
    text += 'UTO,P,N4,stolen,2024-01-01,UTO,a"b,,\n'
    text += ",".join(record_line("UTO", "LAST")) + "\n"
    path.write_text(text, encoding="utf-8", newline="")
    expected = _expected_by_line(path)

    source = _CsvSource(path, delta=False, progress=None, max_rejected=None)
    found: dict[int, object] = dict(source.records())
    found.update({line: ("error", reason) for line, reason in source.rejected})

    assert found == expected
    assert source.rows_read == len(expected) == len(lines) + 3
    assert max(found) == text.count("\n")


def test_empty_file_named_as_empty(sqlite_store: Store, tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(
        ImportFailed, match=r"empty\.csv is empty; nothing was imported"
    ):
        import_csv(sqlite_store, path)
