"""Train-test fixtures: shards (synthetic for unit tests, tokenized from the sample bucket for
integration tests) and the environment for trainer subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from accord.train.synthetic import write_synthetic_shards

from ..determinism import ISA_VARIABLES

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def synthetic_shards(tmp_path_factory) -> Path:
    """TEST FIXTURE: 24 patterned clips in 3 shards (accord.train.synthetic)."""
    return write_synthetic_shards(tmp_path_factory.mktemp("synthetic_shards"))


@pytest.fixture(scope="session")
def bucket_shards(sample_bucket, tmp_path_factory) -> Path:
    """Real shards: sentences of three English files of the generated bucket, tokenized by
    accord.tokenize (DAC architecture with its seeded random weights, opted in with
    ``dac:random`` and recorded in tokenize.json; auralis ECAPA)."""
    import torch

    from accord.tokenize.codec import CodecConfig
    from accord.tokenize.job import TokenizeConfig, run_tokenize
    from accord.tokenize.sample_manifest import rows_from_bucket, write_manifest
    from accord.tokenize.speaker import SpeakerConfig

    torch.set_num_threads(2)
    files = sorted(
        n
        for n, t in sample_bucket.truth.items()
        if t.get("sentences")
        and t["sentences"][0].get("language") == "en"
        and t.get("background") in (None, "clean")
    )[:3]
    rows = rows_from_bucket(sample_bucket, files=files, per_file=2, max_seconds=1.5)
    base = tmp_path_factory.mktemp("bucket_shards")
    manifest = write_manifest(rows, base / "ingest")
    out = base / "shards"
    cfg = TokenizeConfig(
        executor="local", codec=CodecConfig(ref="dac:random"), speaker=SpeakerConfig(ref="ecapa:auralis")
    )
    # every stage eligible as ingest recorded it (truth rows lack the features the default
    # thresholds would re-check), so the curriculum has data for all four stages
    run_tokenize(str(manifest), str(out), config=cfg, reapply=False)
    return out


@pytest.fixture(scope="session")
def process_group():
    """The one-process gloo group that in-process Trainers join (``init_distributed``), shut down
    once, at the end of the session: DeepSpeed caches its groups, so a Trainer built after a
    shutdown in the same process fails (``Group ... is not registered``)."""
    yield
    from accord.train.stage import shutdown

    shutdown()


@pytest.fixture(scope="module")
def trainer_process(process_group):
    """This process as the CLI runs in tests (``train_env``) for a module of in-process Trainers:
    no torch.compile (compiling Muon's Newton-Schulz per matrix shape costs more than these few
    steps), and the rendezvous variables a Trainer sets are not left behind."""
    import torch._dynamo

    env = dict(os.environ)
    with torch._dynamo.config.patch(disable=True):
        yield
    os.environ.clear()
    os.environ.update(env)


@pytest.fixture(scope="session")
def train_env() -> dict[str, str]:
    """Environment for trainer subprocesses: CPU DeepSpeed, cached op builds, one thread each.
    MKL runs its native kernels here: the suite's AVX2 pin (tests/determinism.py) is for
    Whisper's int8 words, which no trainer runs, and it made torch's float32 matmuls ~1.5x slower;
    the trainer's checks compare runs on one machine or hold golden losses to +-0.02."""
    env = {k: v for k, v in os.environ.items() if k not in ISA_VARIABLES}
    env.update(
        DS_ACCELERATOR="cpu",
        TORCH_EXTENSIONS_DIR=env.get("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions")),
        ACCORD_CACHE=env.get("ACCORD_CACHE", str(REPO / ".cache" / "accord")),
        TORCHDYNAMO_DISABLE="1",
        ACCORD_TRAIN_THREADS="1",
        OMP_NUM_THREADS="1",
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONUNBUFFERED="1",
    )
    return env


# --- helpers shared with the GPU tier (tests/gpu) ------------------------------------------------

TRAIN_CLI = [sys.executable, "-m", "accord.cli.main", "train"]


def torchrun(nproc: int, port_offset: int = 0) -> list[str]:
    """``torch.distributed.run`` for ``nproc`` local processes, on a port keyed on this pytest
    process (``port_offset`` keeps two launchers of one session apart)."""
    port = 29500 + (os.getpid() + port_offset) % 1000
    run = [sys.executable, "-m", "torch.distributed.run"]
    return [*run, "--nproc_per_node", str(nproc), "--master_port", str(port)]


def run_cli(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    """``accord train ARGS`` in a subprocess; fails the test with the tail of its output."""
    out = subprocess.run(TRAIN_CLI + args, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    return out


def losses_of(run: Path) -> list[float]:
    from accord.train.metrics import read_metrics

    return [r["loss"] for r in read_metrics(run)]


def falls(losses: list[float], margin: float = 0.05) -> bool:
    """The mean of the last quarter is below the mean of the first quarter by ``margin``."""
    k = max(2, len(losses) // 4)
    return sum(losses[-k:]) / k < sum(losses[:k]) / k - margin


def kill_after_checkpoint(
    args: list[str], env: dict[str, str], ckpt_dir: Path, at_step: int, timeout: float = 180
) -> str | None:
    """Start ``accord train ARGS`` and SIGKILL it once ``ckpt_dir/latest`` reaches ``at_step``.

    Returns the tag it was killed at (None if the process ended or never got there).
    """
    proc = subprocess.Popen(TRAIN_CLI + args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = ckpt_dir / "latest"
    want = f"step_{at_step:08d}"
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None:
            if latest.exists() and latest.read_text().strip() >= want:
                break
            time.sleep(0.05)
        alive = proc.poll() is None
        killed_at = latest.read_text().strip() if latest.exists() else None
        if alive:
            os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    return killed_at if alive else None


ENGINE_PARITY_SCRIPT = r"""
import json, sys, torch
from accord.model.config import get_flavour
from accord.model.zonos import ZonosModel
from accord.train.data import LoaderConfig, StageLoader
from accord.train.engine import (apply_activation_checkpointing, build_engine, build_optimizer,
                                 build_scheduler, init_distributed)
from accord.train.examples import ExampleBuilder
from accord.train.loss import training_loss
from accord.train.recipe import load_recipe

p = json.loads(sys.argv[1])
torch.manual_seed(0)
recipe = load_recipe("pretrain", debug=True)
cfg = get_flavour(p["flavour"])
loader = StageLoader(
    LoaderConfig(root=p["shards"], stage="pretrain", max_frames=p["max_frames"],
                 audio_pad_id=cfg.audio_pad_id, text_pad_id=cfg.text_pad_id),
    ExampleBuilder(recipe.conditioning),
)
batches = loader.step_batches(p["steps"])
info = init_distributed()
bare = ZonosModel(cfg)
ds_model = ZonosModel(cfg)
ds_model.load_state_dict(bare.state_dict())
bare.to(info.device)
ds_model.to(info.device)  # first: the MoE kernel probe of the AC wrapper runs on the device
if p["checkpointing"]:
    apply_activation_checkpointing(ds_model)
opt = build_optimizer(bare, recipe.optim)
sched = build_scheduler(opt, 100, recipe.optim)
recipe.engine.zero_stage = p["zero_stage"]
recipe.engine.precision = p["precision"]
engine, *_ = build_engine(ds_model, recipe.engine, recipe.optim, 100, info)

def loss(model, b):
    out = model(b.ids_BTC, doc_ids_BT=b.doc_ids_BT)
    return training_loss(out.logits_BTKV, b.ids_BTC, b.mask_BTK, out.balance_loss, 0.01).loss

bare_l, ds_l = [], []
for b in batches:
    b = b.to(info.device)
    lo = loss(bare, b)
    lo.backward()
    torch.nn.utils.clip_grad_norm_(bare.parameters(), recipe.optim.grad_clip)
    opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
    bare_l.append(lo.item())
    lo = loss(engine, b)
    engine.backward(lo)
    engine.step()
    ds_l.append(lo.item())
diff = max((a.float() - b.float()).abs().max().item()  # the wrapper keeps parameter order
           for a, b in zip(bare.parameters(), engine.module.parameters(), strict=True))
print(json.dumps({"bare": bare_l, "ds": ds_l, "param_diff": diff, "device": str(info.device),
                  "allreduce": engine.enable_backward_allreduce}))
"""


def engine_parity(
    shards: Path,
    env: dict[str, str],
    flavour: str = "debug",
    zero_stage: int = 0,
    precision: str = "fp32",
    checkpointing: bool = False,
    max_frames: int = 512,
    steps: int = 3,
) -> dict:
    """A bare PyTorch loop and the DeepSpeed engine from the same weights on the same batches
    (subprocess: DeepSpeed initialises torch.distributed, which a test process should not keep)."""
    params = dict(shards=str(shards), flavour=flavour, zero_stage=zero_stage, precision=precision,
                  checkpointing=checkpointing, max_frames=max_frames, steps=steps)  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", ENGINE_PARITY_SCRIPT, json.dumps(params)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
