"""Packed training rows: attention stays inside each clip, positions restart per clip."""

from __future__ import annotations

import pytest
import torch

from accord.model.kernels import BACKENDS
from accord.model.sequence import build_sequence, pack
from accord.model.zonos import positions_from_docs


def test_positions_restart_per_document():
    docs = torch.tensor([[0, 0, 0, 5, 5, -1, -1]])
    assert positions_from_docs(docs).tolist() == [[0, 1, 2, 0, 1, 0, 1]]


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_clip_logits_identical_alone_and_packed(debug_model, debug_cfg, backend):
    debug_model.set_attention_backend(backend)
    g = torch.Generator().manual_seed(0)
    a = build_sequence(torch.randint(0, 1024, (9, 11), generator=g), "first clip")
    b = build_sequence(torch.randint(0, 1024, (9, 6), generator=g), "second")
    spk = torch.randn(2, debug_cfg.speaker_embedding_dim, generator=g)
    la, lb = a.ids_TC.shape[0], b.ids_TC.shape[0]
    batch = pack([b, a], max_len=la + lb + 3)  # b first, a behind it, then padding rows
    assert batch.ids_BTC.shape[0] == 1
    with torch.no_grad():
        packed = debug_model(
            batch.ids_BTC,
            doc_ids_BT=batch.doc_ids_BT,
            speaker_NS=spk[batch.seq_index_N],
            speaker_pos_N2=batch.speaker_pos_N2,
        ).logits_BTKV
        alone_a = debug_model(a.ids_TC[None], speaker_NS=spk[1:2]).logits_BTKV
        alone_b = debug_model(b.ids_TC[None], speaker_NS=spk[0:1]).logits_BTKV
    torch.testing.assert_close(packed[0, lb : lb + la], alone_a[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed[0, :lb], alone_b[0], atol=1e-5, rtol=1e-5)
    # without the document mask the second clip would see the first one
    with torch.no_grad():
        leaky = debug_model(
            batch.ids_BTC, speaker_NS=spk[batch.seq_index_N], speaker_pos_N2=batch.speaker_pos_N2
        )
    assert (leaky.logits_BTKV[0, lb : lb + la] - alone_a[0]).abs().max() > 1e-3
