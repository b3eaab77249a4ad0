"""Fused-kernel tile configs per GPU architecture and Triton version, and the Triton floor.

One row per (architecture, Triton band). A row holds the forward and backward
autotune configs (the first of each is the fixed config used when autotuning is off)
and ``ctas_per_sm``, the forward programs per SM the split planner assumes. Every
row is justified by the static report (``bench/sass_report.py --arch all``, table in
docs/compatibility.md): it compiles, does not spill, and reaches ``ctas_per_sm``.

Triton bands: before 3.8 a 32-bit ``tl.dot`` needs ``K >= 16``; the backward's word
tile is ``K = BLOCK_S / 4``, so ``BLOCK_S >= 64`` there. From 3.8 on ``K = 8`` compiles
and the pipelined ``32 x 128`` backward tile (fewer instructions per normal) is used.

The launcher picks the row from the running device's capability and the installed
Triton (:func:`row_for`); an unknown newer architecture falls back to the nearest
documented one below it.
"""

from __future__ import annotations

import dataclasses
import functools

__all__ = [
    "ARCHS",
    "BANDS",
    "PRECISIONS",
    "TRITON_FLOOR",
    "Row",
    "arch_name",
    "as_config",
    "band",
    "check_triton_version",
    "check_backend",
    "check_cuda_launch",
    "check_precision",
    "row_for",
    "triton_version",
]

#: Oldest Triton the kernels compile on (the one torch 2.11 ships).
TRITON_FLOOR = (3, 6)
#: Triton bands of the table: name -> first version of the band. From 3.8 on a
#: 32-bit ``tl.dot`` takes ``K = 8``.
BANDS = {"<3.8": TRITON_FLOOR, ">=3.8": (3, 8)}

#: The ``input_precision`` values of the kernels' float32 dots (``tl.dot``).
PRECISIONS = ("tf32", "ieee")

#: Documented architectures: name -> compute capability ``major * 10 + minor``.
ARCHS = {"sm_80": 80, "sm_86": 86, "sm_89": 89, "sm_90a": 90, "sm_100a": 100, "sm_120": 120}


@dataclasses.dataclass(frozen=True)
class Row:
    """Configs for one (architecture, Triton band).

    ``fwd``/``bwd``: ``(BLOCK_S, BLOCK_D, num_warps, num_stages)`` per autotune
    config, the first being the fixed config; ``ctas_per_sm``: forward programs per
    SM the split planner assumes.
    """

    fwd: tuple[tuple[int, int, int, int], ...]
    bwd: tuple[tuple[int, int, int, int], ...]
    ctas_per_sm: int


_FWD = ((64, 32, 8, 1),)
#: Triton >= 3.8: pipelined 32 x 128 first (fewest instructions per normal), 64 x 64.
_BWD_NEW = ((32, 128, 8, 2), (64, 64, 8, 1))
#: Triton < 3.8: BLOCK_S >= 64 (word-tile K >= 16). 64 x 64 (two CTAs per SM on
#: sm_90a) is the fixed tile; 64 x 128 takes fewer instructions per normal (26 on
#: sm_90a, 37 on sm_80) at 165-209 registers, one CTA per SM: autotuning decides.
_BWD_OLD = ((64, 64, 8, 1), (64, 128, 8, 1))

#: Forward CTAs per SM: two on sm_90a/sm_100a; on sm_8x and sm_120 the forward
#: takes 134-170 registers per thread with mma.sync (8 warps): one CTA per SM.
_CTAS = {"sm_80": 1, "sm_86": 1, "sm_89": 1, "sm_90a": 2, "sm_100a": 2, "sm_120": 1}

#: ``(arch, band) -> Row``, a row for every documented architecture and band.
_TABLE = {
    (arch, band): Row(_FWD, _BWD_OLD if band == "<3.8" else _BWD_NEW, _CTAS[arch])
    for arch in ARCHS
    for band in BANDS
}
# Triton 3.6 on sm_100a compiles the 64 x 128 backward to an empty kernel (4 registers,
# no dot, no loop in the SASS): that row keeps 64 x 64 only.
_TABLE["sm_100a", "<3.8"] = Row(_FWD, _BWD_OLD[:1], _CTAS["sm_100a"])
# The forward's split plan (grid, workspace) is made from the tile before autotuning
# picks a config: every forward config shares one tile.
assert len({entry[:2] for row in _TABLE.values() for entry in row.fwd}) == 1


def as_config(entry: tuple[int, int, int, int]) -> dict[str, int]:
    """A row entry ``(BLOCK_S, BLOCK_D, num_warps, num_stages)`` as a launch config."""
    bs, bd, warps, stages = entry
    return {"BLOCK_S": bs, "BLOCK_D": bd, "num_warps": warps, "num_stages": stages}


def check_precision(precision: object) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else ``ValueError``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'tf32' or 'ieee', got {precision!r}")
    return precision  # type: ignore[return-value]


def triton_version(version: str | None = None) -> tuple[int, int]:
    """``(major, minor)`` of ``version`` (default the installed ``triton.__version__``)."""
    if version is None:
        import triton

        version = triton.__version__
    major, minor = version.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def check_triton_version(version: str | None = None) -> None:
    """Raise ``RuntimeError`` naming both versions if Triton is below :data:`TRITON_FLOOR`."""
    have = triton_version(version)
    if have < TRITON_FLOOR:
        import triton

        shown = version or triton.__version__
        need = ".".join(map(str, TRITON_FLOOR))
        raise RuntimeError(
            f"per_triton's CUDA kernels need triton>={need}; triton {shown} is installed "
            f"(torch>=2.11 ships a recent enough one)"
        )


def check_backend(backend: str) -> None:
    """Raise ``RuntimeError`` unless ``backend`` (a Triton target's backend) is ``"cuda"``.

    The direction stream's SFU draw is inline PTX, which only NVIDIA's backend assembles;
    on ROCm/HIP (``"hip"``) or any other backend the kernels are refused here, before
    compiling, instead of failing inside the assembler.
    """
    if backend != "cuda":
        raise RuntimeError(
            f"per_triton's fused kernels need Triton's NVIDIA backend ('cuda'); the active "
            f"backend is {backend!r}: the Philox direction draw uses inline PTX. Use the CPU "
            f"path (tensors on 'cpu') on this machine"
        )


def check_cuda_launch(device_type: str) -> None:
    """Before a launch on a ``device_type`` tensor: the Triton floor and backend checks.

    A no-op off CUDA and under ``TRITON_INTERPRET=1`` (the interpreter runs no PTX).
    """
    import os

    if device_type != "cuda" or os.environ.get("TRITON_INTERPRET", "0") == "1":
        return
    _check_active_triton()


@functools.cache
def _check_active_triton() -> None:
    import triton

    check_triton_version()
    check_backend(triton.runtime.driver.active.get_current_target().backend)


def arch_name(capability: int) -> str:
    """Documented architecture for compute capability ``capability`` (e.g. 90 -> sm_90a).

    An undocumented capability maps to the nearest documented one below it (the
    oldest, sm_80, for anything older).
    """
    below = [(cc, name) for name, cc in ARCHS.items() if cc <= capability]
    return max(below)[1] if below else "sm_80"


def band(version: str | None = None) -> str:
    """The band of :data:`BANDS` Triton ``version`` (default the installed one) falls in;
    ``RuntimeError`` below :data:`TRITON_FLOOR`."""
    check_triton_version(version)
    have = triton_version(version)
    return max((first, name) for name, first in BANDS.items() if first <= have)[1]


def row_for(capability: int, version: str | None = None) -> Row:
    """The config row for a device of compute capability ``capability`` and Triton ``version``."""
    return _TABLE[(arch_name(capability), band(version))]
