"""Build valid MRZ lines from document fields, and invent random documents.

Used by the test suite (round trips), the image renderer and the scanner
simulator. Invented documents only: names come from a short fictional list.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from kiosk.errors import MRZError
from kiosk.mrz.checkdigit import compute_check_digit
from kiosk.mrz.formats import LAYOUTS, MrzFormat


@dataclass(frozen=True, slots=True)
class DocumentFields:
    """The printed content of a document, before it is laid out as MRZ.

    Dates are `YYMMDD` strings so that unknown parts (`<<`) can be expressed.
    `document_number` may be longer than 9 characters for TD1 and TD2, which
    overflow into the optional data as ICAO 9303 describes.
    """

    format: MrzFormat
    document_code: str
    issuing_state: str
    document_number: str
    surname: str
    given_names: str
    nationality: str
    birth_date: str
    sex: str
    expiry_date: str = "<<<<<<"
    optional_data: str = ""
    optional_data_2: str = ""


def _pad(text: str, width: int) -> str:
    if len(text) > width:
        raise MRZError(f"field of {len(text)} characters does not fit in {width}")
    return text + "<" * (width - len(text))


def _name_field(surname: str, given: str, width: int) -> str:
    primary = surname.replace(" ", "<").replace("-", "<")
    secondary = given.replace(" ", "<").replace("-", "<")
    text = primary + ("<<" + secondary if secondary else "")
    # Truncate long names as ICAO allows: the field simply ends.
    return _pad(text[:width], width)


def _check(text: str) -> str:
    return compute_check_digit(text)


def compose(fields: DocumentFields) -> list[str]:
    """Lay out `fields` as MRZ lines with every check digit computed."""
    fmt = fields.format
    code = _pad(fields.document_code, 2)
    state = _pad(fields.issuing_state, 3)
    nat = _pad(fields.nationality, 3)
    sex = fields.sex or "<"
    number = fields.document_number

    if fmt is MrzFormat.FRA_ID:
        line1 = code + state + _pad(fields.surname.replace(" ", "<"), 25)
        line1 += _pad(fields.optional_data, 6)
        num = _pad(number, 12)
        given = _pad(fields.given_names.replace(" ", "<<")[:14], 14)
        head = (
            num
            + _check(num)
            + given
            + fields.birth_date
            + _check(fields.birth_date)
            + sex
        )
        line2 = head + _check(line1 + head)
        return [line1, line2]

    if fmt is MrzFormat.TD1:
        num_field, num_check, opt1 = _number_with_overflow(
            number, fields.optional_data, 15
        )
        line1 = code + state + num_field + num_check + opt1
        birth = fields.birth_date + _check(fields.birth_date)
        expiry = fields.expiry_date + _check(fields.expiry_date)
        opt2 = _pad(fields.optional_data_2, 11)
        composite = _check(line1[5:30] + birth + expiry + opt2)
        line2 = birth + sex + expiry + nat + opt2 + composite
        line3 = _name_field(fields.surname, fields.given_names, 30)
        return [line1, line2, line3]

    length = LAYOUTS[fmt].line_length
    line1 = code + state + _name_field(fields.surname, fields.given_names, length - 5)
    birth = fields.birth_date + _check(fields.birth_date)
    expiry = fields.expiry_date + _check(fields.expiry_date)
    if fmt is MrzFormat.TD3:
        num_field, num_check = _pad(number, 9), _check(_pad(number, 9))
        personal = _pad(fields.optional_data, 14)
        personal_check = "<" if set(personal) == {"<"} else _check(personal)
        body = (
            num_field
            + num_check
            + nat
            + birth
            + sex
            + expiry
            + personal
            + personal_check
        )
        composite = _check(body[0:10] + body[13:20] + body[21:43])
        return [line1, body + composite]
    if fmt is MrzFormat.TD2:
        num_field, num_check, opt = _number_with_overflow(
            number, fields.optional_data, 7
        )
        body = num_field + num_check + nat + birth + sex + expiry + opt
        composite = _check(body[0:10] + body[13:20] + body[21:35])
        return [line1, body + composite]
    # MRV-A and MRV-B: no composite check digit.
    num_field, num_check = _pad(number, 9), _check(_pad(number, 9))
    opt = _pad(fields.optional_data, length - 28)
    return [line1, num_field + num_check + nat + birth + sex + expiry + opt]


def _number_with_overflow(
    number: str, optional: str, opt_width: int
) -> tuple[str, str, str]:
    """Return (9-character number field, its check digit, optional data field)."""
    if len(number) <= 9:
        field = _pad(number, 9)
        return field, _check(field), _pad(optional, opt_width)
    overflow = number[9:] + _check(number)
    return (
        number[:9],
        "<",
        _pad(overflow + "<" + optional if optional else overflow, opt_width),
    )


# Fictional names for invented documents.
_SURNAMES = (
    "ANDERSEN",
    "BALOGUN",
    "CASTELLANO",
    "DUBOIS",
    "EKSTROM",
    "FAROUK",
    "GALLAGHER",
    "HOLLOWAY",
    "IVANOVA",
    "JANSSEN",
    "KOWALSKA",
    "LINDQVIST",
    "MARCHETTI",
    "NAKAMURA",
    "OKONKWO",
    "PETERSEN",
    "QUINTERO",
    "ROSSETTI",
    "SANTIAGO",
    "TANAKA",
    "UDOKA",
    "VASQUEZ",
    "WINTERBOTTOM",
    "XAVIER",
    "YILMAZ",
    "ZIELINSKI",
    "O BRIEN",
    "DE LA CRUZ",
)
_GIVEN = (
    "ADA",
    "BORIS",
    "CLARA",
    "DMITRI",
    "ELENA",
    "FELIX",
    "GRETA",
    "HUGO",
    "INES",
    "JONAS",
    "KARIN",
    "LEON",
    "MAREN",
    "NILS",
    "OLGA",
    "PAVEL",
    "RUTH",
    "SVEN",
    "TILDA",
    "UMAR",
    "VERA",
    "WILLEM",
    "YARA",
    "ZOE",
    "ANNA MARIA",
    "JEAN PAUL",
)
_STATES = (
    "UTO",
    "D<<",
    "FRA",
    "NLD",
    "SWE",
    "ITA",
    "POL",
    "CAN",
    "AUS",
    "JPN",
    "BRA",
    "KEN",
)
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DIGITS = "0123456789"


def _yymmdd(day: dt.date) -> str:
    return day.strftime("%y%m%d")


def random_fields(
    rng: random.Random, fmt: MrzFormat | str, *, today: dt.date | None = None
) -> DocumentFields:
    """Invent a document of format `fmt` with fictional content."""
    fmt = MrzFormat(fmt)
    today = today or dt.date(2026, 1, 1)
    birth = today - dt.timedelta(days=rng.randint(18 * 365, 80 * 365))
    expiry = today + dt.timedelta(days=rng.randint(-2 * 365, 10 * 365))
    state = rng.choice(_STATES)
    nationality = state if rng.random() < 0.8 else rng.choice(_STATES)
    sex = rng.choice("MFMFX<")
    surname = rng.choice(_SURNAMES)
    given = rng.choice(_GIVEN) if rng.random() < 0.95 else ""

    def alnum(length: int, letters: int) -> str:
        head = "".join(rng.choice(_LETTERS) for _ in range(letters))
        return head + "".join(rng.choice(_DIGITS) for _ in range(length - letters))

    if fmt is MrzFormat.FRA_ID:
        issued = today - dt.timedelta(days=rng.randint(365, 14 * 365))
        number = (
            issued.strftime("%y%m") + f"{rng.randint(1, 95):02d}" + rng.choice("0123AB")
        )
        number += "".join(rng.choice(_DIGITS) for _ in range(5))
        return DocumentFields(
            fmt,
            "ID",
            "FRA",
            number,
            surname,
            given or "MARIE",
            "FRA",
            _yymmdd(birth),
            rng.choice("MF"),
            optional_data=f"{rng.randint(1, 95):03d}{rng.randint(0, 999):03d}",
        )
    code = {
        MrzFormat.TD3: rng.choice(("P<", "P<", "PK", "PD")),
        MrzFormat.MRVA: "V<",
        MrzFormat.MRVB: "V<",
        MrzFormat.TD1: rng.choice(("I<", "ID", "AC", "IR")),
        MrzFormat.TD2: rng.choice(("I<", "ID", "AC")),
    }[fmt]
    if fmt in (MrzFormat.TD1, MrzFormat.TD2) and rng.random() < 0.15:
        number = alnum(rng.randint(10, 12), 3)
    else:
        number = alnum(rng.choice((8, 9, 9, 9)), rng.choice((0, 1, 2)))
    optional = ""
    if fmt is MrzFormat.TD3 and rng.random() < 0.5:
        optional = "".join(rng.choice(_DIGITS) for _ in range(rng.randint(6, 14)))
    if fmt is MrzFormat.TD1 and rng.random() < 0.3:
        optional = alnum(rng.randint(3, 6), 0)
    return DocumentFields(
        fmt,
        code,
        state,
        number,
        surname,
        given,
        nationality,
        _yymmdd(birth),
        sex,
        _yymmdd(expiry),
        optional,
    )
