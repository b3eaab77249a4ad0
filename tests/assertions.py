"""Assert helpers that say where two tensors differ and by how much."""

from __future__ import annotations

import torch


def assert_close(name: str, actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float):
    """Fail, naming ``name``, if ``|actual - expected| > atol + rtol * |expected|`` anywhere."""
    actual = torch.as_tensor(actual).detach().to("cpu", torch.float64)
    expected = torch.as_tensor(expected).detach().to("cpu", torch.float64)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    assert torch.equal(actual.isnan(), expected.isnan()), f"{name}: NaN positions differ"
    finite = ~expected.isnan()
    err = (actual - expected).abs()
    bound = atol + rtol * expected.abs()
    bad = (err > bound) & finite
    if bad.any():
        idx = tuple(int(i) for i in bad.nonzero()[0])
        worst = int((err - bound).where(finite, torch.zeros_like(err)).argmax())
        raise AssertionError(
            f"{name}: {int(bad.sum())}/{bad.numel()} elements differ (atol={atol}, rtol={rtol}); "
            f"first at {idx}: {actual[idx].item()!r} vs {expected[idx].item()!r}; "
            f"max abs err {err[finite].max().item():.3e} at flat index {worst}"
        )
