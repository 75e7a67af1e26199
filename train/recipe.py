"""Stage recipes as data: ``train/recipes/<stage>.yaml`` resolved into one ``Recipe``.

A recipe file may name a ``base`` recipe (midtrain builds on pretrain, ...) and carries a
``debug`` section, its twin for the debug model used in tests. Resolution is
``resolve(base) <- own values <- own debug values (when debug)``, so the debug twin of a
stage inherits the debug settings of the stages before it.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from accord.stages import STAGES, stage_index

RECIPE_DIR = Path(__file__).parent / "recipes"


@dataclass
class OptimConfig:
    """Muon (hidden matrices) + AdamW (embeddings, heads, norms, biases); warmup then cosine."""

    name: str = "muon"  # muon | adamw (adamw: every parameter on AdamW at adam_lr)
    muon_lr: float = 5e-3
    adam_lr: float = 5e-4
    weight_decay: float = 0.1
    momentum: float = 0.95
    # Newton-Schulz variant: auto = "gram" on GPU, "standard" (bf16, ~3x faster here) on CPU
    ns_method: str = "auto"
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    warmup_steps: int = 100
    schedule: str = "cosine"  # cosine | constant
    min_lr_ratio: float = 0.1
    grad_clip: float = 0.5


@dataclass
class DataConfig:
    max_frames: int = 6144  # rows per packed sequence (text + control + audio rows)
    seqs_per_batch: int = 1  # packed sequences per micro-batch
    min_agreement: float | None = None  # re-applied at read time on top of ingest eligibility
    dataset_weights: dict[str, float] = field(default_factory=dict)  # dataset -> weight; "*" default
    # accord.pipeline.eligibility threshold overrides for this stage, re-applied at read time
    # (None: trust the eligibility recorded at ingest)
    eligibility: dict[str, Any] | None = None
    seed: int = 1234


@dataclass
class ConditioningConfig:
    speaker: str = "none"  # none | crop | full
    mask_crop: bool = False  # loss masked over the frames the speaker embedding saw
    aug_prompt_prob: float = 0.0  # alpha: use an augmented copy's embedding
    rate: bool = False
    quality: bool = False
    rate_drop_p: float = 0.0
    quality_drop_p: float = 0.0
    quality_mode: bool = False
    quality_mode_min_agreement: float = 0.95
    quality_mode_min_snr_db: float = 30.0


@dataclass
class EngineConfig:
    zero_stage: int = 1
    grad_accum: int = 1
    activation_checkpointing: bool = False
    ep_size: int = 1
    balance_coef: float = 0.01
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16


@dataclass
class EvalConfig:
    enabled: bool = True
    n_sentences: int = 4
    max_new_frames: int = 1500
    asr: str = "whisper:tiny.en"
    speaker: str = "ecapa:auralis"
    codec: str = "dac:44khz"


@dataclass
class Recipe:
    stage: str
    steps: int
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log_every: int = 10
    ckpt_every: int = 1000
    debug: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        sub = {f.name: f.type for f in dataclasses.fields(cls)}
        kinds = {
            "optim": OptimConfig,
            "data": DataConfig,
            "conditioning": ConditioningConfig,
            "engine": EngineConfig,
            "eval": EvalConfig,
        }
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if k not in sub:
                raise ValueError(f"unknown recipe key {k!r}")
            if k in kinds:
                known = {f.name for f in dataclasses.fields(kinds[k])}
                bad = set(v) - known
                if bad:
                    raise ValueError(f"unknown {k} keys {sorted(bad)}; known: {sorted(known)}")
                v = dict(v)
                if "betas" in v:
                    v["betas"] = tuple(v["betas"])
                kw[k] = kinds[k](**v)
            else:
                kw[k] = v
        return cls(**kw)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if (
            isinstance(v, dict)
            and isinstance(out.get(k), dict)
            and k not in ("dataset_weights", "eligibility")
        ):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _resolve_dict(stage: str, debug: bool, recipe_dir: Path) -> dict[str, Any]:
    path = recipe_dir / f"{stage}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no recipe for stage {stage!r} at {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    base_name = raw.pop("base", None)
    debug_over = raw.pop("debug", {}) or {}
    merged = _resolve_dict(base_name, debug, recipe_dir) if base_name else {}
    merged = deep_merge(merged, raw)
    if debug:
        merged = deep_merge(merged, debug_over)
    merged["stage"] = stage
    merged["debug"] = debug
    return merged


def load_recipe(
    stage: str, debug: bool = False, overrides: dict[str, Any] | None = None, recipe_dir: Path | None = None
) -> Recipe:
    """The resolved recipe of ``stage`` (its ``debug`` twin when ``debug``), plus ``overrides``."""
    stage_index(stage)
    d = _resolve_dict(stage, debug, recipe_dir or RECIPE_DIR)
    if overrides:
        d = deep_merge(d, overrides)
    return Recipe.from_dict(d)


def all_recipes(debug: bool = False) -> list[Recipe]:
    return [load_recipe(s, debug) for s in STAGES]
