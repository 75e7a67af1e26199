"""ZONOS2 export -> import -> export from weights the tier trained on its device."""

from __future__ import annotations

import math

import pytest
import torch

from accord.model.checkpoint import load_state, load_zonos2, read_params, save_zonos2
from accord.train.checkpoint import clean_state_dict, latest_tag

from .conftest import random_ids

pytestmark = pytest.mark.gpu


def test_export_import_round_trip_of_trained_weights(tier, curriculum_drill, tmp_path) -> None:
    stage_dir = curriculum_drill(1, True).run / "anneal2"
    final = stage_dir / "final"
    exported = load_state(final)

    # the export holds exactly the weights DeepSpeed checkpointed at the last step
    ckpt = stage_dir / "checkpoints"
    states = torch.load(ckpt / latest_tag(ckpt) / "mp_rank_00_model_states.pt", map_location="cpu",
                        weights_only=False)  # fmt: skip
    trained = clean_state_dict(states["module"])
    assert set(exported) <= set(trained)
    for k, v in exported.items():
        assert v.dtype == trained[k].dtype and torch.equal(v, trained[k]), k
    if tier.cuda:
        assert exported["multi_output.weight"].dtype == torch.bfloat16  # DeepSpeed bf16 weights

    # import on the device in the checkpoint's own dtype, run it, export again: bit-identical
    dtype = exported["multi_output.weight"].dtype
    model = load_zonos2(final, device=tier.device, dtype=dtype).eval()
    ids = random_ids(model.cfg, 2, 48).to(tier.device)
    with torch.no_grad():
        logits = model(ids).logits_BTKV
    assert logits.device.type == tier.device.type and math.isfinite(float(logits.float().abs().max()))
    again = save_zonos2(model, tmp_path / "again", extra=read_params(final).get("accord"))
    assert read_params(again) == read_params(final)
    back = load_state(again)
    assert back.keys() == exported.keys()
    assert all(torch.equal(back[k], exported[k]) for k in exported)
