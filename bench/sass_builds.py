"""What the static report (``bench/sass_report.py``) compiles: every kernel launch at the
paper shape, for one architecture.

Each build is the :class:`~per_triton.kernels.launch.Launch` the kernels' launchers
themselves run, asked for with dtypes instead of tensors: the forward, finishing
and backward launches of :mod:`per_triton.kernels.per_fused_launch` for every config
of the architecture's row in :mod:`per_triton.kernels.configs` (split of ``d``
planned for the architecture's reference GPU, :data:`SM_COUNTS`), the draw-only floor
and the direction kernel of :mod:`per_triton.kernels.philox_directions`, and the exact
estimator's kernels of :mod:`per_triton.kernels.per_exact`. ``num_warps`` and
``num_stages`` are the launch's, or Triton's defaults where it leaves them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

#: The paper shape (Joo et al., ResNet activations): batch, features, slices.
PAPER_SHAPE = {"b": 128, "d": 196608, "s": 256}
#: SMs of each architecture's reference GPU (A100, A10, L4, H100, B200, RTX 5090).
SM_COUNTS = {"sm_80": 108, "sm_86": 72, "sm_89": 58, "sm_90a": 132, "sm_100a": 148, "sm_120": 170}
#: (activation dtype, precision) of every forward/backward build: float32 in both
#: precisions, half activations at the default precision (TF32 projections).
FIXED_VARIANTS = [("fp32", "tf32"), ("fp32", "ieee"), ("bf16", "tf32"), ("fp16", "tf32")]


def torch_dtype(name: str) -> Any:
    """The torch dtype of a report dtype name (``fp32``, ``bf16``, ``fp16``)."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


@dataclasses.dataclass
class Build:
    """One kernel launch to compile, with the labels the report shows."""

    name: str  # kernel family: fwd, bwd, draw_sum, normals, finish, exact_*
    launch: Any  # per_triton.kernels.launch.Launch
    dtype: str = "fp32"
    precision: str = "-"
    role: str = "-"  # fixed | autotune | floor | stream
    has_dot: bool = False

    @property
    def consts(self) -> dict[str, Any]:
        return self.launch.constexprs

    @property
    def num_warps(self) -> int:
        return self.launch.num_warps or _triton_default("num_warps")

    @property
    def num_stages(self) -> int:
        return self.launch.num_stages or _triton_default("num_stages")

    @property
    def normals_per_iter(self) -> int:
        if self.name in ("fwd", "bwd", "draw_sum"):
            return self.consts["BLOCK_S"] * self.consts["BLOCK_D"]
        return 0

    def label(self) -> str:
        c = self.consts
        tiles = "-".join(
            f"{k[6:].lower()}{c[k]}" for k in ("BLOCK_B", "BLOCK_S", "BLOCK_D") if k in c
        )
        run = f"w{self.num_warps}-st{self.num_stages}"
        return f"{self.name}-{self.dtype}-{self.precision}-{tiles}-{run}"


def _triton_default(option: str) -> int:
    """Triton's CUDA default of a compile option (what a launch that passes none gets)."""
    from triton.backends.nvidia.compiler import CUDAOptions

    return getattr(CUDAOptions, option)


def _configs(entries: tuple, only: str) -> Iterator[tuple[str, dict, list]]:
    """``(role, config, variants)`` per config of a row: the fixed (first) one in every
    variant; with ``all``/``matrix`` the autotune ones too (float32 TF32 only, all
    variants with ``all``)."""
    from per_triton.kernels import configs

    yield "fixed", configs.as_config(entries[0]), FIXED_VARIANTS
    if only in ("all", "matrix"):
        for entry in entries[1:]:
            if entry != entries[0]:
                variants = FIXED_VARIANTS if only == "all" else [("fp32", "tf32")]
                yield "autotune", configs.as_config(entry), variants


def _dot_builds(only: str, arch: str, row: Any) -> list[Build]:
    """The forward and backward of every config of ``row`` at the paper shape."""
    from per_triton.kernels import per_fused_launch as pfl

    b, d, s = PAPER_SHAPE["b"], PAPER_SHAPE["d"], PAPER_SHAPE["s"]
    plan = {"sm_count": SM_COUNTS[arch], "ctas_per_sm": row.ctas_per_sm}
    out = []
    for role, config, variants in _configs(row.fwd, only):
        for dt, prec in variants:
            launch = pfl.fwd_launch(b, d, s, torch_dtype(dt), prec, config, **plan)
            out.append(Build("fwd", launch, dt, prec, role, True))
    for role, config, variants in _configs(row.bwd, only):
        for dt, prec in variants:
            launch = pfl.bwd_launch(b, d, s, torch_dtype(dt), prec, config)
            out.append(Build("bwd", launch, dt, prec, role, True))
    return out


def _draw_builds(only: str, arch: str, row: Any) -> list[Build]:
    """The draw-only floor (the tiles the kernel benchmark tries; the first with
    ``fixed``/``matrix``) and, with ``all``, the direction kernel and the finishing kernel."""
    import torch

    from per_triton.bench.kernel_utils import draw_config
    from per_triton.kernels import per_fused, per_fused_launch, philox_directions

    b, d, s = PAPER_SHAPE["b"], PAPER_SHAPE["d"], PAPER_SHAPE["s"]
    plan = {"sm_count": SM_COUNTS[arch], "ctas_per_sm": row.ctas_per_sm}
    split_d, n_split = per_fused.plan_splits(b, d, s, None, **plan)
    floor = draw_config(b, d, s, torch.device("cuda"))
    tiles = floor if only == "all" else floor[:1]
    out = [
        Build("draw_sum", philox_directions.draw_sum_launch(s, d, split_d, **cfg), role=role)
        for cfg, role in zip(tiles, ["fixed"] + ["floor"] * (len(tiles) - 1), strict=True)
    ]
    if only == "all":
        out.append(Build("normals", philox_directions.normals_launch(s, 0, d), role="stream"))
        out.append(Build("finish", per_fused_launch.finish_launch(b, s, n_split)))
    return out


def _exact_builds() -> list[Build]:
    """The exact estimator's kernels at the paper's ``b`` and ``d``.

    Memory-bound passes over ``h`` (no random draw): registers, spills and occupancy only.
    """
    import torch

    from per_triton.core import exact
    from per_triton.kernels import per_exact as pe

    b, d = PAPER_SHAPE["b"], PAPER_SHAPE["d"]
    out = []
    for dt in ("fp32", "bf16"):
        out.append(Build("exact_norms", pe.norms_launch(b, d, torch_dtype(dt)), dt))
        out.append(Build("exact_scale", pe.scale_launch(b, d, torch_dtype(dt)), dt))
    n_nodes = exact.node_table(torch.device("cpu")).shape[1]
    terms = pe.terms_launch(b, d, torch.float32, n_nodes, exact.SWITCH_K)
    return out + [Build("exact_terms", terms)]


def builds(only: str = "all", arch: str = "sm_90a") -> list[Build]:
    """Every build of the report for ``arch``.

    ``only``: ``all``; ``fixed`` (the fixed configs and the first floor tile, the CI
    subset); ``matrix`` (``fixed`` plus the forward/backward autotune configs in
    float32 TF32: the compile matrix of scripts/compile_matrix.sh).
    """
    from per_triton.kernels import configs

    row = configs.row_for(configs.ARCHS[arch])
    out = _dot_builds(only, arch, row) + _draw_builds(only, arch, row)
    return out + (_exact_builds() if only == "all" else [])
