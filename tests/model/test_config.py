from __future__ import annotations

import pytest
from click.testing import CliRunner

from accord.model.config import FLAVOURS, ModelConfig, count_params, get_flavour

PAPER_TOTAL, PAPER_ACTIVE = 8e9, 0.9e9


def test_zonos2_8b_shape_and_param_count_on_meta():
    cfg = get_flavour("zonos2-8b")
    assert (cfg.n_layers, cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim) == (28, 2048, 16, 4, 128)
    assert cfg.ffn_dim == 3072 and cfg.moe.n_experts == 16 and cfg.moe.router.dim == 128
    dense = [i for i in range(cfg.n_layers) if not cfg.is_moe_layer(i)]
    assert dense == [0, 1, 2, 27]
    assert [cfg.topk_for_layer(i) for i in cfg.moe_layers] == [1] * 23 + [2]
    counts = count_params(cfg)
    print(f"\nzonos2-8b: {counts}  (paper: total 8B, active 0.9B)")
    # Embeddings/heads are tiny here (1026-row tables); the 8B headline counts a slightly larger model.
    assert 0.9 * PAPER_TOTAL <= counts.total <= 1.05 * PAPER_TOTAL
    assert 0.9 * PAPER_ACTIVE <= counts.active <= 1.1 * PAPER_ACTIVE


def test_small_flavour_is_about_100m():
    counts = count_params(get_flavour("small"))
    assert 80e6 <= counts.total <= 120e6
    assert counts.active < counts.total


def test_params_round_trip_every_flavour():
    for name in FLAVOURS:
        cfg = get_flavour(name)
        back = ModelConfig.from_params(cfg.to_params())
        assert back.to_params() == cfg.to_params()


def test_get_flavour_returns_a_copy_and_rejects_unknown():
    a = get_flavour("debug")
    a.moe.special_topk_layers[1] = 3
    assert get_flavour("debug").moe.special_topk_layers == {2: 2}
    with pytest.raises(KeyError, match="unknown model flavour"):
        get_flavour("nope")
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        get_flavour("debug", n_kv_heads=3)


def test_cli_model_info_prints_total_and_active():
    from accord.cli.main import cli

    res = CliRunner().invoke(cli, ["model", "info", "small"])
    assert res.exit_code == 0, res.output
    assert "total=" in res.output and "active=" in res.output
