"""Exact save/resume of a stage, and the ZONOS2-layout export of its final weights.

A checkpoint is DeepSpeed's (model, optimizer incl. ZeRO partitions, LR scheduler) under
``RUN/checkpoints/step_XXXXXXXX`` plus, per rank, ``trainer_rank{r}.pt``: the step, the data
loader position and every RNG state (python, numpy, torch, CUDA), and under expert
parallelism that rank's local experts. Restoring all of it makes the resumed loss sequence
identical to an uninterrupted run on CPU.

Faults. A tag is published in ``latest`` only once every rank's files are written and synced,
and ``latest`` itself is replaced atomically (DeepSpeed's own writer truncates it first, so a
kill there left it empty). Resuming checks every file a tag needs (present, a whole
``torch.save`` archive, the trainer state loadable with its keys) on every rank, and takes the
newest tag that passes, from ``latest`` down (a tag after ``latest`` is a save that never
finished); without a usable ``latest`` it scans the tags. Skipping a bad tag logs one line
naming its bad file and the step resumed from; when none passes, :class:`CheckpointError` names
every bad file on one line, and nothing trains from step 0 over a published checkpoint. The
trainer state goes through ``storage.AtomicFile`` (a failed write leaves no temp file) and a
resume sweeps the temp files of writers that were killed, by storage's one rule. A save removes
the tags older than its ``keep_last`` and any after it (the timeline a fallback abandoned).
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from accord.core import storage
from accord.core.errors import UserError

log = logging.getLogger(__name__)

TAG_PREFIX = "step_"
LATEST = "latest"
TRAINER_KEYS = ("step", "data", "rng")


class CheckpointError(UserError, RuntimeError):
    """A run dir none of whose checkpoints can be resumed: the message names every bad file and
    the fix on one line (a ``UserError``: the CLI prints that line, no traceback)."""


def one_line(e: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line (torch's and DeepSpeed's messages span several)."""
    return f"{type(e).__name__}: {' '.join(str(e).split())}"[:limit]


def tag_for(step: int) -> str:
    return f"{TAG_PREFIX}{step:08d}"


def tag_step(tag: str) -> int | None:
    """The step of a ``step_XXXXXXXX`` tag; None for any other name (an empty one included)."""
    digits = tag[len(TAG_PREFIX) :] if tag.startswith(TAG_PREFIX) else ""
    return int(digits) if digits.isdigit() else None


def trainer_file(rank: int) -> str:
    return f"trainer_rank{rank}.pt"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def saved_tags(ckpt_dir: Path) -> list[str]:
    """The tag directories in ``ckpt_dir``, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    tags = [p.name for p in ckpt_dir.iterdir() if p.is_dir() and tag_step(p.name) is not None]
    return sorted(tags, key=lambda t: tag_step(t) or 0)


def read_latest(ckpt_dir: Path) -> tuple[str | None, str | None]:
    """(the tag ``latest`` names, why it names none): (None, None) when there is no ``latest``."""
    f = ckpt_dir / LATEST
    if not f.exists():
        return None, None
    try:
        text = f.read_text(errors="replace").strip()
    except OSError as e:
        return None, f"{f} is unreadable ({e})"
    if not text:
        return None, f"{f} is empty"
    if tag_step(text) is None or not (ckpt_dir / text).is_dir():
        return None, f"{f} names {text[:40]!r}, which is no checkpoint here"
    return text, None


def latest_tag(ckpt_dir: Path) -> str | None:
    """The tag ``latest`` publishes, if it names one that exists (files unchecked)."""
    return read_latest(ckpt_dir)[0]


def torch_file_problem(path: Path) -> str | None:
    """Why ``path`` is not a whole ``torch.save`` archive (missing, empty, truncated); None if it
    is. Reads only the zip directory at the end of the file, so checking optimizer states of any
    size costs a seek: a cut or zero-filled tail loses that directory."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size == 0:
        return "empty"
    try:
        with zipfile.ZipFile(path) as z:
            entries = z.infolist()
    except Exception as e:  # BadZipFile, OSError, struct errors of a mangled directory
        return f"truncated or not a torch file ({one_line(e)})"
    if not entries or any(i.header_offset + i.compress_size > size for i in entries):
        return "truncated"
    return None


def check_tag(ckpt_dir: Path, tag: str, rank: int, world: int, zero: bool) -> tuple[list[str], dict | None]:
    """This rank's view of ``tag``: its problems ("FILE: why"), and this rank's trainer state.

    Every rank checks every file of the (shared) tag dir, and :func:`all_ranks` merges the
    verdicts; the trainer state is loaded here, once, as its keys are part of the check."""
    d = ckpt_dir / tag
    files = {p.name: p for p in d.glob("*.pt") if not p.name.startswith(".")}  # not a temp file
    problems = []
    if not any(n.endswith("model_states.pt") for n in files):
        problems.append(f"{d}/*model_states.pt: missing")
    if zero:  # one ZeRO optimizer partition per data-parallel rank
        for r in range(world):
            if not any(f"zero_pp_rank_{r}_" in n and n.endswith("optim_states.pt") for n in files):
                problems.append(f"{d}/*zero_pp_rank_{r}_*optim_states.pt: missing")
    for r in range(world):
        files.setdefault(trainer_file(r), d / trainer_file(r))
    for name in sorted(files):
        why = torch_file_problem(files[name])
        if why:
            problems.append(f"{files[name]}: {why}")
    if problems:
        return problems, None
    path = d / trainer_file(rank)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        return [f"{path}: unreadable ({one_line(e)})"], None
    missing = [k for k in TRAINER_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        return [f"{path}: no {', '.join(missing)}"], None
    if state["step"] != tag_step(tag):
        return [f"{path}: holds step {state['step']}, not {tag_step(tag)}"], None
    return [], state


def all_ranks(problems: list[str]) -> list[str]:
    """Every rank's problems with a tag (each rank decides the same way, on the same facts)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return problems
    gathered: list[list[str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, problems)
    return list(dict.fromkeys(p for ps in gathered for p in ps or []))


def fsync_tree(d: Path) -> None:
    """Flush every file of a tag and the directory entries to disk, before ``latest`` names it
    (DeepSpeed writes without syncing; a power loss would publish holes)."""
    for p in sorted(d.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    for p in (d, d.parent):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sweep_dead_temp(ckpt_dir: Path) -> int:
    """Remove the temp files of writers that died mid-save (a SIGKILL skips every cleanup), by
    storage's one sweep rule: a live run's file in progress is kept."""
    if not ckpt_dir.is_dir():
        return 0
    fs, root = storage.open_fs(str(ckpt_dir))
    dirs = [root] + [f"{root}/{t}" for t in saved_tags(ckpt_dir)]
    return sum(storage.sweep_temp(fs, d) for d in dirs)


def save(
    engine: Any,
    ckpt_dir: Path,
    step: int,
    data_state: dict[str, Any],
    rank: int,
    extra: dict[str, Any] | None = None,
    local_experts: dict[str, torch.Tensor] | None = None,
    keep_last: int = 2,
) -> str:
    """Save everything needed to continue at ``step`` exactly; every rank must call it."""
    tag = tag_for(step)
    trainer_state = {
        "step": step,
        "data": data_state,
        "rng": rng_state(),
        "extra": extra or {},
        "local_experts": local_experts,
    }
    # our per-rank file first (atomic: a failed write leaves no temp file), then DeepSpeed's
    # tag, then ``latest`` (ours, atomic) once every rank's files are on disk
    (ckpt_dir / tag).mkdir(parents=True, exist_ok=True)
    out = storage.AtomicFile(str(ckpt_dir / tag / trainer_file(rank)))
    try:
        torch.save(trainer_state, out.file)
    except BaseException:
        out.abort()
        raise
    out.commit()
    if local_experts is not None:  # expert parallel: our fused expert blocks, before `latest` moves
        from accord.train.parallel import save_expert_files

        save_expert_files(engine, str(ckpt_dir), tag)
        if dist.is_initialized():
            dist.barrier()
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state={"step": step}, save_latest=False)
    if dist.is_initialized():
        dist.barrier()
    if rank == 0:
        fsync_tree(ckpt_dir / tag)
        storage.atomic_write_bytes(ckpt_dir / LATEST, tag.encode())
        # older than the last ``keep_last``, or after this one: a timeline a fallback abandoned
        tags = saved_tags(ckpt_dir)
        stale = [t for t in tags if (tag_step(t) or 0) > step]
        if keep_last > 0:
            stale += [t for t in tags if (tag_step(t) or 0) <= step][:-keep_last]
        for old in stale:
            shutil.rmtree(ckpt_dir / old, ignore_errors=True)
    if dist.is_initialized():
        dist.barrier()
    return tag


def candidates(ckpt_dir: Path) -> tuple[list[str], str | None, bool]:
    """(tags to try, newest first; why ``latest`` cannot be followed; whether a tag was ever
    published). Tags after ``latest`` are saves that never finished; without a usable ``latest``
    every tag is a candidate."""
    latest, problem = read_latest(ckpt_dir)
    tags = saved_tags(ckpt_dir)[::-1]
    if latest is not None:
        tags = [t for t in tags if (tag_step(t) or 0) <= (tag_step(latest) or 0)]
    elif problem is None and tags:
        problem = f"{ckpt_dir / LATEST} is missing"
    return tags, problem, (ckpt_dir / LATEST).exists()


def rank0_view(view: Any) -> Any:
    """Rank 0's ``view`` on every rank, so all ranks walk the same tags (and collectives)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return view
    box = [view]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def pick(engine: Any, ckpt_dir: Path, rank: int) -> tuple[str, dict[str, Any]] | None:
    """The newest tag every rank can resume from, and this rank's trainer state; None for a
    fresh run. Logs one line for what it skipped; raises :class:`CheckpointError` when nothing
    published can be resumed."""
    world = dist.get_world_size() if dist.is_initialized() else 1
    zero = bool(engine.zero_optimization())
    tags, latest_problem, published = rank0_view(candidates(ckpt_dir))
    skipped = [latest_problem] if latest_problem else []
    for tag in tags:
        problems, state = check_tag(ckpt_dir, tag, rank, world, zero)
        problems = all_ranks(problems)
        if not problems and state is not None:
            if skipped and rank == 0:
                log.warning("%s; resuming from %s at step %d", "; ".join(skipped), tag, state["step"])
            return tag, state
        skipped.append(f"{tag} unusable: {'; '.join(problems)}")
    if not published and not tags:
        return None
    if not published:  # saves that never finished, none of them complete: nothing was lost
        if rank == 0:
            log.warning(
                "no complete checkpoint in %s (%s); starting from step 0", ckpt_dir, "; ".join(skipped)
            )
        return None
    raise CheckpointError(
        f"no usable checkpoint in {ckpt_dir}: {'; '.join(skipped) or 'no step_* directory'}; "
        f"restore the files, or move {ckpt_dir} aside to start the stage over"
    )


def load(engine: Any, ckpt_dir: Path, rank: int) -> dict[str, Any] | None:
    """Restore the newest good checkpoint in ``ckpt_dir`` into ``engine``; the trainer state
    (None for a fresh run)."""
    if rank == 0:
        sweep_dead_temp(ckpt_dir)
    picked = pick(engine, ckpt_dir, rank)
    if picked is None:
        return None
    tag, state = picked
    try:
        path, _ = engine.load_checkpoint(str(ckpt_dir), tag=tag, load_module_strict=True)
    except Exception as e:  # the files passed the check: say which tag, on one line
        raise CheckpointError(f"DeepSpeed could not load checkpoint {ckpt_dir / tag}: {one_line(e)}") from e
    if path is None:
        raise CheckpointError(f"DeepSpeed could not load checkpoint {ckpt_dir / tag}")
    # on the host whatever device wrote it (RNG states must be CPU tensors; expert blocks are
    # copied into the live parameters, wherever those are)
    if state.get("local_experts"):
        from accord.train.parallel import load_local_expert_state

        load_local_expert_state(engine.module, state["local_experts"])
    set_rng_state(state["rng"])
    log.info("resumed from %s at step %d", ckpt_dir / tag, state["step"])
    return state


# --- final weights ----------------------------------------------------------------------------


def clean_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop activation-checkpoint wrapper prefixes so keys equal ZONOS2's."""
    return {k.replace("_checkpoint_wrapped_module.", ""): v for k, v in sd.items()}


def export_zonos2(
    state_dict: dict[str, torch.Tensor], model_cfg: Any, out_dir: Path, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``state_dict`` (full, unsharded) as a ZONOS2 checkpoint dir via accord.model.checkpoint."""
    from accord.model.checkpoint import save_zonos2
    from accord.model.zonos import ZonosModel

    with torch.device("meta"):
        model = ZonosModel(model_cfg)
    model.load_state_dict(clean_state_dict(state_dict), strict=True, assign=True)
    return save_zonos2(model, out_dir, extra=extra)  # atomic: temp dir, then rename


def load_init_weights(model: nn.Module, init: Path) -> None:
    """Weights only from a previous stage's ZONOS2 export (optimizer, schedule, data fresh)."""
    from accord.model.checkpoint import load_zonos2

    src = load_zonos2(init)
    missing, unexpected = model.load_state_dict(src.state_dict(), strict=False)
    if missing or unexpected:
        raise ValueError(f"init checkpoint {init} does not match: missing={missing} unexpected={unexpected}")
