"""The closeness record: its fields and its one validator (docs/design.md, "Closeness records").

:class:`per_triton.api.monitor.LayerMonitor` writes one JSON object per (step, layer);
``per-triton train`` collects them in ``<method>.jsonl``; the dashboard reads them.
All three use this module, so the format is defined once. Nothing here imports
torch (the dashboard uses it).

Fields, in the order they are written:

=========  ======  ==========================================================
``run``    str     run name (may be empty)
``model``  str     model name
``method`` str     one of :data:`per_triton.experiments.methods.METHODS` (not enforced:
                   other methods may be recorded)
``seed``   int     training seed
``step``   int     training step of the record
``layer``  str     the monitored layer's name
``sw1``    float   sliced W1 distance of the layer's sample to N(0, I)
``mean``   float   mean of the monitored units
``var``    float   variance of the monitored units
``q25``,   float   25th, 50th, 75th percentiles of the monitored units
``q50``,
``q75``
=========  ======  ==========================================================

A statistic is ``null`` when it was not finite (a diverged run); JSON integers are
accepted for statistics and read as floats.
"""

from __future__ import annotations

import math
from typing import Any, TypedDict

__all__ = [
    "INT_KEYS",
    "RECORD_KEYS",
    "STAT_KEYS",
    "TEXT_KEYS",
    "ClosenessRecord",
    "RecordError",
    "check_record",
]

TEXT_KEYS = ("run", "model", "method", "layer")
INT_KEYS = ("seed", "step")
STAT_KEYS = ("sw1", "mean", "var", "q25", "q50", "q75")
#: Every key of a record, in the order the monitor writes them.
RECORD_KEYS = ("run", "model", "method", "seed", "step", "layer", *STAT_KEYS)


class ClosenessRecord(TypedDict):
    """One closeness record, as checked by :func:`check_record`."""

    run: str
    model: str
    method: str
    seed: int
    step: int
    layer: str
    sw1: float | None
    mean: float | None
    var: float | None
    q25: float | None
    q50: float | None
    q75: float | None


class RecordError(ValueError):
    """A closeness record that does not follow the format; the message names the field."""


def check_record(rec: Any) -> ClosenessRecord:
    """Check one record; return it with its keys in order and statistics as floats.

    Args:
        rec: a decoded JSON object (``dict``).

    Returns:
        The record, keys in :data:`RECORD_KEYS` order, each statistic a finite
        ``float`` or ``None``.

    Raises:
        RecordError: (a ``ValueError``) not a dict, missing or extra keys, a name
            that is not a string, a seed or step that is not an integer,
            a statistic that is not a finite number or null.
    """
    if not isinstance(rec, dict):
        raise RecordError(f"a record must be a JSON object, got {type(rec).__name__}")
    if set(rec) != set(RECORD_KEYS):
        missing = [k for k in RECORD_KEYS if k not in rec]
        extra = sorted(str(k) for k in rec if k not in RECORD_KEYS)
        raise RecordError(f"record keys: missing {missing}, unexpected {extra}")
    for key in TEXT_KEYS:
        if not isinstance(rec[key], str):
            raise RecordError(f"record[{key!r}] must be a string, got {rec[key]!r}")
    for key in INT_KEYS:
        if not isinstance(rec[key], int) or isinstance(rec[key], bool):
            raise RecordError(f"record[{key!r}] must be an integer, got {rec[key]!r}")
    out: dict[str, Any] = {key: rec[key] for key in RECORD_KEYS}
    for key in STAT_KEYS:
        value = rec[key]
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise RecordError(f"record[{key!r}] must be a finite number or null, got {value!r}")
        out[key] = float(value)
    return ClosenessRecord(**out)
