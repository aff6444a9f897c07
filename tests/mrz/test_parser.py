from __future__ import annotations

import datetime as dt

import pytest

from kiosk.errors import MRZError
from kiosk.mrz import MrzFormat, WarningCode, compute_check_digit, parse, split_name

TODAY = dt.date(2026, 12, 4)

# The specimen documents of ICAO Doc 9303 for the fictional state Utopia.
TD3 = [
    "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<",
    "L898902C36UTO7408122F1204159ZE184226B<<<<<10",
]
TD1 = [
    "I<UTOD231458907<<<<<<<<<<<<<<<",
    "7408122F1204159UTO<<<<<<<<<<<6",
    "ERIKSSON<<ANNA<MARIA<<<<<<<<<<",
]
TD2 = [
    "I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<",
    "D231458907UTO7408122F1204159<<<<<<<6",
]
MRVA = [
    "V<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<",
    "L8988901C4XXX4009078F96121096ZE184226B<<<<<<",
]
MRVB = [
    "V<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<",
    "L8988901C4XXX4009078F9612109<<<<<<<<",
]
FRA_ID = [
    "IDFRADOUEL<<<<<<<<<<<<<<<<<<<<932013",
    "0506932020438CHRISTIANE<<NI2906209F3",
]


@pytest.mark.parametrize(
    ("lines", "fmt"),
    [
        (TD3, MrzFormat.TD3),
        (TD1, MrzFormat.TD1),
        (TD2, MrzFormat.TD2),
        (MRVA, MrzFormat.MRVA),
        (MRVB, MrzFormat.MRVB),
        (FRA_ID, MrzFormat.FRA_ID),
    ],
)
def test_specimens_parse_valid(lines: list[str], fmt: MrzFormat) -> None:
    report = parse(lines, today=TODAY)
    assert report.format is fmt
    assert report.valid, report.checks
    assert report.errors == ()


def test_td3_fields() -> None:
    report = parse(TD3, today=TODAY)
    assert report.document_type == "P"
    assert report.issuing_state == "UTO"
    assert report.document_number == "L898902C3"
    assert report.surname == "ERIKSSON"
    assert report.given_names == "ANNA MARIA"
    assert report.birth_date is not None
    assert report.birth_date.isoformat() == "1974-08-12"
    assert report.expiry_date is not None
    assert report.expiry_date.isoformat() == "2012-04-15"
    assert report.sex == "F"
    assert report.optional_data == "ZE184226B"
    assert set(report.checks) == {
        "document_number",
        "birth_date",
        "expiry_date",
        "optional_data",
        "composite",
    }


def test_specimen_and_expired_are_warnings() -> None:
    report = parse(TD3, today=TODAY)
    assert report.specimen
    assert report.warning_codes() == {WarningCode.SPECIMEN, WarningCode.EXPIRED}
    assert report.valid


def test_fra_id_fields() -> None:
    report = parse(FRA_ID, today=TODAY)
    assert report.document_number == "050693202043"
    assert report.surname == "DOUEL"
    assert report.given_names == "CHRISTIANE NI"
    assert report.expiry_date is None
    assert report.birth_date is not None
    assert report.birth_date.isoformat() == "1929-06-20"


def test_td1_long_document_number_overflows() -> None:
    # A 12-character number: 9 in the number field, 3 more plus its check
    # digit in the optional data, `<` in the check-digit position.
    number = "D23145890774"
    check = compute_check_digit(number)
    line1 = f"I<UTO{number[:9]}<{number[9:]}{check}".ljust(30, "<")
    composite_text = line1[5:30] + "7408122" + "1204159" + "<" * 11
    line2 = "7408122F1204159UTO" + "<" * 11 + compute_check_digit(composite_text)
    report = parse([line1, line2, TD1[2]], today=TODAY)
    assert report.document_number == number
    assert report.checks["document_number"]
    assert report.valid


def test_failed_check_digit_is_reported_per_check() -> None:
    broken = [TD3[0], TD3[1][:13] + "7408123" + TD3[1][20:]]
    report = parse(broken, today=TODAY)
    assert not report.valid
    assert report.checks["birth_date"] is False
    assert report.checks["document_number"] is True
    assert WarningCode.CHECK_DIGIT_FAILED in report.warning_codes()


def test_impossible_date_marks_only_that_field() -> None:
    line2 = TD3[1][:13] + "740231" + compute_check_digit("740231") + TD3[1][20:]
    report = parse([TD3[0], line2], today=TODAY)
    assert "birth_date" in report.invalid_fields
    assert report.birth_date is None
    assert report.document_number == "L898902C3"
    assert report.expiry_date is not None


def test_unknown_day_and_month_are_legal() -> None:
    line2 = TD3[1][:13] + "74<<<<" + compute_check_digit("74<<<<") + TD3[1][20:]
    report = parse([TD3[0], line2], today=TODAY)
    assert report.birth_date is not None
    assert report.birth_date.isoformat() == "1974"
    assert report.errors == ()


def test_birth_century_is_most_recent_past() -> None:
    line2 = TD3[1][:13] + "250101" + compute_check_digit("250101") + TD3[1][20:]
    assert parse([TD3[0], line2], today=TODAY).birth_date.isoformat() == "2025-01-01"  # type: ignore[union-attr]
    line2 = TD3[1][:13] + "270101" + compute_check_digit("270101") + TD3[1][20:]
    assert parse([TD3[0], line2], today=TODAY).birth_date.isoformat() == "1927-01-01"  # type: ignore[union-attr]


def test_expiry_century_allows_future_documents() -> None:
    line2 = TD3[1][:21] + "350101" + compute_check_digit("350101") + TD3[1][28:]
    report = parse([TD3[0], line2], today=TODAY)
    assert report.expiry_date is not None
    assert report.expiry_date.year == 2035


@pytest.mark.parametrize(
    "state", ["D<<", "XXA", "XXB", "XXC", "XXX", "UNO", "UNA", "UNK", "EUE"]
)
def test_special_state_codes_are_known(state: str) -> None:
    lines = [TD3[0][:2] + state + TD3[0][5:], TD3[1]]
    report = parse(lines, today=TODAY)
    assert report.issuing_state == state
    assert WarningCode.UNKNOWN_STATE not in report.warning_codes()


def test_unknown_state_is_a_warning() -> None:
    report = parse([TD3[0][:2] + "QQQ" + TD3[0][5:], TD3[1]], today=TODAY)
    assert WarningCode.UNKNOWN_STATE in report.warning_codes()
    assert report.valid


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ERIKSSON<<ANNA<MARIA<<<<", ("ERIKSSON", "ANNA MARIA")),
        ("MADONNA<<<<<<<<<<<", ("MADONNA", "")),
        ("<<ANNA<<<<<<<", ("", "ANNA")),
        ("DE<LA<CRUZ<<JOSE<<<<", ("DE LA CRUZ", "JOSE")),
        ("TRUNCATEDVERYLONGNAMEWITHOUTEND", ("TRUNCATEDVERYLONGNAMEWITHOUTEND", "")),
    ],
)
def test_split_name(raw: str, expected: tuple[str, str]) -> None:
    assert split_name(raw) == expected


@pytest.mark.parametrize("sex", ["M", "F", "X"])
def test_sex_values(sex: str) -> None:
    line2 = TD3[1][:20] + sex + TD3[1][21:]
    assert parse([TD3[0], line2], today=TODAY).sex == sex


def test_unspecified_sex_is_none() -> None:
    line2 = TD3[1][:20] + "<" + TD3[1][21:]
    assert parse([TD3[0], line2], today=TODAY).sex is None


def test_empty_optional_data_accepts_filler_check_digit() -> None:
    body = "L898902C36UTO7408122F1204159" + "<" * 14 + "<"
    composite = compute_check_digit(body[0:10] + body[13:20] + body[21:43])
    report = parse([TD3[0], body + composite], today=TODAY)
    assert report.checks["optional_data"]
    assert report.valid


def test_lowercase_and_whitespace_are_normalised() -> None:
    report = parse(["  " + TD3[0].lower() + " \r", TD3[1] + "\n"], today=TODAY)
    assert report.valid


def test_text_block_splits_lines() -> None:
    assert parse("\n".join(TD1) + "\n", today=TODAY).format is MrzFormat.TD1


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "no MRZ text"),
        ([TD3[0]], "unrecognised MRZ shape"),
        ([TD3[0], TD3[1][:-1]], "different lengths"),
        ([TD3[0], TD3[1][:10] + "_" + TD3[1][11:]], "could not read"),
        ([TD3[0], TD3[1][:10] + " " + TD3[1][11:]], "line 2 position 11"),
        ([TD3[0], TD3[1][:10] + "é" + TD3[1][11:]], "only A-Z"),
        (["A" * 40, "B" * 40], "unrecognised MRZ shape"),
    ],
)
def test_malformed_text_raises(lines: list[str], message: str) -> None:
    with pytest.raises(MRZError, match=message):
        parse(lines, today=TODAY)


def test_error_message_never_quotes_the_line() -> None:
    bad = [TD3[0], TD3[1][:10] + "#" + TD3[1][11:]]
    with pytest.raises(MRZError) as info:
        parse(bad, today=TODAY)
    assert "L898902C3" not in str(info.value)
    assert "ERIKSSON" not in str(info.value)
