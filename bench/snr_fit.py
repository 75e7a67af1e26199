"""Fit the learned correction of the SNR estimate (pipeline/snr_model.py) on the ``*-cal`` sets.

The target is the truth minus the rules' estimate (:func:`accord.pipeline.snr.rule_estimate`),
with the truth of clean clips capped at ``TRUTH_CAP_DB`` (they only need to stay clean). The
regularisation is chosen by cross-validation over recordings (one fold per group of target
recordings; real and synthetic speech kept apart), scored by the share of the corrected
estimates within ±3 dB on the 0-30 dB mixtures, with clean clips required to stay >= 25 dB.
Writes ``pipeline/snr_model.json`` (plain numbers) unless ``--dry-run``.

    python bench/snr_fit.py [--sets real-cal,synth-cal] [--model gbt|ridge] [--test real-test,synth-test]

``--test`` scores the chosen model once on held-out sets (features only; bench/snr_eval.py
is the real evaluation). Features are cached under ``$ACCORD_CACHE/snr_eval``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import snr_eval as E

from accord.pipeline import snr as S
from accord.pipeline import snr_model as M

TRUTH_CAP_DB = 40.0
CLAMP_DB = (-6.0, 0.0)  # lower only: the rules read babble high; raising moved long-paused clips up
FADE_DB = (35.0, 45.0)
FOLDS = 5
AUGMENT_WEIGHT = 0.4
ROOT = Path(__file__).resolve().parent.parent


def extract(name: str, talkers: int = 6) -> dict[str, np.ndarray]:
    """Features, rules' estimate, truth and labels of every mixture of set ``name`` (cached)."""
    src = (ROOT / "pipeline" / "snr.py").read_bytes() + (ROOT / "pipeline" / "snr_model.py").read_bytes()
    key = hashlib.sha256(src + repr((E.RECIPE, name, talkers)).encode()).hexdigest()[:12]
    base = Path(os.environ.get("ACCORD_CACHE") or Path.home() / ".cache" / "accord")
    cache = base / "snr_eval" / f"features-{name}-{key}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    rows, est, truth, meta = [], [], [], []
    for m in E.build(name, talkers):
        s, terms = S.rule_estimate(m.audio.astype(np.float32), E.SR, m.probs)
        rows.append([terms[k] for k in M.FEATURES] if terms else [math.nan] * len(M.FEATURES))
        est.append(s)
        truth.append(m.truth)
        meta.append((m.set, m.source, m.kind, m.noise, m.rung, m.extra.get("native", math.nan)))
    out = {
        "X": np.asarray(rows, np.float64),
        "est": np.asarray(est),
        "truth": np.asarray(truth),
        "set": np.array([r[0] for r in meta]),
        "source": np.array([r[1] for r in meta]),
        "kind": np.array([r[2] for r in meta]),
        "noise": np.array([r[3] for r in meta]),
        "rung": np.array([r[4] for r in meta], np.float64),
        "native": np.array([r[5] for r in meta], np.float64),
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def target(d: dict[str, np.ndarray]) -> np.ndarray:
    return np.minimum(np.nan_to_num(d["truth"], posinf=TRUTH_CAP_DB), TRUTH_CAP_DB) - d["est"]


def usable(d: dict[str, np.ndarray]) -> np.ndarray:
    """Rows the correction applies to: with features, under the fade's end."""
    return np.isfinite(d["X"]).all(axis=1) & (d["est"] < FADE_DB[1])


def corrected(d: dict[str, np.ndarray], raw: np.ndarray) -> np.ndarray:
    """Estimates after the clamped, faded correction (``raw``: model output per row)."""
    fade = np.clip((FADE_DB[1] - d["est"]) / (FADE_DB[1] - FADE_DB[0]), 0, 1)
    return np.clip(d["est"] + fade * np.clip(np.nan_to_num(raw), *CLAMP_DB), S.MIN_DB, S.MAX_DB)


def scores(d: dict[str, np.ndarray], est: np.ndarray) -> dict[str, float]:
    """Share within ±3 dB (0-30 dB mixtures: all, babble with pauses, babble continuous, others)
    and the lowest clean estimate where the recording's own floor is >= 35 dB."""
    err = np.abs(est - d["truth"])
    noisy = d["noise"] != "clean"
    bp = noisy & (d["noise"] == "babble") & (d["kind"] == "pauses")
    bc = noisy & (d["noise"] == "babble") & (d["kind"] == "continuous")
    other = noisy & (d["noise"] != "babble")
    clean = (d["noise"] == "clean") & (d["native"] >= 35)
    ok = err <= 3.0
    return {
        "all": float(ok[noisy].mean()),
        "babble_pauses": float(ok[bp].mean()),
        "babble_cont": float(ok[bc].mean()),
        "other": float(ok[other].mean()),
        "bp_bias": float((est - d["truth"])[bp].mean()),
        "clean_min": float(est[clean].min()) if clean.any() else math.nan,
    }


def fit_ridge(X: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float) -> dict:
    from sklearn.linear_model import Ridge

    mean, scale = X.mean(axis=0), X.std(axis=0) + 1e-9
    r = Ridge(alpha=alpha).fit((X - mean) / scale, y, sample_weight=w)
    return {
        "kind": "ridge",
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "coef": r.coef_.tolist(),
        "intercept": float(r.intercept_),
    }


def fit_gbt(
    X: np.ndarray, y: np.ndarray, w: np.ndarray, depth: int, trees: int, rate: float = 0.1, leaf: int = 40
) -> dict:
    """Huber-loss gradient boosting, its trees as lists: [feature, threshold (float32, as sklearn
    compares), left, right, value] per tree."""
    from sklearn.ensemble import GradientBoostingRegressor

    g = GradientBoostingRegressor(
        loss="huber",
        max_depth=depth,
        n_estimators=trees,
        learning_rate=rate,
        min_samples_leaf=leaf,
        subsample=0.8,
        random_state=0,
    ).fit(X.astype(np.float32), y, sample_weight=w)
    out = []
    for est in g.estimators_[:, 0]:
        t = est.tree_
        out.append(
            [
                t.feature.tolist(),
                [float(str(np.float32(v))) for v in t.threshold],
                t.children_left.tolist(),
                t.children_right.tolist(),
                [round(float(v), 5) for v in t.value[:, 0, 0]],
            ]
        )
    model = {
        "kind": "gbt",
        "rate": rate,
        "trees": out,
        "intercept": 0.0,
    }
    offset = g.predict(X[:50].astype(np.float32)) - np.array([M.predict(model, row) for row in X[:50]])
    if np.ptp(offset) > 1e-3:  # the lists must walk the trees as sklearn does
        raise AssertionError(f"serialised trees disagree with sklearn by up to {np.ptp(offset):.4f} dB")
    model["intercept"] = float(np.mean(offset))
    return model


def predict_all(model: dict, X: np.ndarray) -> np.ndarray:
    return np.array([M.predict(model, row) if np.isfinite(row).all() else 0.0 for row in X])


def folds(d: dict[str, np.ndarray], k: int = FOLDS) -> np.ndarray:
    """Fold per row: target recordings dealt round-robin per set, so every fold holds real and
    synthetic speech and no recording is on both sides."""
    fold = np.zeros(len(d["est"]), int)
    for set_ in np.unique(d["set"]):
        srcs = sorted(np.unique(d["source"][d["set"] == set_]))
        for i, s in enumerate(srcs):
            fold[(d["set"] == set_) & (d["source"] == s)] = i % k
    return fold


def weights(d: dict[str, np.ndarray]) -> np.ndarray:
    """Rows of babble with other talker counts than the test sets' count AUGMENT_WEIGHT each."""
    return np.where(d["talkers"] == 6, 1.0, AUGMENT_WEIGHT)


def cross_validate(d: dict[str, np.ndarray], make) -> dict[str, float]:
    fold = folds(d)
    use = usable(d)
    y = target(d)
    w = weights(d)
    raw = np.zeros(len(y))
    for f in np.unique(fold):
        tr = use & (fold != f)
        model = make(d["X"][tr], y[tr], w[tr])
        te = fold == f
        raw[te] = predict_all(model, d["X"][te])
    raw[~use] = 0.0
    main = d["talkers"] == 6  # score as the test sets are built; other counts only train
    return scores({k: v[main] for k, v in d.items()}, corrected(d, raw)[main])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="real-cal,synth-cal")
    ap.add_argument(
        "--talkers",
        default="6,4",
        help="babble talker counts of the cal mixtures (4: deeper dips than the 6 of the test sets)",
    )
    ap.add_argument("--model", default="gbt", choices=["gbt", "ridge"])
    ap.add_argument("--test", default="", help="held-out sets to score the chosen model on, once")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--out", default=str(M.MODEL_PATH))
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parts = []
    for s in args.sets.split(","):
        for n in args.talkers.split(","):
            d = extract(s, int(n))
            parts.append({**d, "talkers": np.full(len(d["est"]), int(n))})
    cal = concat(parts)
    print(f"cal: {len(cal['est'])} mixtures, {usable(cal).sum()} usable", file=sys.stderr)
    six = {k: v[cal["talkers"] == 6] for k, v in cal.items()}
    base = scores(six, six["est"])
    print("rules     ", json.dumps({k: round(v, 3) for k, v in base.items()}))
    if args.model == "ridge":
        grid = {f"alpha={a:g}": (lambda X, y, w, a=a: fit_ridge(X, y, w, a)) for a in (0.1, 1, 10, 100, 1000)}
    else:
        grid = {
            f"depth={dp} trees={n} leaf={lf}": (
                lambda X, y, w, dp=dp, n=n, lf=lf: fit_gbt(X, y, w, dp, n, leaf=lf)
            )
            for dp in (2, 3)
            for n in (100, 200)
            for lf in (40, 80)
        }
    results = {}
    for label, make in grid.items():
        sc = cross_validate(cal, make)
        results[label] = sc
        print(f"{label:28s}", json.dumps({k: round(v, 3) for k, v in sc.items()}), flush=True)
    floor = min(25.0, base["clean_min"]) - 0.5  # clean clips may not read lower than the rules read them
    ok = {k: v for k, v in results.items() if v["clean_min"] >= floor} or results
    best = max(ok, key=lambda k: ok[k]["all"] + ok[k]["babble_pauses"])
    print(f"chosen: {best}")
    use = usable(cal)
    model = grid[best](cal["X"][use], target(cal)[use], weights(cal)[use])
    model.update(
        {
            "features": list(M.FEATURES),
            "clamp_db": list(CLAMP_DB),
            "fade_db": list(FADE_DB),
            "fit": {
                "sets": args.sets,
                "talkers": args.talkers,
                "choice": best,
                "truth_cap_db": TRUTH_CAP_DB,
                "cv": results[best],
            },
        }
    )
    if args.test:
        test = concat([extract(s) for s in args.test.split(",")])
        for set_ in np.unique(test["set"]):
            sel = {k: v[test["set"] == set_] for k, v in test.items()}
            raw = predict_all(model, sel["X"])
            raw[~usable(sel)] = 0.0
            print(f"{set_} rules ", json.dumps({k: round(v, 3) for k, v in scores(sel, sel["est"]).items()}))
            print(
                f"{set_} model ",
                json.dumps({k: round(v, 3) for k, v in scores(sel, corrected(sel, raw)).items()}),
            )
    if not args.dry_run:
        Path(args.out).write_text(json.dumps(model, separators=(",", ":")) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
