"""Linear discriminant projection of speaker embeddings (scikit-learn), saved as ``SHARDS/lda.npz``.

The trainer initialises the model's ``speaker_lda_projection`` (a ``Linear(D_spk, lda_dim)``)
from it: ``x @ weight.T + bias`` equals ``LinearDiscriminantAnalysis.transform(x)``. Labels are
speakers from a labelled CSV (``clip_id,speaker``) or, for single-speaker sources, the source
file as a proxy. Augmented and cropped embeddings join their clip's class: they are exactly
the within-speaker variation LDA should project away.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from accord.core.shards import LDA_NPZ, iter_samples, shards_file
from accord.core.storage import atomic_write_bytes, read_bytes

log = logging.getLogger(__name__)


@dataclass
class LdaConfig:
    lda_dim: int = 128  # capped at n_classes - 1 and D_spk
    use_crops: bool = True
    use_augmented: bool = True
    min_per_class: int = 2  # classes with fewer embeddings are dropped
    shrinkage: float | None = None  # None: SVD solver; a float in (0, 1]: eigen solver with shrinkage


@dataclass
class LdaProjection:
    weight: np.ndarray  # [lda_dim, D_spk]
    bias: np.ndarray  # [lda_dim]
    mean: np.ndarray  # [D_spk]
    explained_variance_ratio: np.ndarray  # [lda_dim]
    meta: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.weight.shape[0])

    def __call__(self, x_ND: np.ndarray) -> np.ndarray:
        return x_ND @ self.weight.T + self.bias

    def save(self, path: str | Path) -> None:
        """Atomic write of ``lda.npz`` (local or any fsspec URI)."""
        buf = io.BytesIO()
        np.savez(
            buf,
            weight=self.weight.astype(np.float32),
            bias=self.bias.astype(np.float32),
            mean=self.mean.astype(np.float32),
            explained_variance_ratio=self.explained_variance_ratio.astype(np.float32),
            n_classes=np.int64(self.meta.get("n_classes", 0)),
            n_samples=np.int64(self.meta.get("n_samples", 0)),
        )
        atomic_write_bytes(str(path), buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> LdaProjection:
        z = np.load(io.BytesIO(read_bytes(path)))
        meta = {k: int(z[k]) for k in ("n_classes", "n_samples") if k in z}
        return cls(z["weight"], z["bias"], z["mean"], z["explained_variance_ratio"], meta)


def fit_lda(
    x_ND: np.ndarray, labels: list[str] | np.ndarray, config: LdaConfig | None = None
) -> LdaProjection:
    """Fit LDA on embeddings ``x_ND`` with class ``labels``; returns the affine projection."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    cfg = config or LdaConfig()
    labels = np.asarray(labels)
    if len(labels) != len(x_ND):
        raise ValueError(f"{len(x_ND)} embeddings but {len(labels)} labels")
    classes, counts = np.unique(labels, return_counts=True)
    keep_classes = set(classes[counts >= cfg.min_per_class])
    keep = np.array([lab in keep_classes for lab in labels])
    x_ND, labels = x_ND[keep].astype(np.float64), labels[keep]
    n_classes = len(keep_classes)
    if n_classes < 2:
        raise ValueError(
            f"LDA needs at least 2 speakers with ≥ {cfg.min_per_class} embeddings each; got {n_classes} "
            "(pass --labels with speaker labels, or shards from more than one source)"
        )
    if not np.isfinite(x_ND).all():
        raise ValueError("non-finite speaker embeddings; re-run tokenize on the affected shards")
    dim = min(cfg.lda_dim, n_classes - 1, x_ND.shape[1])
    if cfg.shrinkage is None and len(x_ND) - n_classes < x_ND.shape[1]:
        # The SVD solver works in the span of the within-class scatter, of rank N - classes: with
        # few embeddings per dimension (2048-d voice embeddings) it can drop between-class signal.
        log.warning(
            "LDA on %d-d embeddings from only %d samples of %d speakers: the within-class scatter is "
            "rank-deficient, where the SVD solver can lose speaker separation; set shrinkage (e.g. 0.5) "
            "or fit on more clips",
            x_ND.shape[1],
            len(x_ND),
            n_classes,
        )
    if cfg.shrinkage is None:
        lda = LinearDiscriminantAnalysis(solver="svd", n_components=dim)
    else:
        lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage=cfg.shrinkage, n_components=dim)
    lda.fit(x_ND, labels)
    scalings = lda.scalings_[:, :dim]  # [D, dim]
    weight = scalings.T
    if lda.solver == "svd":
        bias = -lda.xbar_ @ scalings
        mean = lda.xbar_
    else:
        bias = np.zeros(dim)
        mean = x_ND.mean(0)
    evr = getattr(lda, "explained_variance_ratio_", np.zeros(dim))[:dim]
    proj = LdaProjection(
        weight, bias, mean, np.asarray(evr), {"n_classes": n_classes, "n_samples": len(x_ND)}
    )
    # The affine form must reproduce sklearn exactly; a mismatch would silently corrupt training.
    probe = x_ND[: min(64, len(x_ND))]
    np.testing.assert_allclose(proj(probe), lda.transform(probe), rtol=1e-6, atol=1e-6)
    return proj


def read_labels_csv(path: str | Path) -> dict[str, str]:
    """``clip_id -> speaker`` from a CSV with columns ``clip_id`` and ``speaker``."""
    import pandas as pd

    df = pd.read_csv(path, dtype=str)
    missing = {"clip_id", "speaker"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: labels CSV needs columns clip_id,speaker (missing {sorted(missing)})")
    return dict(zip(df["clip_id"], df["speaker"], strict=True))


def fit_lda_on_shards(
    shards_uri: str, labels: dict[str, str] | None = None, config: LdaConfig | None = None
) -> LdaProjection:
    """Fit on every sample of ``SHARDS_URI`` and write ``SHARDS_URI/lda.npz``.

    Without ``labels`` each sample's ``source_uri`` is its class (single-speaker sources).
    Clips absent from ``labels`` are left out.
    """
    cfg = config or LdaConfig()
    xs: list[np.ndarray] = []
    ys: list[str] = []
    for sample in iter_samples(shards_uri):
        meta = sample.meta
        label = labels.get(meta["clip_id"]) if labels is not None else meta.get("source_uri")
        if label is None:
            continue
        rows = [sample.spk[None]]
        if cfg.use_crops and sample.spkcrop is not None:
            rows.append(sample.spkcrop[None])
        if cfg.use_augmented and sample.spkaug is not None:
            rows.append(sample.spkaug.reshape(-1, sample.spk.shape[-1]))
        block = np.concatenate(rows)
        xs.append(block)
        ys.extend([label] * len(block))
    if not xs:
        raise ValueError(f"{shards_uri}: no labelled samples found")
    proj = fit_lda(np.concatenate(xs), ys, cfg)
    out = shards_file(shards_uri, LDA_NPZ)
    proj.save(out)
    log.info(
        "LDA %d -> %d over %d classes, written to %s",
        proj.weight.shape[1],
        proj.dim,
        proj.meta["n_classes"],
        out,
    )
    return proj
