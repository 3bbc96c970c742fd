"""Whole numbers written in ASCII digits only.

Python's `int()` and the regex class `\\d` accept every Unicode decimal digit
(`int("١") == 1`) and `int()` accepts `_` separators: a request parameter or an
INI value must never mean a number by way of another script.
"""

from __future__ import annotations

import re

ASCII_INT = re.compile(r"[+-]?[0-9]+")
ASCII_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def parse_int(text: str, max_digits: int = 20) -> int:
    """An optionally signed run of ASCII digits; ValueError for anything else."""
    text = text.strip(" \t")
    if len(text) > max_digits + 1 or not ASCII_INT.fullmatch(text):
        raise ValueError(f"not a whole number in ASCII digits: {text[:40]!r}")
    return int(text)


def parse_float(text: str) -> float:
    """A decimal number in ASCII digits (no inf, nan or `_`); ValueError otherwise."""
    text = text.strip(" \t")
    if len(text) > 40 or not ASCII_NUMBER.fullmatch(text):
        raise ValueError(f"not a number in ASCII digits: {text[:40]!r}")
    return float(text)
