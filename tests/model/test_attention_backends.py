"""Attention kernels: chosen explicitly per case, every backend equals the reference, packed
documents never build a [T, T] mask outside the reference path."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention.flex_attention import create_block_mask

from accord.model import kernels, masks
from accord.model.attention import attend
from accord.model.kernels import BACKENDS, Kernel, Structure, select_kernel
from accord.model.masks import AttentionMask, doc_mask, document_block_mask

from .conftest import random_ids

DOCS_BT = torch.tensor([[0] * 7 + [1] * 13 + [2] * 4, [3] * 24, [-1] * 5 + [4] * 11 + [5] * 8])


def _qkv(B=3, H=8, G=2, T=24, S=None, hd=16, dtype=torch.float32, device="cpu", grad=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    S = S or T
    q, k, v = (torch.randn(B, n, L, hd, generator=g) for n, L in ((H, T), (G, S), (G, S)))
    return [x.to(device=device, dtype=dtype).requires_grad_(grad) for x in (q, k, v)]


def _mask(backend, q, doc_ids_BT=None, explicit_B1TS=None):
    return AttentionMask.build(
        backend, device=q.device, dtype=q.dtype, head_dim=q.shape[-1], q_len=q.shape[2],
        doc_ids_BT=doc_ids_BT, explicit_B1TS=explicit_B1TS,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("backend", "device", "dtype", "hd", "structure", "q_len", "cap", "expected"),
    [
        ("auto", "cuda", torch.bfloat16, 128, Structure.DOCUMENTS, 6144, (9, 0), Kernel.FLEX),
        ("auto", "cuda", torch.bfloat16, 128, Structure.CAUSAL, 6144, (9, 0), Kernel.SDPA_FLASH),
        ("auto", "cuda", torch.bfloat16, 128, Structure.CAUSAL, 1, (9, 0), Kernel.SDPA_FLASH),
        ("auto", "cuda", torch.float32, 128, Structure.CAUSAL, 6144, (9, 0), Kernel.SDPA_EFFICIENT),
        ("auto", "cuda", torch.bfloat16, 128, Structure.EXPLICIT, 1, (9, 0), Kernel.SDPA_EFFICIENT),
        ("auto", "cuda", torch.bfloat16, 128, Structure.CAUSAL, 2048, (7, 5), Kernel.SDPA_EFFICIENT),
        ("auto", "cuda", torch.bfloat16, 96, Structure.DOCUMENTS, 2048, (9, 0), Kernel.SDPA_FLASH),
        ("auto", "cuda", torch.bfloat16, 12, Structure.CAUSAL, 2048, (9, 0), Kernel.SDPA_MATH),
        ("sdpa", "cuda", torch.bfloat16, 128, Structure.DOCUMENTS, 6144, (9, 0), Kernel.SDPA_FLASH),
        ("flex", "cuda", torch.bfloat16, 128, Structure.CAUSAL, 6144, (9, 0), Kernel.FLEX),
        ("flex", "cuda", torch.bfloat16, 128, Structure.EXPLICIT, 1, (9, 0), Kernel.SDPA_EFFICIENT),
        ("flex", "cuda", torch.bfloat16, 128, Structure.CAUSAL, 1, (9, 0), Kernel.SDPA_FLASH),
        ("auto", "cpu", torch.float32, 64, Structure.DOCUMENTS, 2048, None, Kernel.SDPA_FLASH),
        ("auto", "cpu", torch.bfloat16, 64, Structure.EXPLICIT, 3, None, Kernel.SDPA_FLASH),
        ("auto", "mps", torch.float32, 64, Structure.CAUSAL, 16, None, Kernel.SDPA_MATH),
        ("reference", "cuda", torch.bfloat16, 128, Structure.DOCUMENTS, 6144, (9, 0), Kernel.REFERENCE),
    ],
)
def test_kernel_choice_is_explicit(backend, device, dtype, hd, structure, q_len, cap, expected):
    assert select_kernel(backend, device, dtype, hd, structure, q_len, cap) is expected


def test_unknown_and_missing_backends_fail_closed():
    with pytest.raises(ValueError, match="unknown attention backend"):
        kernels.resolve_backend("cudnn")
    if "flash" not in BACKENDS:
        with pytest.raises(ValueError, match="flash-attn"):
            kernels.resolve_backend("flash")


STRUCTURES = ["causal", "documents", "explicit_prefix", "decode"]


def _case(structure: str, **kw):
    """(q, k, v, doc_ids_BT, explicit_B1TS) for one masking structure."""
    if structure == "causal":
        return (*_qkv(**kw), None, None)
    if structure == "documents":
        return (*_qkv(**kw), DOCS_BT, None)
    T, S = (5, 24) if structure == "explicit_prefix" else (1, 24)
    q, k, v = _qkv(T=T, S=S, **kw)
    valid_S = torch.arange(S) < 19  # a static cache: 19 filled slots of 24
    mask = (torch.arange(S) <= torch.arange(T).unsqueeze(1) + 19 - T) & valid_S
    return q, k, v, None, mask.expand(3, 1, T, S)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("structure", STRUCTURES)
def test_every_backend_equals_reference_on_cpu(backend, structure):
    q, k, v, docs, explicit = _case(structure)
    ref = attend(q, k, v, _mask("reference", q, docs, explicit))
    mask = _mask(backend, q, docs, explicit)
    if mask.kernel is Kernel.FLEX:  # torch 2.11 runs FlexAttention on the CPU forward-only
        with torch.no_grad():
            torch.testing.assert_close(attend(q, k, v, mask), ref, atol=1e-5, rtol=1e-5)
        return
    q, k, v = (x.detach().requires_grad_() for x in (q, k, v))
    out = attend(q, k, v, mask)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    qr, kr, vr = (x.detach().requires_grad_() for x in (q, k, v))
    ref_grads = torch.autograd.grad(
        attend(qr, kr, vr, _mask("reference", qr, docs, explicit)).square().sum(), (qr, kr, vr)
    )
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("block", [4, 8, 128])
def test_document_block_mask_equals_create_block_mask(block):
    """Same partial and full blocks as the dense-evaluated mask; T is not a multiple of block."""
    docs = DOCS_BT
    ours = document_block_mask(docs, block=block)

    def same_doc_causal(b, h, q, kv):
        return (docs[b, q] == docs[b, kv]) & (q >= kv)

    T = docs.shape[1]
    theirs = create_block_mask(same_doc_causal, docs.shape[0], None, T, T, device="cpu", BLOCK_SIZE=block)
    for name in ("kv_num_blocks", "full_kv_num_blocks"):
        assert torch.equal(getattr(ours, name).expand_as(getattr(theirs, name)), getattr(theirs, name)), name
    for name, num in (("kv_indices", "kv_num_blocks"), ("full_kv_indices", "full_kv_num_blocks")):
        n_BHQ = getattr(theirs, num)
        for b, h, i in n_BHQ.nonzero().tolist():
            n = int(n_BHQ[b, h, i])
            assert sorted(getattr(ours, name)[b, 0, i, :n].tolist()) == sorted(
                getattr(theirs, name)[b, h, i, :n].tolist()
            )


@pytest.mark.parametrize(
    ("kernel", "layout"),
    [
        (Kernel.FLEX, "block_mask"),
        (Kernel.SDPA_FLASH, "segments"),
        (Kernel.SDPA_EFFICIENT, "segments"),
        (Kernel.SDPA_MATH, "segments"),
        (Kernel.FLASH_ATTN, "cu_seqlens"),
        (Kernel.REFERENCE, "dense"),
    ],
)
def test_only_the_reference_lays_documents_out_densely(kernel, layout):
    assert kernels.documents_layout(kernel) == layout


def test_documents_build_no_dense_mask_outside_reference(monkeypatch):
    def refuse(*_):
        raise AssertionError("a [T, T] mask was built")

    monkeypatch.setattr(masks, "doc_mask", refuse)
    q, k, v = _qkv()
    for backend in BACKENDS:
        if backend == "reference":
            continue
        mask = _mask(backend, q, DOCS_BT)
        assert mask.kernel is not Kernel.REFERENCE and (mask.block_mask is not None or mask.segments)
        with torch.no_grad():
            attend(q, k, v, mask)


@pytest.mark.parametrize("kernel", [Kernel.SDPA_FLASH, Kernel.SDPA_MATH])
def test_per_document_segments_equal_reference(kernel):
    """One causal SDPA call per document, for each kernel the CPU runs."""
    q, k, v = _qkv(grad=True)
    segs = masks.doc_segments(DOCS_BT)
    assert segs[:3] == ((0, 0, 7), (0, 7, 20), (0, 20, 24)) and len(segs) == 7
    mask = AttentionMask(Structure.DOCUMENTS, kernel, doc_ids_BT=DOCS_BT, segments=segs)
    out = attend(q, k, v, mask)
    ref = attend(q, k, v, _mask("reference", q, DOCS_BT))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    g = torch.autograd.grad(out.sum(), (q, k, v))
    g_ref = torch.autograd.grad(ref.sum(), (q, k, v))
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("structure", ["explicit_prefix", "decode"])
def test_gqa_folded_into_query_length_equals_reference(structure):
    """Masked SDPA without enable_gqa (math here, memory-efficient on CUDA) folds query heads."""
    q, k, v, _, explicit = _case(structure)
    mask = AttentionMask(Structure.EXPLICIT, Kernel.SDPA_MATH, explicit_B1TS=explicit)
    ref = attend(q, k, v, _mask("reference", q, explicit_B1TS=explicit))
    torch.testing.assert_close(attend(q, k, v, mask), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_a_returning_document_id_starts_a_new_document(backend):
    """Documents are contiguous runs (as positions_from_docs counts): [0 0 1 1 0 0] is three."""
    docs = torch.tensor([[0, 0, 1, 1, 0, 0]])
    q, k, v = _qkv(B=1, T=6)
    dense = doc_mask(docs)[0, 0]
    assert not dense[4, 0] and dense[5, 4]
    with torch.no_grad():
        out = attend(q, k, v, _mask(backend, q, docs))
        three = attend(q, k, v, _mask("reference", q, torch.tensor([[0, 0, 1, 1, 2, 2]])))
    torch.testing.assert_close(out, three, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_model_with_packed_documents_equals_reference(debug_model, debug_cfg, backend):
    ids = random_ids(debug_cfg, 3, 24)
    with torch.no_grad():
        debug_model.set_attention_backend("reference")
        ref = debug_model(ids, doc_ids_BT=DOCS_BT).logits_BTKV
        debug_model.set_attention_backend(backend)
        out = debug_model(ids, doc_ids_BT=DOCS_BT).logits_BTKV
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


# -- GPU tier: every backend, packed documents, bf16, forward and backward -------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("structure", STRUCTURES)
def test_every_backend_equals_reference_on_gpu_bf16(backend, structure):  # pragma: no cover - CPU machine
    q, k, v, docs, explicit = _case(structure, hd=64, dtype=torch.bfloat16, device="cuda")
    docs = None if docs is None else docs.cuda()
    explicit = None if explicit is None else explicit.cuda()
    q, k, v = (x.detach().requires_grad_() for x in (q, k, v))
    out = attend(q, k, v, _mask(backend, q, docs, explicit))
    grads = torch.autograd.grad(out.float().square().sum(), (q, k, v))
    q32, k32, v32 = (x.detach().float().requires_grad_() for x in (q, k, v))
    ref = attend(q32, k32, v32, _mask("reference", q32, docs, explicit))
    ref_grads = torch.autograd.grad(ref.square().sum(), (q32, k32, v32))
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a.float(), b, atol=5e-2, rtol=5e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_packed_documents_at_training_length_on_gpu():  # pragma: no cover - CPU machine
    """T=4096, 8 documents of uneven length, the zonos2-8b head shape, through every backend."""
    lengths = torch.tensor([700, 300, 900, 100, 500, 800, 396, 400])
    docs = torch.repeat_interleave(torch.arange(8), lengths)[None].cuda()
    q, k, v = _qkv(B=1, H=16, G=4, T=4096, hd=128, dtype=torch.bfloat16, device="cuda")
    ref = attend(*(x.float() for x in (q, k, v)), _mask("reference", q.float(), docs))
    for backend in BACKENDS:
        qq, kk, vv = (x.detach().requires_grad_() for x in (q, k, v))
        out = attend(qq, kk, vv, _mask(backend, qq, docs))
        out.float().sum().backward()
        torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2, msg=backend)
        assert all(torch.isfinite(x.grad).all() for x in (qq, kk, vv)), backend
