"""Stage recipes as data: ``train/recipes/<stage>.yaml`` resolved into one ``Recipe``.

A recipe file may name a ``base`` recipe (midtrain builds on pretrain, ...) and carries a
``debug`` section, its twin for the debug model used in tests. Resolution is
``resolve(base) <- own values <- own debug values (when debug)``, so the debug twin of a
stage inherits the debug settings of the stages before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accord.core.config import deep_merge, from_dict, read_yaml, to_dict
from accord.core.eligibility import load_thresholds
from accord.core.errors import ConfigError
from accord.core.stages import STAGES, stage_index
from accord.train.shard_split import READ_MODES

RECIPE_DIR = Path(__file__).parent / "recipes"


@dataclass
class OptimConfig:
    """Muon (hidden matrices) + AdamW (embeddings, heads, norms, biases); warmup then cosine."""

    name: str = "muon"  # muon | adamw (adamw: every parameter on AdamW at adam_lr)
    muon_lr: float = 5e-3
    adam_lr: float = 5e-4
    weight_decay: float = 0.1
    momentum: float = 0.95
    # Newton-Schulz variant: auto = "gram" (fp16 or fp32, whichever the device runs natively);
    # "standard" runs bf16, emulated (~3x slower) on CPUs without AVX512-BF16 (engine.ns_method)
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
    dataset_weights: dict[str, float] = field(default_factory=dict)  # dataset -> weight; "*" default
    # accord.core.eligibility overrides in their own spelling, {stage: {threshold: value}} (or a
    # thresholds YAML), on top of the defaults and the tokenize run's (train/data.py:
    # stage_thresholds); eligibility is recomputed from every clip's signals at read time
    eligibility: str | dict[str, Any] | None = None
    seed: int = 1234
    # which shards a data-parallel rank reads (accord.train.shard_split): "strided" (default:
    # every rank reads every shard and keeps every world-th micro-batch, so runs are
    # bit-comparable across world sizes) or "split" (each rank reads its own ~1/world of the
    # shards: what a cluster needs; one rank's stream is the same in both)
    read_mode: str = "strided"
    prefetch_steps: int = (
        2  # optimizer steps of micro-batches produced ahead off the training thread (0: inline)
    )
    shuffle_window_mb: float = (
        256.0  # a shard's items shuffle within windows this big: the loader's memory bound
    )


@dataclass
class ConditioningConfig:
    """A stage's prompt conditioning. The layout is the release's (``accord.model.sequence``
    ``prompt_head``): a speaker embedding brings the speaker slot, the background marker and
    (``quality_mode``, top-quality clips) the accurate marker; with ``speaker: none`` a prompt
    is rate / quality rows (when on), text and silence."""

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
        return to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        """From a resolved recipe mapping; unknown keys fail with their dotted path."""
        data = d.get("data") or {}
        if "min_agreement" in data:
            value, stage = data["min_agreement"], d.get("stage", "<stage>")
            raise ConfigError(
                f"recipe data.min_agreement is gone: write data.eligibility: {{{stage}: {{min_agreement: "
                f"{value}}}}} (accord.core.eligibility's spelling; null: drop the key)"
            )
        if data.get("read_mode", "strided") not in READ_MODES:
            raise ConfigError(f"recipe data.read_mode {data['read_mode']!r}: one of {', '.join(READ_MODES)}")
        if isinstance(data.get("eligibility"), dict):
            load_thresholds(data["eligibility"])  # a bad stage or threshold fails here, by name
        return from_dict(cls, d, name="recipe")


# Mappings that a later recipe (or an override) replaces whole instead of merging key by key:
# a stage that lists its datasets or thresholds means exactly those.
REPLACED_KEYS: tuple[str, ...] = ("dataset_weights", "eligibility")


def merge_recipe(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, the way recipes and overrides combine."""
    return deep_merge(base, over, replace=REPLACED_KEYS)


def _resolve_dict(stage: str, debug: bool, recipe_dir: Path) -> dict[str, Any]:
    path = recipe_dir / f"{stage}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no recipe for stage {stage!r} at {path}")
    raw = read_yaml(str(path))
    base_name = raw.pop("base", None)
    debug_over = raw.pop("debug", {}) or {}
    merged = _resolve_dict(base_name, debug, recipe_dir) if base_name else {}
    merged = merge_recipe(merged, raw)
    if debug:
        merged = merge_recipe(merged, debug_over)
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
        d = merge_recipe(d, overrides)
    return Recipe.from_dict(d)


def all_recipes(debug: bool = False) -> list[Recipe]:
    return [load_recipe(s, debug) for s in STAGES]
