"""ZONOS2's checkpoint layout: a directory with ``params.json`` and ``model.pth``.

Export writes exactly the keys ZONOS2's Python loader and zonos2.cpp's converter read (the
converter refuses any unmapped tensor, so nothing else goes into ``model.pth``: RoPE tables
are not persistent and the embedding norm has no weight). accord's own settings (vocabulary
config, codec reference, flavour, stage) go under the ``"accord"`` key of ``params.json``;
ZONOS2's loader keeps only the fields its config class knows and ignores that key.

Import accepts released ZONOS2 checkpoints: an optional ``"model"`` nesting in both files,
bf16 tensors, parametrized keys (``.parametrizations.X.original``), training-only router
buffers (dropped), and every expert layout ZONOS2's loader reads (``EXPERT_LAYOUTS``):
SonicMoE ``w13``/``w2`` (ours: gate on even rows, up on odd), unfused ``w1``/``w3``/``w2``
``.weight``, and its inference names ``gate_up_proj`` (gate rows, then up rows) /
``down_proj``; all become ``w13``/``w2``, so released weights can be fine-tuned.

Export in a lower precision keeps ``FP32_KEYS`` in float32, as the release does.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch

from accord.model.config import ModelConfig
from accord.model.zonos import ZonosModel

log = logging.getLogger(__name__)

PARAMS_FILE = "params.json"
WEIGHTS_FILE = "model.pth"
EXTRA_KEY = "accord"
# Tensors the release keeps in float32 whatever the weights' dtype (ZONOS2 Python holds the
# router's balancing biases in float32: a bf16 bias would move expert choices).
FP32_KEYS: tuple[str, ...] = (".router.balancing_biases",)
# The expert layouts import accepts (key suffixes under ``...feed_forward.experts.``).
EXPERT_LAYOUTS: dict[str, tuple[str, ...]] = {
    "sonicmoe": ("w13", "w2"),
    "unfused": ("w1.weight", "w3.weight", "w2.weight"),
    "zonos2-inference": ("gate_up_proj", "down_proj"),
}


def save_zonos2(
    model: ZonosModel, directory: str | os.PathLike, extra: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:  # fmt: skip
    """Write ``params.json`` + ``model.pth`` atomically (a temp dir, then a rename)."""
    out = Path(directory)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        params = model.cfg.to_params()
        params.update(_conditioning_params(model.cfg.text_vocab, extra))
        if extra:
            params[EXTRA_KEY] = extra
        (tmp / PARAMS_FILE).write_text(json.dumps(params, indent=2))  # key order is data (vocab)
        state = {k: export_tensor(k, v, dtype) for k, v in model.state_dict().items()}
        torch.save(state, tmp / WEIGHTS_FILE)
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def export_tensor(key: str, value: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """``value`` on the CPU, cast to ``dtype`` when it is floating point and not one of ``FP32_KEYS``."""
    cast = dtype is not None and value.is_floating_point() and not key.endswith(FP32_KEYS)
    return value.detach().to("cpu", dtype=dtype if cast else value.dtype).contiguous()


def read_params(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / PARAMS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: a ZONOS2 checkpoint directory holds params.json + model.pth"
        )
    params = json.loads(path.read_text())
    if isinstance(params.get("model"), dict):
        params = {**params["model"], **{k: v for k, v in params.items() if k != "model"}}
    model_type = params.get("model_type")
    if model_type is not None and str(model_type) != "zonos2":
        raise ValueError(f"{path}: model_type={model_type!r}, expected 'zonos2'")
    return params


def _conditioning_params(text_vocab: int, extra: dict[str, Any] | None) -> dict[str, Any]:
    """ZONOS2's control-token fields when the model was built with an accord vocabulary.

    With them ZONOS2's server finds the speaking-rate, quality, background and accurate-mode
    tokens at the tail of ``text_vocab``; a model of another vocabulary advertises none.
    """
    from accord.core.vocab import Vocab, VocabConfig

    cfg = (extra or {}).get("vocab")
    try:
        vocab = Vocab(VocabConfig.from_dict(cfg)) if isinstance(cfg, dict) else Vocab()
    except (TypeError, ValueError, AttributeError):
        return {}
    return vocab.zonos2_params() if vocab.size == text_vocab else {}


def read_extra(directory: str | os.PathLike) -> dict[str, Any]:
    """accord's settings stored beside the ZONOS2 fields (empty for a released checkpoint)."""
    return dict(read_params(directory).get(EXTRA_KEY) or {})


def _normalise_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if "model" in state and not any(k.startswith("layers.") for k in state):
        state = state["model"]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if ".router.ent_denom" in key or ".router.normalized_entropy" in key:
            continue  # training-only statistics
        if ".parametrizations." in key and key.endswith(".original"):
            key = key.replace(".parametrizations.", ".").removesuffix(".original")
        out[key] = value
    for key in [k for k in out if k.endswith(".experts.w1.weight")]:
        prefix = key.removesuffix("w1.weight")
        if prefix + "w3.weight" not in out:
            continue  # half a layout: check_expert_layout names what is there
        w1, w3 = out.pop(key), out.pop(prefix + "w3.weight")  # gate, up: [E, I, D]
        out[prefix + "w13"] = interleave_gate_up(w1, w3)
        if prefix + "w2.weight" in out:
            out[prefix + "w2"] = out.pop(prefix + "w2.weight")
    for key in [k for k in out if k.endswith(".experts.gate_up_proj")]:
        prefix = key.removesuffix("gate_up_proj")
        gate_up = out.pop(key)  # [E, 2I, D]: the gate rows, then the up rows
        if gate_up.dim() != 3 or gate_up.shape[1] % 2:
            raise ValueError(f"{key}: expected [experts, 2 * intermediate, dim], got {tuple(gate_up.shape)}")
        out[prefix + "w13"] = interleave_gate_up(*gate_up.chunk(2, dim=1))
        if prefix + "down_proj" in out:
            out[prefix + "w2"] = out.pop(prefix + "down_proj")  # [E, D, I], as w2
    return out


def interleave_gate_up(gate_EID: torch.Tensor, up_EID: torch.Tensor) -> torch.Tensor:
    """accord's ``w13`` [E, 2I, D]: gate on even rows, up on odd rows (SonicMoE's layout)."""
    return torch.stack([gate_EID, up_EID], dim=2).flatten(1, 2)


def check_expert_layout(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], where: str
) -> None:
    """Each MoE layer's experts that the checkpoint holds came in one of ``EXPERT_LAYOUTS``; else
    say what was found (a layer with no experts at all is a params.json mismatch, reported later)."""
    for key in [k for k in expected if k.endswith(".experts.w13")]:
        prefix = key.removesuffix("w13")
        found = sorted(k.removeprefix(prefix) for k in state if k.startswith(prefix))
        if not found or (key in state and prefix + "w2" in state):
            continue
        accepted = "; ".join(f"{name}: {', '.join(keys)}" for name, keys in EXPERT_LAYOUTS.items())
        raise ValueError(
            f"{where}: the experts of {prefix.rstrip('.')} fit no layout ZONOS2 uses: found "
            f"{found}, expected one of {accepted}"
        )


def load_state(directory: str | os.PathLike, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=not trust_pickle, mmap=True)
    except Exception as e:
        if trust_pickle:
            raise
        raise ValueError(
            f"{path} holds more than tensors ({type(e).__name__}); if you trust its source, "
            "load it with trust_pickle=True (accord model convert --trust-pickle)"
        ) from e
    return _normalise_state(state)


def config_from_checkpoint(params: dict[str, Any], state: dict[str, torch.Tensor]) -> ModelConfig:
    """ModelConfig from params.json; widths params.json may omit come from tensor shapes."""
    router_dim = next((v.shape[0] for k, v in state.items() if k.endswith(".router.down_proj.weight")), None)
    cfg = ModelConfig.from_params(params, router_dim=router_dim)
    lda = state.get("speaker_lda_projection.weight")
    if lda is not None:
        cfg = cfg.replace(speaker_lda_dim=int(lda.shape[0]), speaker_embedding_dim=int(lda.shape[1]))
    return cfg


def load_zonos2(
    directory: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    trust_pickle: bool = False,
) -> ZonosModel:
    """Build a ZonosModel from a ZONOS2-layout directory (ours or a released one)."""
    params = read_params(directory)
    state = load_state(directory, trust_pickle=trust_pickle)
    cfg = config_from_checkpoint(params, state)
    with torch.device("meta"):
        model = ZonosModel(cfg)
    expected = model.state_dict()
    check_expert_layout(state, expected, str(directory))
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    speaker_keys = {k for k in expected if k.startswith(("speaker_lda_projection.", "speaker_projection."))}
    if unexpected or set(missing) - speaker_keys:
        raise ValueError(
            f"{directory}: checkpoint does not match its params.json: missing {sorted(missing)[:8]}, "
            f"unexpected {sorted(unexpected)[:8]}"
        )
    model = model.to_empty(device=device)
    model.init_weights()  # fills anything the checkpoint lacks (a speaker-less release)
    if missing:
        log.warning("%s has no speaker projection; it starts from random init: %s", directory, missing)
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise ValueError(
                f"{directory}: {k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}"
            )
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=False)
    return model.to(device=device, dtype=dtype)


@torch.no_grad()
def init_speaker_lda(model: ZonosModel, lda_uri: str | os.PathLike, exact: bool = True) -> None:
    """Copy an ``lda.npz`` (``weight`` [lda, D_spk], ``bias`` [lda]; the mean is folded into the
    bias; local path or URI) into ``speaker_lda_projection``.

    ``exact``: the LDA dims must equal the model's (``accord model init --lda``). Otherwise a
    projection with more or fewer dims is cut or zero-padded, so any flavour trains on any
    shards; the speaker embedding width must match either way.
    """
    import io

    import numpy as np

    from accord.core.storage import read_bytes

    with np.load(io.BytesIO(read_bytes(lda_uri))) as z:
        weight, bias = torch.from_numpy(z["weight"]).float(), torch.from_numpy(z["bias"]).float()
    proj = model.speaker_lda_projection
    out_dim, in_dim = proj.weight.shape
    if exact and tuple(weight.shape) != (out_dim, in_dim):
        raise ValueError(
            f"{lda_uri}: LDA weight {tuple(weight.shape)} does not fit the model's "
            f"{(out_dim, in_dim)}; set speaker_lda_dim/speaker_embedding_dim from the file"
        )
    if weight.shape[1] != in_dim:
        raise ValueError(f"{lda_uri} projects {weight.shape[1]}-d embeddings, the model expects {in_dim}-d")
    d = min(out_dim, weight.shape[0])
    if weight.shape[0] != out_dim:
        msg = "%s has %d dims, the model %d: using the first %d, the rest zero"
        log.warning(msg, lda_uri, weight.shape[0], out_dim, d)
    proj.weight.zero_()
    proj.bias.zero_()
    proj.weight[:d] = weight[:d]
    proj.bias[:d] = bias[:d]
