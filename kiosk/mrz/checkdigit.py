"""ICAO 9303 check digits.

Each character gets a value (digits 0-9 as themselves, A-Z as 10-35, the
filler `<` as 0); the values are multiplied by the repeating weights 7, 3, 1,
summed, and the sum modulo 10 is the check digit.

>>> compute_check_digit("L898902C3")
'6'
"""

from __future__ import annotations

import operator

from kiosk.errors import MRZError

MRZ_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<")
_VALUES = {
    **{str(d): d for d in range(10)},
    **{chr(ord("A") + i): 10 + i for i in range(26)},
    "<": 0,
}
# The 7-3-1 weights, laid out for the longest checked text (a TD1 composite
# covers 59 characters). Repair checks thousands of candidate readings, so
# the weights are not recomputed for each character.
_WEIGHTS = (7, 3, 1) * 40


def _invalid(char: str) -> MRZError:
    return MRZError(f"invalid MRZ character {char!r}: allowed are A-Z, 0-9 and '<'")


def char_value(char: str) -> int:
    """Return the check-digit value of one MRZ character."""
    try:
        return _VALUES[char]
    except KeyError:
        raise _invalid(char) from None


def compute_check_digit(text: str) -> str:
    """Return the check digit of `text` as a one-character string."""
    if len(text) > len(_WEIGHTS):
        weights: tuple[int, ...] = (7, 3, 1) * (len(text) // 3 + 1)
    else:
        weights = _WEIGHTS
    try:
        total = sum(map(operator.mul, map(_VALUES.__getitem__, text), weights))
    except KeyError as exc:
        raise _invalid(str(exc.args[0])) from None
    return str(total % 10)


def is_check_digit_valid(text: str, check: str) -> bool:
    """Tell whether `check` is the check digit of `text`.

    A field made only of fillers may carry `<` as its check digit, which
    ICAO 9303 allows for empty optional data.
    """
    if check == "<":
        return set(text) <= {"<"}
    return check.isdigit() and check.isascii() and compute_check_digit(text) == check
