"""The NeMo backend loads a real ``.nemo`` file and transcribes through ``restore_from``.

No NeMo weights exist offline: the model is a small real EncDecCTCModel (Conformer encoder,
character vocabulary) built from a config and saved as ``.nemo``; its text is meaningless
but produced by the real model code path a Parakeet/Canary checkpoint uses.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("nemo") is None, reason="accord[nemo] not installed"),
]


@pytest.fixture(scope="module")
def tiny_nemo(tmp_path_factory) -> tuple[Path, list[str]]:
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from nemo_tiny import LABELS, build_tiny_ctc_nemo
    finally:
        sys.path.pop(0)
    return build_tiny_ctc_nemo(tmp_path_factory.mktemp("nemo") / "tiny_ctc.nemo"), LABELS


def test_nemo_backend_transcribes_with_a_restored_model(tiny_nemo, english_sentences):
    from accord.pipeline.asr import create_backend
    from accord.pipeline.steps import AsrStep

    tiny_nemo, LABELS = tiny_nemo
    backend = create_backend("nemo", f"nemo:{tiny_nemo}")
    audios = [a for a, _ in english_sentences[:2]] + [np.zeros(16000, np.float32)]
    out = backend.transcribe_batch(audios)
    assert len(out) == 3
    assert all(isinstance(t.text, str) and set(t.text) <= set(LABELS) for t in out)
    # deterministic: the same audio gives the same text
    assert backend.transcribe_batch(audios[:1])[0].text == out[0].text
    # and it plugs into the step next to another system
    step = AsrStep([backend])
    items = step.process_batch([{"clip_id": "a", "source_uri": "x", "audio_16k": audios[0]}])
    assert items[0]["transcripts"][0]["system"] == "nemo"
    assert items[0]["transcripts"][0]["model"] == f"nemo:{tiny_nemo}"


def test_missing_nemo_file_is_a_clear_error(tmp_path):
    from accord.core.weights import ModelNotFound
    from accord.pipeline.asr import create_backend

    with pytest.raises(ModelNotFound):
        create_backend("nemo", f"nemo:{tmp_path / 'absent.nemo'}").load()
