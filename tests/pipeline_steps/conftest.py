"""Session-scoped models and VAD clips shared by the pipeline-steps tests."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("ACCORD_CACHE", os.path.join(os.path.dirname(__file__), "..", "..", ".cache", "accord"))


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    import torch

    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def whisper_base():
    from accord.pipeline.asr import create_backend

    backend = create_backend("faster-whisper", "whisper:base", threads=2)
    backend.load()
    return backend


@pytest.fixture(scope="session")
def moonshine_tiny():
    from accord.pipeline.asr import create_backend

    backend = create_backend("moonshine", "moonshine:tiny-en")
    backend.load()
    return backend


@pytest.fixture(scope="session")
def moonshine_library():
    """The same model through moonshine-voice's own C library: the reference engine."""
    from accord.pipeline.asr import create_backend

    backend = create_backend("moonshine", "moonshine:tiny-en", engine="library")
    backend.load()
    return backend


@pytest.fixture(scope="session")
def bucket_clips(sample_bucket):
    """file name -> list of clip items (DecodeStep + VadStep), or the ItemError it raised."""
    from accord.pipeline.steps import DecodeStep, ItemError, VadStep

    decode, vad = DecodeStep(), VadStep()
    out: dict[str, object] = {}
    for name in sorted(sample_bucket.truth):
        try:
            out[name] = vad.process(decode.process({"uri": str(sample_bucket.path / name)})[0])
        except ItemError as e:
            out[name] = e
    return out
