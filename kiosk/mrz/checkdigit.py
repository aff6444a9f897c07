"""ICAO 9303 check digits.

Each character gets a value (digits 0-9 as themselves, A-Z as 10-35, the
filler `<` as 0); the values are multiplied by the repeating weights 7, 3, 1,
summed, and the sum modulo 10 is the check digit.

>>> compute_check_digit("L898902C3")
'6'
"""

from __future__ import annotations

from kiosk.errors import MRZError

MRZ_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<")
_WEIGHTS = (7, 3, 1)


def char_value(char: str) -> int:
    """Return the check-digit value of one MRZ character."""
    if char.isdigit() and char.isascii():
        return ord(char) - ord("0")
    if "A" <= char <= "Z":
        return ord(char) - ord("A") + 10
    if char == "<":
        return 0
    raise MRZError(f"invalid MRZ character {char!r}: allowed are A-Z, 0-9 and '<'")


def compute_check_digit(text: str) -> str:
    """Return the check digit of `text` as a one-character string."""
    total = sum(char_value(c) * _WEIGHTS[i % 3] for i, c in enumerate(text))
    return str(total % 10)


def is_check_digit_valid(text: str, check: str) -> bool:
    """Tell whether `check` is the check digit of `text`.

    A field made only of fillers may carry `<` as its check digit, which
    ICAO 9303 allows for empty optional data.
    """
    if check == "<":
        return set(text) <= {"<"}
    return check.isdigit() and check.isascii() and compute_check_digit(text) == check
