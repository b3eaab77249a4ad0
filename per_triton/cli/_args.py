"""argparse value types shared by the subcommands: errors name the flag (exit 2)."""

from __future__ import annotations

import argparse
import difflib
import math
from collections.abc import Callable, Sequence

#: Training seeds (``--seeds`` of ``per-triton train``) lie in ``[0, TRAIN_SEED_LIMIT)``:
#: a run's own seed, kept to 32 bits so that any generator's seeding takes it (numpy's
#: legacy seed is 32-bit); not the package's direction seeds, which
#: :data:`per_triton.core.seeds.SEED_LIMIT` bounds.
TRAIN_SEED_LIMIT = 2**32
TRAIN_SEED_TEXT = f"2**{TRAIN_SEED_LIMIT.bit_length() - 1}"


class StoreInDict(argparse.Action):
    """argparse action: ``--flag VALUE`` sets key ``const`` of the dict at ``dest`` to
    VALUE, in a new dict (the default dict, shared by every flag of that ``dest``, is
    never changed)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, {**getattr(namespace, self.dest), self.const: values})


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


def comma_list(text: str) -> list[str]:
    """argparse type: a non-empty comma-separated list without repeats."""
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    if len(set(items)) != len(items):
        raise argparse.ArgumentTypeError(f"repeated entry in {text!r}")
    return items


def method_list(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    """argparse type: comma-separated names from ``allowed``, each once."""

    def parse(text: str) -> list[str]:
        methods = comma_list(text)
        bad = [m for m in methods if m not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(
                f"unknown method(s) {', '.join(bad)}; choose from {','.join(allowed)}"
            )
        return methods

    return parse


def seed_list(text: str) -> list[int]:
    """argparse type: comma-separated training seeds in [0, TRAIN_SEED_LIMIT), each once."""
    seeds = []
    for item in comma_list(text):
        try:
            seed = int(item)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated integers, got {item!r}"
            ) from None
        if not 0 <= seed < TRAIN_SEED_LIMIT:
            raise argparse.ArgumentTypeError(f"seeds must be in [0, {TRAIN_SEED_TEXT}), got {seed}")
        seeds.append(seed)
    return seeds


def torch_device(text: str) -> str:
    """argparse type: cpu, cuda or cuda:N, with CUDA present for the latter (imports torch)."""
    import torch

    name, _, index = text.partition(":")
    if name == "cpu" and not index:
        return text
    if name != "cuda" or (index and not index.isdigit()):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    if not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r} asked for, but CUDA is not available")
    if index and int(index) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(
            f"{text!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist"
        )
    return text


def port(text: str) -> int:
    """argparse type: a TCP port number, 1 to 65535."""
    value = int_at_least(1)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {value}")
    return value


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string of ``parser`` (``-h``, ``--help``, ``--quick``, ...)."""
    return [flag for action in parser._actions for flag in action.option_strings]


def closest_flag(parser: argparse.ArgumentParser, token: str) -> str | None:
    """The flag of ``parser`` closest to the unknown ``token`` (``--quik`` -> ``--quick``),
    by :func:`difflib.get_close_matches`; None for a value or when nothing is close."""
    if not token.startswith("-") or token == "-":
        return None
    found = difflib.get_close_matches(token.split("=", 1)[0], _flags(parser), n=1)
    return found[0] if found else None


def unrecognized(parser: argparse.ArgumentParser, tokens: Sequence[str]) -> str:
    """argparse's "unrecognized arguments" message, with the closest flag of ``parser``
    for each mistyped one: ``unrecognized arguments: --quik (did you mean --quick?)``."""
    message = f"unrecognized arguments: {' '.join(tokens)}"
    hints = [(t.split("=", 1)[0], closest_flag(parser, t)) for t in tokens]
    hints = [(typo, flag) for typo, flag in hints if flag]
    if len(hints) == 1:
        return f"{message} (did you mean {hints[0][1]}?)"
    if hints:
        return f"{message} (did you mean {', '.join(f'{f} for {t}' for t, f in hints)}?)"
    return message


def check_command_line(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """Refuse, with a suggestion, an unknown top-level flag or command in ``argv`` (the
    tokens before the command): ``per-triton --verison`` -> did you mean --version?

    argparse alone would only say that the command is missing, or list the choices.
    Calls ``parser.error`` (exit 2); returns when the top level is fine.
    """
    flags = set(_flags(parser))
    commands = next(a.choices for a in parser._actions if a.dest == "command")
    for token in argv:
        if token.startswith("-") and token != "-":
            if token.split("=", 1)[0] not in flags:
                parser.error(unrecognized(parser, [token]))
            continue
        if token not in commands:
            found = difflib.get_close_matches(token, list(commands), n=1)
            hint = f"; did you mean {found[0]}?" if found else ""
            parser.error(
                f"argument COMMAND: invalid choice: {token!r} "
                f"(choose from {', '.join(commands)}){hint}"
            )
        return
