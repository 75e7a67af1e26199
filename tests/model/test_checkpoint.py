"""ZONOS2 checkpoint layout: exact key set and shapes, export -> import round trip, released-style import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from accord.model.checkpoint import load_zonos2, read_extra, save_zonos2
from accord.model.config import ModelConfig, get_flavour
from accord.model.zonos import ZonosModel

from .conftest import random_ids

# Keys zonos2.cpp's converter reads from params.json (it fails on any missing one).
CONVERTER_PARAMS = {
    "dim", "head_dim", "n_heads", "n_kv_heads", "ffn_dim_multiplier", "n_layers", "max_seqlen", "rope_theta",
    "norm_eps", "loss_softcap", "n_codebooks", "codebook_size", "eoa_id", "audio_pad_id", "text_vocab",
    "speaker_embedding_dim",
}  # fmt: skip


def zonos2_expected_shapes(p: dict) -> dict[str, tuple[int, ...]]:
    """The state-dict layout written out independently from /work/shared/ZONOS2_FORMAT.md and
    zonos2.cpp's converter (router keys live under ``feed_forward.router``)."""
    D, hd, H, G = p["dim"], p["head_dim"], p["n_heads"], p["n_kv_heads"]
    m = p["multiple_of"]
    inter = m * ((int(p["ffn_dim_multiplier"] * D) + m - 1) // m)
    nc, cb, E, R = p["n_codebooks"], p["codebook_size"], p["moe_n_experts"], p["moe_router_dim"]
    out = {f"multi_embedder.embedders.{i}.weight": (cb + 2, D) for i in range(nc)}
    out[f"multi_embedder.embedders.{nc}.weight"] = (p["text_vocab"] + 1, D)
    lda, spk = p["speaker_lda_dim"], p["speaker_embedding_dim"]
    out |= {"speaker_lda_projection.weight": (lda, spk), "speaker_lda_projection.bias": (lda,)}
    out |= {"speaker_projection.weight": (D, lda), "speaker_projection.bias": (D,)}
    out |= {"out_norm.weight": (D,), "multi_output.weight": (nc * (cb + 2), D)}
    first_moe = None
    for L in range(p["n_layers"]):
        q = f"layers.{L}."
        out |= {q + "attention_norm.weight": (D,), q + "ffn_norm.weight": (D,)}
        out |= {q + "attention.wq.weight": (H * hd, D), q + "attention.wkv.weight": (2, G * hd, D)}
        out |= {q + "attention.wo.weight": (D, H * hd), q + "attention.temp": (1, H, 1)}
        out[q + "attention.gater.weight"] = (H, D)
        is_moe = E > 1 and p["moe_start_from_layer"] <= L and p["n_layers"] - L > p["moe_end_from_layer"]
        if not is_moe:
            out |= {
                q + "feed_forward.w_in.weight": (2, inter, D),
                q + "feed_forward.w_out.weight": (D, inter),
            }
            continue
        first_moe = L if first_moe is None else first_moe
        f, r = q + "feed_forward.experts.", q + "feed_forward.router."
        out |= {f + "w13": (E, 2 * inter, D), f + "w2": (E, D, inter)}
        out |= {r + "down_proj.weight": (R, D), r + "down_proj.bias": (R,)}
        out |= {r + "router_mlp.0.weight": (R, R), r + "router_mlp.0.bias": (R,)}
        out |= {r + "router_mlp.2.weight": (R, R), r + "router_mlp.2.bias": (R,)}
        out |= {
            r + "router_mlp.4.weight": (E, R),
            r + "rmsnorm_eda.weight": (R,),
            r + "balancing_biases": (E,),
        }
        if first_moe != L:
            out[r + "router_states_scale"] = (R,)
    return out


@pytest.mark.parametrize("flavour", ["debug", "zonos2-8b"])
def test_state_dict_matches_zonos2_layout_exactly(flavour):
    cfg = get_flavour(flavour)
    with torch.device("meta"):
        model = ZonosModel(cfg)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == zonos2_expected_shapes(cfg.to_params())


def test_export_import_round_trip_same_logits(tmp_path, debug_model, debug_cfg):
    with torch.no_grad():  # non-trivial values for every tensor that has a neutral init
        for name, p in debug_model.named_parameters():
            if name.endswith(
                ("temp", "router_states_scale", "balancing_biases", "norm.weight", "eda.weight")
            ):
                p.add_(0.1 * torch.randn_like(p))
    out = save_zonos2(debug_model, tmp_path / "ckpt", extra={"codec": "dac:44khz", "vocab": {"x": 1}})
    params = json.loads((out / "params.json").read_text())
    assert (
        params.keys() >= CONVERTER_PARAMS and params["model_type"] == "zonos2" and params["speaker_enabled"]
    )
    # ZONOS2's loader keeps only the fields its config knows; ours survive under "accord"
    assert read_extra(out) == {"codec": "dac:44khz", "vocab": {"x": 1}}
    back = load_zonos2(out)
    ids = random_ids(debug_cfg, 2, 14)
    spk = torch.randn(2, debug_cfg.speaker_embedding_dim)
    with torch.no_grad():
        a = debug_model(ids, speaker_NS=spk).logits_BTKV
        b = back(ids, speaker_NS=spk).logits_BTKV
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # overwriting an existing export is atomic and leaves no temp dirs behind
    save_zonos2(back, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_import_released_style_checkpoint(tmp_path, debug_model, debug_cfg):
    """bf16, nested under "model", unfused w1/w3 experts, training-only keys, no accord extra."""
    src = tmp_path / "released"
    src.mkdir()
    state = {k: v.to(torch.bfloat16) for k, v in debug_model.state_dict().items()}
    for k in [k for k in state if k.endswith("experts.w13")]:
        w13 = state.pop(k)
        prefix = k.removesuffix("w13")
        state[prefix + "w1.weight"], state[prefix + "w3.weight"] = w13[:, 0::2], w13[:, 1::2]
        state[prefix + "w2.weight"] = state.pop(prefix + "w2")
    state["layers.1.feed_forward.router.ent_denom"] = torch.ones(1)
    torch.save({"model": state}, src / "model.pth")
    params = {k: v for k, v in debug_cfg.to_params().items() if k != "moe_router_dim"}  # width from shapes
    (src / "params.json").write_text(json.dumps({"model": params}))
    model = load_zonos2(src)
    assert read_extra(src) == {}
    assert model.cfg.moe.router.dim == debug_cfg.moe.router.dim
    ids = random_ids(debug_cfg, 1, 9)
    ref = ZonosModel(debug_cfg)
    ref.load_state_dict({k: v.to(torch.bfloat16).float() for k, v in debug_model.state_dict().items()})
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits_BTKV, ref(ids).logits_BTKV, atol=1e-5, rtol=1e-5)


def test_mismatched_checkpoint_is_a_clear_error(tmp_path, debug_model):
    out = save_zonos2(debug_model, tmp_path / "ckpt")
    params = json.loads((out / "params.json").read_text())
    params["n_layers"] = 5
    (out / "params.json").write_text(json.dumps(params))
    with pytest.raises(ValueError, match=r"does not match its params\.json"):
        load_zonos2(out)
    params["model_type"] = "llama"
    (out / "params.json").write_text(json.dumps(params))
    with pytest.raises(ValueError, match="expected 'zonos2'"):
        load_zonos2(out)


def test_from_params_accepts_zonos2_aliases():
    p = get_flavour("debug").to_params() | {
        "moe_balancing_strategy": "aux_loss",
        "special_topk_layers": {"2": 2},
    }
    cfg = ModelConfig.from_params(p)
    assert cfg.moe.router.strategy == "legacy" and cfg.topk_for_layer(2) == 2


def test_cli_init_convert_info(tmp_path):
    from click.testing import CliRunner

    from accord.cli.main import cli

    run = CliRunner().invoke
    assert run(cli, ["model", "init", "debug", str(tmp_path / "a"), "--seed", "1"]).exit_code == 0
    res = run(cli, ["model", "convert", str(tmp_path / "a"), str(tmp_path / "b"), "--dtype", "bfloat16"])
    assert res.exit_code == 0, res.output
    state = torch.load(tmp_path / "b" / "model.pth", weights_only=True)
    # bf16 everywhere but the router biases, which the release keeps in float32
    assert all(v.dtype == torch.bfloat16 for k, v in state.items() if not k.endswith("balancing_biases"))
    assert read_extra(tmp_path / "b")["flavour"] == "debug"
    a, b = load_zonos2(tmp_path / "a"), load_zonos2(tmp_path / "b")
    ids = random_ids(a.cfg, 1, 8)
    with torch.no_grad():
        torch.testing.assert_close(a(ids).logits_BTKV, b(ids).logits_BTKV, atol=0.2, rtol=0.05)
    res = run(cli, ["model", "info", str(tmp_path / "b")])
    assert res.exit_code == 0 and "total=1.52M" in res.output
    # init straight to bf16 on a chosen device (zonos2-8b: `--device cuda` keeps 31 GB off the host)
    res = run(cli, ["model", "init", "debug", str(tmp_path / "c"), "--dtype", "bfloat16", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    state = torch.load(tmp_path / "c" / "model.pth", weights_only=True)
    assert {v.dtype for k, v in state.items() if k.endswith("balancing_biases")} == {torch.float32}
    assert all(v.dtype == torch.bfloat16 for k, v in state.items() if not k.endswith("balancing_biases"))


def test_export_advertises_control_tokens_to_zonos2(tmp_path, debug_model):
    """params.json carries ZONOS2's conditioning fields for an accord-vocabulary model, so its
    server can place rate/quality/background/accurate-mode tokens; a foreign vocabulary gets none."""
    from accord.core.vocab import Vocab

    params = json.loads((save_zonos2(debug_model, tmp_path / "a") / "params.json").read_text())
    assert params["text_vocab"] == Vocab().size
    for key, value in Vocab().zonos2_params().items():
        assert params[key] == value, key
    assert params["speaker_background_token_enabled"] and params["accurate_mode_token_enabled"]

    foreign = ZonosModel(get_flavour("debug", text_vocab=469))
    params = json.loads((save_zonos2(foreign, tmp_path / "b") / "params.json").read_text())
    assert "speaking_rate_num_buckets" not in params and "quality_buckets" not in params


def test_speaker_lda_exact_or_fitted(tmp_path, debug_cfg):
    import numpy as np

    from accord.model.checkpoint import init_speaker_lda

    model = ZonosModel(debug_cfg)
    L, S = model.speaker_lda_projection.weight.shape
    rng = np.random.default_rng(0)
    small = tmp_path / "small.npz"
    np.savez(small, weight=rng.normal(size=(L - 1, S)).astype(np.float32), bias=np.ones(L - 1, np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        init_speaker_lda(model, small)  # exact by default: `accord model init --lda`
    init_speaker_lda(model, small, exact=False)  # training: zero-padded to the model's dims
    w, b = model.speaker_lda_projection.weight, model.speaker_lda_projection.bias
    assert torch.equal(w[: L - 1], torch.from_numpy(np.load(small)["weight"])) and w[L - 1].abs().sum() == 0
    assert b[: L - 1].eq(1).all() and b[L - 1] == 0
    wide = tmp_path / "wide.npz"
    np.savez(wide, weight=np.zeros((L, S + 1), np.float32), bias=np.zeros(L, np.float32))
    with pytest.raises(ValueError, match=f"projects {S + 1}-d"):
        init_speaker_lda(model, wide, exact=False)


def _released(tmp_path, debug_model, debug_cfg, convert) -> Path:
    """``debug_model`` saved as a released checkpoint whose experts ``convert`` rewrites."""
    src = tmp_path / "released"
    src.mkdir()
    state = dict(debug_model.state_dict())
    for k in [k for k in state if k.endswith("experts.w13")]:
        prefix = k.removesuffix("w13")
        convert(state, prefix, state.pop(k), state.pop(prefix + "w2"))
    torch.save(state, src / "model.pth")
    (src / "params.json").write_text(json.dumps(debug_cfg.to_params()))
    return src


def test_import_zonos2_inference_expert_names(tmp_path, debug_model, debug_cfg):
    """ZONOS2's own inference state dict: experts.gate_up_proj = cat(gate, up), down_proj = w2."""

    def to_inference(state, prefix, w13, w2):
        state[prefix + "gate_up_proj"] = torch.cat([w13[:, 0::2], w13[:, 1::2]], dim=1)
        state[prefix + "down_proj"] = w2

    model = load_zonos2(_released(tmp_path, debug_model, debug_cfg, to_inference))
    ids = random_ids(debug_cfg, 1, 9)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits_BTKV, debug_model(ids).logits_BTKV, rtol=0, atol=0)


def test_experts_in_no_known_layout_name_what_was_found(tmp_path, debug_model, debug_cfg):
    def half(state, prefix, w13, w2):
        state[prefix + "w1.weight"] = w13[:, 0::2]  # w3 missing
        state[prefix + "w2.weight"] = w2

    found = r"found \['w1\.weight', 'w2\.weight'\]"
    with pytest.raises(ValueError, match=rf"fit no layout.*{found}.*gate_up_proj"):
        load_zonos2(_released(tmp_path, debug_model, debug_cfg, half))


def test_bf16_export_keeps_the_release_fp32_tensors(tmp_path, debug_model):
    out = save_zonos2(debug_model, tmp_path / "bf16", dtype=torch.bfloat16)
    state = torch.load(out / "model.pth", weights_only=True)
    biases = [k for k in state if k.endswith(".router.balancing_biases")]
    assert biases and all(state[k].dtype == torch.float32 for k in biases)
    others = {v.dtype for k, v in state.items() if k not in biases and v.is_floating_point()}
    assert others == {torch.bfloat16}
