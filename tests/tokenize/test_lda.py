"""LDA: the saved affine projection equals scikit-learn's transform."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from accord.tokenize.lda import LdaConfig, LdaProjection, fit_lda, read_labels_csv


def _data(n_cls: int = 6, per: int = 20, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (n_cls, dim))
    x = np.concatenate([c + rng.normal(0, 1, (per, dim)) for c in centres])
    return x.astype(np.float32), [f"spk{i}" for i in range(n_cls) for _ in range(per)]


@pytest.mark.parametrize("shrinkage", [None, 0.2])
def test_affine_form_matches_sklearn(tmp_path, shrinkage) -> None:
    x, y = _data()
    proj = fit_lda(x, y, LdaConfig(lda_dim=128, shrinkage=shrinkage))
    assert proj.weight.shape == (5, 32) and proj.bias.shape == (5,)  # capped at n_classes - 1
    ref = (
        LinearDiscriminantAnalysis(solver="svd", n_components=5)
        if shrinkage is None
        else LinearDiscriminantAnalysis(solver="eigen", shrinkage=shrinkage, n_components=5)
    ).fit(x.astype(np.float64), y)
    np.testing.assert_allclose(proj(x.astype(np.float64)), ref.transform(x), rtol=1e-5, atol=1e-5)
    proj.save(tmp_path / "lda.npz")
    back = LdaProjection.load(tmp_path / "lda.npz")
    np.testing.assert_allclose(back(x), ref.transform(x), rtol=1e-3, atol=1e-3)
    assert back.meta == {"n_classes": 6, "n_samples": 120}
    # as the trainer applies it: Linear(D, lda) with weight/bias
    import torch

    lin = torch.nn.Linear(32, 5)
    lin.weight.data = torch.from_numpy(back.weight)
    lin.bias.data = torch.from_numpy(back.bias)
    np.testing.assert_allclose(
        lin(torch.from_numpy(x)).detach().numpy(), ref.transform(x), rtol=1e-3, atol=1e-3
    )


def test_lda_separates_classes_better_than_raw() -> None:
    x, y = _data(n_cls=4, per=30, dim=16, seed=1)
    proj = fit_lda(x, y)
    z = proj(x)
    labels = np.array(y)

    def ratio(a: np.ndarray) -> float:
        within = np.mean([a[labels == c].var(0).sum() for c in set(y)])
        return within / a.var(0).sum()

    assert ratio(z) < ratio(x)


def test_needs_two_classes(tmp_path) -> None:
    x, _ = _data(n_cls=2)
    with pytest.raises(ValueError, match="at least 2 speakers"):
        fit_lda(x[:20], ["a"] * 20)
    with pytest.raises(ValueError, match="labels"):
        fit_lda(x, ["a"])
    (tmp_path / "l.csv").write_text("clip,who\nx,y\n")
    with pytest.raises(ValueError, match="clip_id,speaker"):
        read_labels_csv(tmp_path / "l.csv")
