"""Stage recipes as data: the values the issue fixes, debug twins, schedule, optimizer split."""

from __future__ import annotations

import itertools
import math

import pytest

from accord.core.config import load_overrides
from accord.core.stages import STAGES
from accord.train.engine import is_muon_param, lr_factor, param_groups
from accord.train.recipe import REPLACED_KEYS, OptimConfig, load_recipe


def test_pretrain_recipe_matches_the_report() -> None:
    r = load_recipe("pretrain")
    assert r.data.max_frames == 6144
    assert r.optim.warmup_steps == 100 and r.optim.schedule == "cosine"
    assert r.optim.grad_clip == 0.5 and r.optim.weight_decay == 0.1
    assert r.optim.name == "muon" and r.optim.muon_lr == 5e-3 and r.optim.adam_lr == 5e-4
    c = r.conditioning
    assert c.speaker == "none" and not c.rate and not c.quality and not c.quality_mode


def test_later_stages() -> None:
    mid, a1, a2 = (load_recipe(s) for s in STAGES[1:])
    assert mid.data.eligibility == {"midtrain": {"min_agreement": 0.9}}  # stricter than the 0.6 default
    assert a1.data.eligibility == {"anneal1": {"min_agreement": 0.9}}
    assert mid.data.dataset_weights
    assert a1.conditioning.speaker == "crop" and a1.conditioning.mask_crop
    assert a1.conditioning.rate and a1.conditioning.quality
    assert (a1.conditioning.rate_drop_p, a1.conditioning.quality_drop_p) == (0.4, 0.25)
    assert 0 < a1.conditioning.aug_prompt_prob < 1
    assert (
        a2.conditioning.speaker == "full" and not a2.conditioning.mask_crop and a2.conditioning.quality_mode
    )
    # inherited from the base chain
    assert a2.optim.grad_clip == 0.5 and a2.data.max_frames == 6144 and a2.conditioning.rate


@pytest.mark.parametrize("stage", STAGES)
def test_debug_twin_inherits_debug_settings(stage: str) -> None:
    full, dbg = load_recipe(stage), load_recipe(stage, debug=True)
    assert dbg.debug and dbg.steps < full.steps
    assert dbg.data.max_frames == 1024 and dbg.engine.grad_accum == 1
    assert dbg.conditioning == full.conditioning or stage in ("pretrain", "midtrain")


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown optim keys"):
        load_recipe("pretrain", overrides={"optim": {"lr_typo": 1.0}})
    with pytest.raises(ValueError, match="unknown stage"):
        load_recipe("finetune")


def test_config_file_and_sets_override_the_recipe(tmp_path) -> None:
    """``accord train --config run.yaml --set ...``: the file's ``train:`` section, then ``--set``,
    over the stage recipe; listed dataset weights replace the recipe's instead of merging."""
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("train:\n  engine: {zero_stage: 2}\n  data: {dataset_weights: {podcasts: 2.0}}\n")
    sets = ["optim.muon_lr=1e-3", "train.engine.grad_accum=4"]  # 1e-3: a string to YAML 1.1
    overrides = load_overrides(str(run_yaml), sets, section="train", replace=REPLACED_KEYS)
    r = load_recipe("midtrain", overrides=overrides)
    assert r.engine.zero_stage == 2 and r.engine.grad_accum == 4
    assert r.optim.muon_lr == 1e-3 and isinstance(r.optim.muon_lr, float)
    assert r.data.dataset_weights == {"podcasts": 2.0}, "the recipe's '*' weight is replaced"
    assert r.data.eligibility == load_recipe("midtrain").data.eligibility


def test_eligibility_has_one_spelling() -> None:
    """A recipe's eligibility overrides are accord.core.eligibility's ``{stage: {threshold: value}}``;
    the old ``data.min_agreement`` knob and a flat mapping fail with the spelling to use."""
    r = load_recipe("anneal1", overrides={"data": {"eligibility": {"anneal1": {"min_agreement": 0.95}}}})
    assert r.data.eligibility == {"anneal1": {"min_agreement": 0.95}}
    with pytest.raises(ValueError, match=r"data.eligibility: \{midtrain: \{min_agreement: 0.9\}\}"):
        load_recipe("midtrain", overrides={"data": {"min_agreement": 0.9}})
    with pytest.raises(ValueError, match="keyed by stage"):
        load_recipe("midtrain", overrides={"data": {"eligibility": {"min_agreement": 0.9}}})
    with pytest.raises(ValueError, match="unknown threshold"):
        load_recipe("midtrain", overrides={"data": {"eligibility": {"midtrain": {"min_agreemnt": 0.9}}}})
    for stage in STAGES:  # the debug twins add no overrides: defaults and tokenize's thresholds
        assert load_recipe(stage, debug=True).data.eligibility is None


def test_warmup_then_cosine() -> None:
    cfg = OptimConfig(warmup_steps=10, min_lr_ratio=0.1)
    f = [lr_factor(s, 110, cfg) for s in range(111)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0) and f[60] == pytest.approx(0.55) and f[110] == pytest.approx(0.1)
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(f[10:]))
    assert not any(math.isnan(x) for x in f)


def test_muon_gets_hidden_matrices_adamw_the_rest() -> None:
    from accord.model.config import get_flavour
    from accord.model.zonos import ZonosModel

    model = ZonosModel(get_flavour("debug"))
    groups = {g["name"]: g for g in param_groups(model, OptimConfig())}
    names = {id(p): n for n, p in model.named_parameters()}
    muon = {names[id(p)] for p in groups["muon"]["params"]}
    adam = {names[id(p)] for g in ("adam_decay", "adam_no_decay") for p in groups[g]["params"]}
    assert any("experts.w13" in n for n in muon) and any("attention.wq" in n for n in muon)
    assert "multi_output.weight" in adam and "multi_embedder.embedders.0.weight" in adam
    assert "speaker_projection.weight" in adam and "out_norm.weight" in adam
    assert groups["muon"]["lr"] == 5e-3 and groups["adam_decay"]["lr"] == 5e-4
    assert groups["adam_no_decay"]["weight_decay"] == 0.0
    assert all(p.use_muon for p in groups["muon"]["params"])
    assert not is_muon_param("layers.0.attention_norm.weight", model.out_norm.weight)
