"""`accord synth` end to end: a random-init debug checkpoint, the real ECAPA speaker encoder
(auralis weights) and the real DAC architecture (random weights, as no trained DAC ships)."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from accord.cli.main import cli

    out = tmp_path_factory.mktemp("synth") / "debug-init"
    args = ["model", "init", "debug", str(out), "--seed", "3", "--codec", "dac:random",
            "--speaker", "ecapa:auralis"]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def reference_wav(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    path = tmp_path_factory.mktemp("ref") / "ref.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "A short reference voice for cloning."], check=True)
    return path


def test_synth_cli_writes_audio(checkpoint, reference_wav, tmp_path):
    from accord.cli.main import cli

    out = tmp_path / "out.wav"
    args = ["synth", str(checkpoint), "Hello there.", "--speaker", str(reference_wav), "--rate", "14",
            "--expressive", "--seed", "1", "--max-seconds", "0.3", "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    info = json.loads(res.output.strip().splitlines()[-1])
    wav, sr = sf.read(out, dtype="float32")
    assert sr == 44100 and info["codec"] == "dac:random"
    # speaker slot, noisy background (expressive: no accurate marker), rate, default trailing
    # silence, BOS + 12 bytes + EOS, 17 silence rows
    assert info["prompt_rows"] == 1 + 1 + 1 + 1 + 14 + 17
    assert 0 < info["frames"] <= round(0.3 * 44100 / 512)
    assert len(wav) == info["frames"] * 512 and np.isfinite(wav).all()


def test_reference_voice_reaches_the_model(checkpoint, reference_wav):
    """The real ECAPA embedding of the reference replaces the speaker slot (row 0) and changes the
    prompt's logits."""
    from accord.app.synth import speaker_embedding
    from accord.model.checkpoint import load_zonos2
    from accord.model.sequence import PromptControls, build_prompt

    spk = speaker_embedding(reference_wav, "ecapa:auralis")
    assert spk.shape == (192,) and torch.isfinite(spk).all()
    model = load_zonos2(checkpoint).eval()
    prompt = build_prompt("Same text.", PromptControls(speaker=True))[None]
    with torch.no_grad():
        plain = model(prompt).logits_BTKV
        cloned = model(prompt, speaker_NS=spk[None]).logits_BTKV
        other = model(prompt, speaker_NS=-spk[None]).logits_BTKV
    assert (plain[0, -1] - cloned[0, -1]).abs().max() > 1e-4
    assert (other[0, -1] - cloned[0, -1]).abs().max() > 1e-4


def test_unreadable_speaker_reference_is_a_clear_error(checkpoint, tmp_path):
    from accord.app.synth import SynthRequest, synthesize

    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav file")
    with pytest.raises(ValueError, match="cannot read speaker reference"):
        synthesize(checkpoint, SynthRequest("x", str(bad)), decode=False)


def test_foreign_checkpoint_without_accord_vocab_prompts_plain_text(tmp_path):
    """A released-style checkpoint (other text_vocab, no accord extra) still synthesizes codes."""
    from accord.app.synth import SynthRequest, synthesize
    from accord.model.checkpoint import save_zonos2
    from accord.model.config import get_flavour
    from accord.model.generate import SamplingConfig
    from accord.model.zonos import ZonosModel

    torch.manual_seed(0)
    ckpt = save_zonos2(ZonosModel(get_flavour("debug", text_vocab=469)), tmp_path / "foreign")
    res = synthesize(ckpt, SynthRequest("Hi.", sampling=SamplingConfig(max_frames=5, seed=0)), decode=False)
    assert res.codes_KT.shape == (9, 5)
    with pytest.raises(ValueError, match="control tokens need the vocabulary"):
        synthesize(ckpt, SynthRequest("Hi.", speaking_rate=12.0), decode=False)


def test_released_params_json_supplies_the_control_layout(tmp_path):
    """No accord extra, but ZONOS2's conditioning keys in params.json: control tokens work."""
    from accord.app.synth import SynthRequest, synthesize, vocab_from_params
    from accord.model.checkpoint import read_params, save_zonos2
    from accord.model.config import get_flavour
    from accord.model.generate import SamplingConfig
    from accord.model.zonos import ZonosModel

    torch.manual_seed(0)
    ckpt = save_zonos2(ZonosModel(get_flavour("debug")), tmp_path / "released")
    params = read_params(ckpt)
    assert params["text_vocab"] == 519 and vocab_from_params(params).size == 519
    req = SynthRequest("Hi.", speaking_rate=12.0, sampling=SamplingConfig(max_frames=3, seed=0))
    res = synthesize(ckpt, req, decode=False)
    # no speaker, so no slot or markers: rate, default trailing-silence bucket, BOS + 3 bytes + EOS,
    # 17 silence rows
    assert res.info["prompt_rows"] == 1 + 1 + 5 + 17
    assert vocab_from_params({**params, "accurate_mode_token_enabled": False}) is None
    assert vocab_from_params({**params, "text_vocab": 474}) is None
