"""The per-(architecture, Triton) config table and the runtime checks of kernels/configs.py."""

from __future__ import annotations

import pytest

from per_triton.kernels import configs


def test_row_per_triton_band() -> None:
    """Before Triton 3.8 every backward tile has word-tile K = BLOCK_S / 4 >= 16."""
    for cc in configs.ARCHS.values():
        old = configs.row_for(cc, "3.6.0")
        assert all(bs // 4 >= 16 for bs, _, _, _ in old.bwd + old.fwd)
        new = configs.row_for(cc, "3.9.0")
        assert new.bwd[0][:2] == (32, 128)
    assert configs.row_for(90, "3.7.1") == configs.row_for(90, "3.6.0")
    assert configs.row_for(90, "3.8.0") == configs.row_for(90, "3.10.0")
    bands = [configs.band(v) for v in ("3.6.0", "3.7.1", "3.8.0", "3.10.0+git1")]
    assert bands == ["<3.8", "<3.8", ">=3.8", ">=3.8"]
    with pytest.raises(RuntimeError, match=r"triton>=3\.6"):
        configs.band("3.5.1")


def test_ctas_per_sm_by_arch() -> None:
    assert configs.row_for(90, "3.9.0").ctas_per_sm == 2
    assert configs.row_for(86, "3.9.0").ctas_per_sm == 1


@pytest.mark.parametrize(
    "cc, arch",
    [(80, "sm_80"), (87, "sm_86"), (89, "sm_89"), (90, "sm_90a"), (103, "sm_100a"),
     (121, "sm_120"), (130, "sm_120"), (75, "sm_80")],
)  # fmt: skip
def test_unknown_arch_falls_back_to_nearest_below(cc: int, arch: str) -> None:
    assert configs.arch_name(cc) == arch


def test_triton_version_parsing() -> None:
    assert configs.triton_version("3.6.0") == (3, 6)
    assert configs.triton_version("3.10.0+git1234") == (3, 10)
    assert configs.triton_version("3.9.0rc1") == (3, 9)


def test_triton_below_floor_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match=r"triton>=3\.6.*triton 3\.5\.1"):
        configs.check_triton_version("3.5.1")
    configs.check_triton_version("3.6.0")


def test_non_cuda_backend_is_refused() -> None:
    with pytest.raises(RuntimeError, match="'hip'"):
        configs.check_backend("hip")
    configs.check_backend("cuda")


def test_launch_checks_refuse_a_hip_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA-typed tensor on a non-NVIDIA backend (ROCm torch) is refused before compiling."""
    import types

    import triton

    target = types.SimpleNamespace(backend="hip", arch="gfx942", warp_size=64)
    active = types.SimpleNamespace(get_current_target=lambda: target)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(triton.runtime.driver, "_active", active, raising=False)
    monkeypatch.setattr(type(triton.runtime.driver), "active", property(lambda self: active))
    configs._check_active_triton.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="active backend is 'hip'"):
            configs.check_cuda_launch("cuda")
        configs.check_cuda_launch("cpu")  # CPU tensors never reach Triton's GPU backend
    finally:
        configs._check_active_triton.cache_clear()


def test_precisions_have_one_home() -> None:
    """The API and the kernels check the dot precision with one function."""
    from per_triton.api import loss, module

    assert configs.PRECISIONS == ("tf32", "ieee")
    assert loss.check_precision is configs.check_precision is module.check_precision
    assert [configs.check_precision(p) for p in configs.PRECISIONS] == ["tf32", "ieee"]
    with pytest.raises(ValueError, match="precision must be 'tf32' or 'ieee', got 'fp16'"):
        configs.check_precision("fp16")
