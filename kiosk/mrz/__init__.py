"""MRZ text: check digits, format layouts, parsing, repair and composition."""

from kiosk.mrz.checkdigit import MRZ_ALPHABET, compute_check_digit, is_check_digit_valid
from kiosk.mrz.compose import DocumentFields, compose, random_fields
from kiosk.mrz.formats import LAYOUTS, CharClass, Layout, MrzFormat, detect_format
from kiosk.mrz.model import FieldError, MrzReport, MrzWarning, PartialDate, WarningCode
from kiosk.mrz.parser import normalize_lines, parse, split_name, split_text
from kiosk.mrz.repair import (
    Correction,
    RepairOutcome,
    RepairStatus,
    repair,
    repair_text,
)

__all__ = [
    "LAYOUTS",
    "MRZ_ALPHABET",
    "CharClass",
    "Correction",
    "DocumentFields",
    "FieldError",
    "Layout",
    "MrzFormat",
    "MrzReport",
    "MrzWarning",
    "PartialDate",
    "RepairOutcome",
    "RepairStatus",
    "WarningCode",
    "compose",
    "compute_check_digit",
    "detect_format",
    "is_check_digit_valid",
    "normalize_lines",
    "parse",
    "random_fields",
    "repair",
    "repair_text",
    "split_name",
    "split_text",
]
