"""Invented specimen MRZs for the simulator and tests.

They are the ICAO Doc 9303 examples for the fictional state Utopia (UTO):
Part 4 (TD3 passport), Part 5 (TD1 card) and Part 6 (TD2 card). No real
person or document is behind them.
"""

from __future__ import annotations

SPECIMENS: dict[str, list[str]] = {
    "td3": [
        "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<",
        "L898902C36UTO7408122F1204159ZE184226B<<<<<10",
    ],
    "td1": [
        "I<UTOD231458907<<<<<<<<<<<<<<<",
        "7408122F1204159UTO<<<<<<<<<<<6",
        "ERIKSSON<<ANNA<MARIA<<<<<<<<<<",
    ],
    "td2": [
        "I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<",
        "D231458907UTO7408122F1204159<<<<<<<6",
    ],
}


def specimen_documents() -> list[list[str]]:
    return [list(lines) for lines in SPECIMENS.values()]


def parse_mrz_file(text: str) -> list[list[str]]:
    """Split text into documents: MRZ lines, documents separated by blank lines.

    Lines starting with # are comments."""
    documents: list[list[str]] = []
    current: list[str] = []
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if line.startswith("#"):
            continue
        if not line:
            if current:
                documents.append(current)
            current = []
            continue
        current.append(line)
    if current:
        documents.append(current)
    return documents
