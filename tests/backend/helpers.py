"""CSV builders shared by the backend and lookup tests."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

HEADER = [
    "issuing_state",
    "document_type",
    "document_number",
    "status",
    "reported_on",
    "reporting_country",
    "reference",
    "issue_date",
    "expiry_date",
]


def record_line(
    state: str,
    number: str,
    *,
    doc_type: str = "P",
    status: str = "stolen",
    reported_on: str = "2024-03-01",
    reporting_country: str = "FRA",
    reference: str = "REF-1",
    issue_date: str = "",
    expiry_date: str = "",
) -> list[str]:
    return [
        state,
        doc_type,
        number,
        status,
        reported_on,
        reporting_country,
        reference,
        issue_date,
        expiry_date,
    ]


def write_csv(
    path: Path, lines: Sequence[Sequence[str]], *, delta: bool = False
) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["op", *HEADER] if delta else HEADER)
        writer.writerows(lines)
    return path
