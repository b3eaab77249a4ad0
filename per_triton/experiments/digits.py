"""The 8x8 handwritten digits that ship inside scikit-learn, as torch tensors.

``sklearn.datasets.load_digits`` reads a file bundled with scikit-learn, so the
training command never downloads anything. The data set has 1797 grey-scale images
of 8x8 pixels (values 0..16) in ten classes.

The train/test split is a fixed stratified split (its own seed, independent of the
training seed), so every method and every training seed sees the same test set.
Pixels are standardised with the training set's mean and standard deviation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SPLIT_SEED = 20200211  # arXiv 2002.05366 was submitted in February 2020
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Digits:
    """Standardised digits: images ``(n, 1, 8, 8)`` float32, labels ``(n,)`` int64."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    def to(self, device: torch.device | str) -> Digits:
        """The same split with every tensor moved to ``device``."""
        return Digits(
            *(t.to(device) for t in (self.train_x, self.train_y, self.test_x, self.test_y))
        )


def _stratified_split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of test samples: ``fraction`` of each class, chosen by ``seed``."""
    rng = np.random.default_rng(seed)
    test = np.zeros(labels.shape[0], dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n_test = int(round(fraction * idx.size))
        test[rng.permutation(idx)[:n_test]] = True
    return test


def load_digits(test_fraction: float = TEST_FRACTION, limit: int | None = None) -> Digits:
    """Load scikit-learn's bundled digits, split and standardise them.

    Args:
        test_fraction: share of each class held out for the test set.
        limit: if given, keep only the first ``limit`` training and
            ``limit // 4`` test samples (for tiny smoke runs).

    Returns:
        A :class:`Digits` with images ``(n, 1, 8, 8)`` and labels ``(n,)``.

    Raises:
        ImportError: scikit-learn is missing (install the ``train`` extra).

    Example:
        >>> data = load_digits()
        >>> data.train_x.shape[1:]
        torch.Size([1, 8, 8])
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "per-triton train needs scikit-learn: pip install 'per-triton[train]'"
        ) from err
    raw = _sk_load_digits()
    images = raw.images.astype(np.float32)
    labels = raw.target.astype(np.int64)
    test = _stratified_split(labels, test_fraction, SPLIT_SEED)
    train_x, test_x = images[~test], images[test]
    mean, std = float(train_x.mean()), float(train_x.std())
    train_x = (train_x - mean) / std
    test_x = (test_x - mean) / std
    train_y, test_y = labels[~test], labels[test]
    if limit is not None:
        train_x, train_y = train_x[:limit], train_y[:limit]
        test_x, test_y = test_x[: max(limit // 4, 1)], test_y[: max(limit // 4, 1)]
    as_x = lambda a: torch.from_numpy(np.ascontiguousarray(a)).unsqueeze(1)
    return Digits(as_x(train_x), torch.from_numpy(train_y), as_x(test_x), torch.from_numpy(test_y))
