"""Write the bundled sample images, their ground truth and the sample list.

    python -m tools.make_fixtures [--out-dir DIR]

writes DIR/fixtures/images/*.jpg|png, DIR/fixtures/images/truth.json and
DIR/fixtures/sltd_sample.csv (DIR defaults to the repository root). Every
document is invented. The output depends only on the code and the library
versions: seeds are fixed, JPEG quality is part of each fixture's damage and
nothing records a time, so running it twice gives identical files.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import io
import json
import logging
import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import cv2
import numpy as np

from backend.records import fold_number, normalize_number
from kiosk import mrz
from tools.render import (
    Damage,
    DamageLevel,
    Image8,
    RenderError,
    render_document,
    render_no_mrz,
)

logger = logging.getLogger(__name__)

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
CSV_HEADER: Final = (
    "issuing_state",
    "document_type",
    "document_number",
    "status",
    "reported_on",
    "reporting_country",
    "reference",
    "issue_date",
    "expiry_date",
)
STATUSES: Final = ("stolen", "lost", "revoked", "invalidated", "stolen_blank")
SAMPLE_RECORDS: Final = 300
# Sample images are kept below this size so the repository stays small.
FIXTURE_MAX_FRAME_PX: Final = 1280
PNG_MAX_FRAME_PX: Final = 900

# ICAO Doc 9303's own example passport of the fictional state Utopia.
UTO_SPECIMEN: Final = (
    "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<",
    "L898902C36UTO7408122F1204159ZE184226B<<<<<10",
)


def _document(
    fmt: str,
    code: str,
    state: str,
    number: str,
    names: tuple[str, str],
    nationality: str,
    birth: str,
    sex: str,
    expiry: str = "<<<<<<",
    optional: str = "",
) -> mrz.DocumentFields:
    surname, given = names
    return mrz.DocumentFields(
        mrz.MrzFormat(fmt),
        code,
        state,
        number,
        surname,
        given,
        nationality,
        birth,
        sex,
        expiry,
        optional,
    )


@dataclass(frozen=True, slots=True)
class FixtureSpec:
    """One sample image: its content, damage and expected lookup result.

    `content` is the document, or bare MRZ lines. `lookup` is what the
    bundled list returns for the document: a HIT record with `status`, a
    POSSIBLE record whose number differs only by O/0 or I/1, or NO_HIT.
    """

    name: str
    content: mrz.DocumentFields | tuple[str, ...]
    level: DamageLevel = "light"
    quarter_turns: int = 0
    lookup: str = "NO_HIT"
    status: str | None = None


# The documents are written out rather than drawn from kiosk.mrz.random_fields,
# so changes to that generator do not change the committed samples.
FIXTURES: Final[tuple[FixtureSpec, ...]] = (
    FixtureSpec(
        "td3-passport-light.jpg",
        _document("TD3", "PD", "UTO", "W3180689", ("GALLAGHER", "UMAR"), "UTO",
                  "900710", "<", "300124"),
        lookup="HIT",
        status="stolen",
    ),
    FixtureSpec(
        "td3-passport-moderate.jpg",
        _document("TD3", "PD", "KEN", "W66177619", ("WINTERBOTTOM", "CLARA"), "KEN",
                  "511020", "M", "290615", "1509775"),
        "moderate",
    ),
    FixtureSpec(
        "td3-passport-upside-down.jpg",
        _document("TD3", "P<", "BRA", "YM7170293", ("NAKAMURA", "OLGA"), "BRA",
                  "740725", "M", "240305", "9928385"),
        quarter_turns=2,
    ),
    FixtureSpec("td3-uto-specimen.jpg", UTO_SPECIMEN),
    FixtureSpec(
        "td1-card-light.jpg",
        # The 0 and 1 give the listed record room to differ only by O/0 or I/1.
        _document("TD1", "IR", "POL", "K99908721", ("JANSSEN", "NILS"), "POL",
                  "960308", "M", "270209"),
        lookup="POSSIBLE",
        status="lost",
    ),
    FixtureSpec(
        "td1-card-long-number.jpg",
        # Longer than 9 characters, so the number overflows into the
        # optional data.
        _document("TD1", "IR", "NLD", "YHG467465228", ("DUBOIS", "RUTH"), "NLD",
                  "871107", "F", "250214"),
        "moderate",
        lookup="HIT",
        status="lost",
    ),
    FixtureSpec(
        "td1-card-sideways.jpg",
        _document("TD1", "IR", "FRA", "S90228427", ("PETERSEN", "LEON"), "FRA",
                  "540424", "<", "321126", "9546"),
        "moderate",
        quarter_turns=1,
    ),
    FixtureSpec(
        "td2-card-light.png",
        _document("TD2", "AC", "AUS", "U65937061", ("XAVIER", ""), "AUS",
                  "541023", "M", "330517"),
        lookup="HIT",
        status="revoked",
    ),
    FixtureSpec(
        "td2-card-sideways.jpg",
        _document("TD2", "I<", "NLD", "55508027", ("WINTERBOTTOM", "UMAR"), "NLD",
                  "040715", "F", "270911"),
        "moderate",
        quarter_turns=3,
    ),
    FixtureSpec(
        "mrva-visa-light.jpg",
        _document("MRVA", "V<", "SWE", "CQ9882763", ("DE LA CRUZ", "INES"), "CAN",
                  "020513", "F", "350819"),
    ),
    FixtureSpec(
        "mrvb-visa-moderate.jpg",
        _document("MRVB", "V<", "NLD", "N06865093", ("EKSTROM", "RUTH"), "NLD",
                  "870114", "X", "320224"),
        "moderate",
    ),
    FixtureSpec(
        "fra-id-light.jpg",
        _document("FRA_ID", "ID", "FRA", "131082B17074", ("BALOGUN", "ANNA MARIA"),
                  "FRA", "900309", "M", optional="091828"),
    ),
    FixtureSpec(
        "fra-id-moderate.jpg",
        _document("FRA_ID", "ID", "FRA", "210419B10830", ("NAKAMURA", "GRETA"),
                  "FRA", "681213", "F", optional="025418"),
        "moderate",
    ),
)  # fmt: skip
# The document inside the truncated file, of which only the top decodes.
BROKEN_DOCUMENT: Final = _document(
    "TD3", "P<", "ITA", "YA4417302", ("ROSSETTI", "HUGO"), "ITA", "811130", "M",
    "310402",
)  # fmt: skip
NO_MRZ_NAME: Final = "no-mrz.jpg"
BROKEN_NAME: Final = "broken-truncated.jpg"
# Share of the encoded JPEG kept in the broken file: the header and the top
# of the picture decode, the rest is missing. OpenCV 5.1 still returns an
# image for it (grey below the cut, a warning on stderr), while Pillow 13
# raises OSError on load, so a reader has to look for the damage itself.
BROKEN_KEEP: Final = 0.4


def _encode(name: str, image: Image8, quality: int | None) -> bytes:
    if name.endswith(".png"):
        ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    else:
        params = [cv2.IMWRITE_JPEG_QUALITY, quality or 90]
        ok, data = cv2.imencode(".jpg", image, params)
    if not ok:
        raise RenderError(f"encoding {name} failed")
    return bytes(np.asarray(data).tobytes())


def render_fixture(spec: FixtureSpec) -> tuple[bytes, dict[str, Any]]:
    """Render one sample; return the encoded file and its truth entry."""
    rng = random.Random(f"fixture:{spec.name}")
    damage = Damage.sample(rng, spec.level, quarter_turns=spec.quarter_turns)
    # The JPEG step happens once, when the file is written, at the sampled quality.
    quality = damage.jpeg_quality
    max_frame = PNG_MAX_FRAME_PX if spec.name.endswith(".png") else FIXTURE_MAX_FRAME_PX
    damage = dataclasses.replace(
        damage,
        jpeg_quality=None,
        max_frame_px=max_frame,
        noise_sigma=0.0 if spec.name.endswith(".png") else damage.noise_sigma,
    )
    source: Any = spec.content
    if isinstance(source, tuple):
        source = list(source)
    image, truth = render_document(source, rng, damage)
    if truth["fields"] is None:
        truth["document_number"] = mrz.parse(truth["lines"]).document_number
    saved_quality = None if spec.name.endswith(".png") else quality
    truth["damage"]["jpeg_quality"] = saved_quality
    truth["level"] = spec.level
    truth["lookup"] = {"result": spec.lookup, "status": spec.status}
    return _encode(spec.name, image, saved_quality), truth


def render_special(name: str) -> tuple[bytes, dict[str, Any]]:
    """Render the image without an MRZ, or the truncated file."""
    rng = random.Random(f"fixture:{name}")
    if name == NO_MRZ_NAME:
        damage = Damage.sample(rng, "light")
        quality = damage.jpeg_quality
        damage = dataclasses.replace(
            damage, jpeg_quality=None, max_frame_px=FIXTURE_MAX_FRAME_PX
        )
        image, truth = render_no_mrz(rng, damage)
        truth["error"] = "no_mrz"
        truth["lookup"] = None
        return _encode(name, image, quality), truth
    if name == BROKEN_NAME:
        damage = dataclasses.replace(
            Damage.sample(rng, "light"), jpeg_quality=None, max_frame_px=960
        )
        image, _ = render_document(BROKEN_DOCUMENT, rng, damage)
        data = _encode(name, image, 85)
        truth = {
            "format": None,
            "lines": None,
            "fields": None,
            "document_number": None,
            "error": "truncated",
            "lookup": None,
        }
        return data[: int(len(data) * BROKEN_KEEP)], truth
    raise ValueError(
        f"unknown special fixture {name!r}: expected {NO_MRZ_NAME} or {BROKEN_NAME}"
    )


# --------------------------------------------------------------------------
# The sample list of reported documents


def _random_date(rng: random.Random, start: dt.date, end: dt.date) -> dt.date:
    return start + dt.timedelta(days=rng.randint(0, (end - start).days))


def _add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        # 29 February in a year without one.
        return day.replace(year=day.year + years, day=28)


def _document_type(code: str) -> str:
    return code.rstrip("<") or code[0]


def _sample_row(
    rng: random.Random,
    state: str,
    document_type: str,
    number: str,
    status: str,
    serial: int,
) -> list[str]:
    reported = _random_date(rng, dt.date(2016, 1, 1), dt.date(2025, 12, 31))
    issue = expiry = ""
    if status != "stolen_blank":
        # A blank document was never issued, so it has neither date.
        issued_on = _random_date(rng, reported - dt.timedelta(days=9 * 365), reported)
        issue = issued_on.isoformat()
        expiry = _add_years(issued_on, rng.choice((5, 10))).isoformat()
    reporter = state if rng.random() < 0.85 else rng.choice(_REPORTERS)
    return [
        state,
        document_type,
        number,
        status,
        reported.isoformat(),
        reporter,
        f"SMP-{reported.year}-{serial:05d}",
        issue,
        expiry,
    ]


_REPORTERS: Final = ("UTO", "NLD", "SWE", "ITA", "CAN", "KEN", "JPN")
_SAMPLE_STATES: Final = (
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
_SAMPLE_TYPES: Final = ("P", "P", "P", "PK", "I", "ID", "ID", "AC", "V")


def build_sample_rows(documents: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Build the sample list rows: invented records plus the intended matches.

    `documents` are fixture truth entries with a `lookup` expectation. Random
    records are drawn so that none of them matches any fixture, exactly or
    after folding. Raises ValueError when a POSSIBLE fixture has no 0 or 1
    in its number to confuse.
    """
    rng = random.Random("sltd-sample")
    taken_folded = {
        (
            doc["fields"]["issuing_state"] if doc["fields"] else doc["lines"][0][2:5],
            fold_number(normalize_number(doc["document_number"])),
        )
        for doc in documents
    }
    rows: list[list[str]] = []
    seen: set[tuple[str, str]] = set()
    statuses = rng.choices(STATUSES, weights=(45, 30, 10, 10, 5), k=SAMPLE_RECORDS)
    for serial, status in enumerate(statuses, start=1):
        while True:
            state = rng.choice(_SAMPLE_STATES)
            length = rng.choice((8, 9, 9, 9))
            letters = rng.choice((0, 1, 2))
            number = "".join(
                rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(letters)
            )
            number += "".join(rng.choice("0123456789") for _ in range(length - letters))
            folded = fold_number(number)
            if (state, folded) not in taken_folded and (state, folded) not in seen:
                break
        seen.add((state, folded))
        rows.append(
            _sample_row(rng, state, rng.choice(_SAMPLE_TYPES), number, status, serial)
        )

    for doc in documents:
        expected = doc["lookup"]
        if expected is None or expected["result"] == "NO_HIT":
            continue
        fields = doc["fields"]
        state = fields["issuing_state"]
        number = normalize_number(doc["document_number"])
        if expected["result"] == "POSSIBLE":
            listed = _confusable(number)
            if listed == number or fold_number(listed) != fold_number(number):
                raise ValueError(
                    "POSSIBLE fixture needs a 0 or 1 in its document number"
                )
            number = listed
        serial = len(rows) + 1
        row = _sample_row(
            rng,
            state,
            _document_type(fields["document_code"]),
            number,
            expected["status"],
            serial,
        )
        rows.insert(rng.randint(0, len(rows)), row)
    return rows


def _confusable(number: str) -> str:
    """Replace the last 0 with O, or else the last 1 with I, as a clerk might."""
    for digit, letter in (("0", "O"), ("1", "I")):
        position = number.rfind(digit)
        if position >= 0:
            return number[:position] + letter + number[position + 1 :]
    return number


def write_sample_csv(path: Path, rows: Iterable[list[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


# --------------------------------------------------------------------------
# Entry point


def build_fixtures(out_dir: Path, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Write the fixtures below `out_dir`; return the truth mapping.

    `names` restricts which image files are written. Every fixture is still
    rendered, because truth.json and the sample list cover all of them.
    """
    images_dir = out_dir / "fixtures" / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    logger.info("building fixtures in %s", out_dir)
    truth: dict[str, Any] = {}
    wanted = set(names) if names is not None else None
    for spec in FIXTURES:
        data, entry = render_fixture(spec)
        truth[spec.name] = entry
        if wanted is None or spec.name in wanted:
            (images_dir / spec.name).write_bytes(data)
    for name in (NO_MRZ_NAME, BROKEN_NAME):
        data, entry = render_special(name)
        truth[name] = entry
        if wanted is None or name in wanted:
            (images_dir / name).write_bytes(data)
    documents = [truth[spec.name] for spec in FIXTURES]
    write_sample_csv(
        out_dir / "fixtures" / "sltd_sample.csv", build_sample_rows(documents)
    )
    ordered = {name: truth[name] for name in sorted(truth)}
    (images_dir / "truth.json").write_text(
        json.dumps(ordered, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    return ordered


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.make_fixtures", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=REPO_ROOT,
        help="directory that receives fixtures/images and fixtures/sltd_sample.csv "
        "(default: the repository root)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        truth = build_fixtures(args.out_dir)
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    images = args.out_dir / "fixtures" / "images"
    total = sum(path.stat().st_size for path in images.iterdir())
    print(
        f"wrote {len(truth)} images and truth.json to {images} ({total / 1e6:.2f} MB)"
    )
    print(f"wrote {args.out_dir / 'fixtures' / 'sltd_sample.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
