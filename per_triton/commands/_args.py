"""argparse value types shared by the subcommands: errors name the flag (exit 2)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def int_at_least(low: int) -> Callable[[str], int]:
    """argparse type: an integer ``>= low`` (the error names the flag)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            kind = "a positive integer" if low == 1 else f"an integer >= {low}"
            raise argparse.ArgumentTypeError(f"must be {kind}, got {value}")
        return value

    return parse


def finite_float(positive: bool) -> Callable[[str], float]:
    """argparse type: a finite float, ``> 0`` if ``positive`` else ``>= 0``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or (value <= 0 if positive else value < 0):
            kind = "a finite number > 0" if positive else "a finite number >= 0"
            raise argparse.ArgumentTypeError(f"must be {kind}, got {text}")
        return value

    return parse
