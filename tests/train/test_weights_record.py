"""Random-weights record: tokenize.json -> the exported checkpoint's params -> synth and the eval,
which load seeded random weights only where the record says the training codes had them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from accord.app.synth import SynthRequest, recorded_ref, synthesize
from accord.core.shards import RANDOM_WEIGHTS_KEY, tokenize_refs
from accord.core.weights import ModelNotFound, resolve
from accord.model.checkpoint import save_zonos2
from accord.train.trainer import StageArgs, export_extra, resolve_recipe


def _tokenize_json(root: Path, info: dict) -> str:
    root.mkdir(parents=True, exist_ok=True)
    (root / "tokenize.json").write_text(json.dumps(info))
    return str(root)


CURRENT = {
    "codec": {"ref": "dac:random"},
    "speaker": {"ref": "ecapa:auralis"},
    RANDOM_WEIGHTS_KEY: ["dac:random"],
}
LEGACY = {"codec": {"ref": "dac:44khz", "random_weights": True}, "speaker": {"ref": "ecapa:auralis"}}


def test_tokenize_refs_reads_the_record(tmp_path: Path) -> None:
    assert tokenize_refs(_tokenize_json(tmp_path / "a", CURRENT)) == {
        "codec": "dac:random",
        "speaker": "ecapa:auralis",
        RANDOM_WEIGHTS_KEY: ["dac:random"],
    }
    assert tokenize_refs(_tokenize_json(tmp_path / "b", LEGACY))[RANDOM_WEIGHTS_KEY] == ["dac:44khz"]
    trained = {"codec": {"ref": "dac:44khz"}, RANDOM_WEIGHTS_KEY: []}
    assert tokenize_refs(_tokenize_json(tmp_path / "c", trained))[RANDOM_WEIGHTS_KEY] == []
    assert tokenize_refs(str(tmp_path / "none")) == {}  # synthetic shards: nothing recorded


@pytest.mark.parametrize(("info", "codec", "random"), [(CURRENT, "dac:random", ["dac:random"]),
                                                       (LEGACY, "dac:44khz", ["dac:44khz"]),
                                                       (None, None, None)])  # fmt: skip
def test_export_extra_carries_the_record(tmp_path: Path, info, codec, random) -> None:
    shards = _tokenize_json(tmp_path / "s", info) if info else str(tmp_path / "s")
    args = StageArgs(stage="pretrain", shards=shards, run_dir=tmp_path / "run")
    extra = export_extra(args, resolve_recipe(args), step=3)
    # nothing recorded: nothing exported (synth then takes tokenize's defaults, accord.app.synth.default_refs)
    assert extra.get("codec") == codec and extra[RANDOM_WEIGHTS_KEY] == random


def test_recorded_ref_allows_random_weights_only_when_recorded() -> None:
    assert recorded_ref("dac:random", ["dac:random"]) == "dac:random"
    assert recorded_ref("dac:44khz", ["dac:44khz"]) == "dac:random"  # the legacy flag
    assert recorded_ref("dac:44khz", None) == "dac:44khz"
    assert recorded_ref("dac:44khz", ["ecapa:random"]) == "dac:44khz"
    assert recorded_ref("/models/dac.pth", ["/models/dac.pth"]) == "/models/dac.pth"  # no random twin


@pytest.fixture(scope="module")
def init_model():
    import torch

    from accord.model.config import get_flavour
    from accord.model.zonos import ZonosModel

    torch.manual_seed(0)
    return ZonosModel(get_flavour("debug"))


def test_synth_fails_closed_without_the_record_and_decodes_with_it(init_model, tmp_path: Path) -> None:
    try:
        resolve("dac:44khz")
        pytest.skip("trained DAC weights are installed here: nothing to refuse")
    except ModelNotFound:
        pass
    from accord.model.generate import SamplingConfig

    # the record is the subject: text normalization (accord[textnorm], absent from [train]) off
    req = SynthRequest("Hi.", sampling=SamplingConfig(max_frames=3, seed=0), text_normalization=False)
    bare = save_zonos2(init_model, tmp_path / "bare", extra={"codec": "dac:44khz", RANDOM_WEIGHTS_KEY: None})
    with pytest.raises(ModelNotFound, match=r"dac:random|allow-random-weights"):
        synthesize(bare, req)
    legacy = save_zonos2(
        init_model, tmp_path / "legacy", extra={"codec": "dac:44khz", RANDOM_WEIGHTS_KEY: ["dac:44khz"]}
    )
    res = synthesize(legacy, req)
    assert res.info["codec"] == "dac:random" and res.sample_rate == 44100
    assert len(res.wav) == res.codes_KT.shape[1] * 512


def test_exported_vocab_keeps_control_token_ids(init_model, tmp_path: Path) -> None:
    from accord.app.synth import vocab_from_extra
    from accord.core.vocab import DEFAULT_VOCAB
    from accord.model.checkpoint import read_extra

    args = StageArgs(stage="pretrain", shards=str(tmp_path / "s"), run_dir=tmp_path / "run")
    ckpt = save_zonos2(init_model, tmp_path / "ckpt", extra=export_extra(args, resolve_recipe(args), step=1))
    assert vocab_from_extra(read_extra(ckpt)).quality_offsets == DEFAULT_VOCAB.quality_offsets


def test_speaker_width_of_the_shards_must_fit_the_model(tmp_path: Path) -> None:
    from accord.core.shards import write_tokenize_json
    from accord.model.config import get_flavour
    from accord.train.trainer import check_speaker_width

    cfg = get_flavour("debug")
    write_tokenize_json(str(tmp_path), {"speaker": {"ref": "zonos2-spk:random", "dim": 2048}})
    with pytest.raises(ValueError, match=r"2048-d speaker embeddings .* takes 192-d"):
        check_speaker_width(str(tmp_path), cfg)
    ecapa = {"ref": "ecapa:auralis", "dim": cfg.speaker_embedding_dim}
    write_tokenize_json(str(tmp_path), {"speaker": ecapa})
    check_speaker_width(str(tmp_path), cfg)
    check_speaker_width(str(tmp_path / "no-record"), cfg)  # synthetic shards: nothing to check
