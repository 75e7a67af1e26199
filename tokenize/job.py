"""The tokenize job: manifest → DAC codes + ECAPA embeddings → WebDataset shards.

Flow: read the manifest with stage eligibility re-applied, keep clips eligible for
``min_stage``, plan shards (sorted clip ids, chunked), skip finished shards, then stream the
rest through three stages — read (each clip from its *source* at 44.1 kHz), codec (DAC actor
pool), speaker (ECAPA actor pool: full clip, a crop, K augmented copies) — and write shards on
the driver as each one's clips arrive. A clip that fails anywhere becomes an ``errors/`` row
(ERROR_SCHEMA) and the job goes on. The stages are plain callables over a list of items:
Ray Data runs them as tasks and actor pools (``executor="ray"``), tests and benchmarks can
run them in-process (``executor="local"``) with identical results.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
from accord.tokenize.augment import AugmentConfig, augment
from accord.tokenize.augment import rng_for as _rng_for
from accord.tokenize.codec import HOP_LENGTH, CodecConfig, DacCodec, n_frames_for
from accord.tokenize.codec import SAMPLE_RATE as CODEC_RATE
from accord.tokenize.shards import (
    RANDOM_WEIGHTS_KEY,
    ShardConfig,
    ShardWriter,
    atomic_write_bytes,
    check_key,
    is_done,
    plan_shards,
    remove_stale,
    write_index,
)
from accord.tokenize.speaker import SAMPLE_RATE as SPEAKER_RATE
from accord.tokenize.speaker import SpeakerConfig, SpeakerEncoder
from accord.tokenize.vocab import DEFAULT_VOCAB, Vocab, VocabConfig

from accord.schema import FEATURE_FIELDS, SCHEMA_VERSION
from accord.stages import STAGES, stage_index
from accord.weights import choose_weights

log = logging.getLogger(__name__)

Item = dict[str, Any]


@dataclass
class TokenizeConfig:
    codec: CodecConfig = field(default_factory=CodecConfig)
    speaker: SpeakerConfig = field(default_factory=SpeakerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    crop_fraction: float = 0.3  # of the clip, clamped to crop_seconds
    crop_seconds: tuple[float, float] = (1.0, 3.0)
    min_clip_seconds: float = 0.3
    max_short_read_s: float = 0.05  # a source shorter than the clip by more than this is an error
    verify_sha256: bool = False  # re-hash each source once per worker and compare with the manifest
    batch_size: int = 8  # clips per model batch
    executor: str = "ray"  # "ray" | "local"
    torch_threads: int = 2
    # Ray resources (fractional CPUs on small machines; num_gpus on a cluster).
    read_num_cpus: float = 0.25
    dac_actors: int = 1
    dac_num_cpus: float = 1.0
    dac_num_gpus: float = 0.0
    speaker_actors: int = 1
    speaker_num_cpus: float = 0.5
    speaker_num_gpus: float = 0.0


# ---------------------------------------------------------------- manifest


def read_clips(
    manifest_uri: str, min_stage: str = "pretrain", thresholds: Any = None, reapply: bool = True
) -> list[Item]:
    """Clip rows eligible for ``min_stage``, eligibility re-applied at read time, one per clip id.

    ``manifest_uri`` is an ingest output dir (holding ``manifest/``), a dataset dir of Parquet
    files, or one Parquet file.
    """
    import pyarrow.dataset as ds
    from accord.pipeline.io.fs import open_fs

    stage_index(min_stage)
    fs, path = open_fs(manifest_uri)
    if fs.isdir(f"{path.rstrip('/')}/manifest"):
        from accord.pipeline.manifest.read import read_manifest

        try:
            table = read_manifest(manifest_uri, thresholds=thresholds, reapply=reapply)
        except ImportError as e:
            if "eligibility" not in str(e):
                raise
            log.warning("accord.pipeline.eligibility is missing: using the stored eligible_* columns")
            table = read_manifest(manifest_uri, reapply=False)
    else:
        table = ds.dataset(path, filesystem=fs, format="parquet").to_table()
        if reapply:
            try:
                from accord.pipeline.manifest.read import load_thresholds, reapply_eligibility

                if thresholds is None or isinstance(thresholds, str | dict):
                    thresholds = load_thresholds(thresholds)
                table = reapply_eligibility(table, thresholds)
            except ImportError as e:
                if "eligibility" not in str(e):
                    raise
                log.warning("accord.pipeline.eligibility is missing: using the stored eligible_* columns")
    col = f"eligible_{min_stage}"
    if col not in table.column_names:
        raise ValueError(f"{manifest_uri}: no column {col!r}; is this a clip manifest (accord.schema)?")
    rows = [r for r in table.to_pylist() if r[col]]
    seen: dict[str, Item] = {}
    for r in rows:
        seen.setdefault(r["clip_id"], r)
    if len(seen) < len(rows):
        log.warning("%d duplicate clip ids in the manifest: keeping the first of each", len(rows) - len(seen))
    return sorted(seen.values(), key=lambda r: r["clip_id"])


# ---------------------------------------------------------------- per-clip helpers


def _clean(v: Any) -> Any:
    """JSON-safe: NaN/inf → None, numpy scalars → Python."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def error_row(item: Item, step: str, error_type: str, reason: str, run_id: str) -> Item:
    return {
        "input_uri": item.get("source_uri"),
        "clip_id": item.get("clip_id"),
        "step": step,
        "error_type": error_type,
        "reason": reason[:2000],
        "run_id": run_id,
    }


def crop_range(clip_id: str, n_frames: int, cfg: TokenizeConfig) -> tuple[int, int]:
    """Speaker-crop frames ``[f0, f1)``: length from ``crop_fraction`` clamped to ``crop_seconds``,
    position drawn from a generator seeded by the clip id."""
    fr = CODEC_RATE / HOP_LENGTH
    lo, hi = (max(1, round(s * fr)) for s in cfg.crop_seconds)
    length = min(n_frames, max(lo, min(hi, round(cfg.crop_fraction * n_frames))))
    f0 = int(_rng_for(clip_id, "crop").integers(0, n_frames - length + 1))
    return f0, f0 + length


def clip_meta(item: Item, n_frames: int, crop: tuple[int, int], aug_names: tuple[str, ...]) -> Item:
    """The sample's ``json`` member (see the shard contract)."""
    transcripts = [
        {
            k: t.get(k)
            for k in ("system", "model", "text", "normalized", "language", "language_prob", "avg_logprob")
        }
        for t in item.get("transcripts") or []
    ]
    meta = {
        "clip_id": item["clip_id"],
        "transcripts": transcripts,
        "language": item.get("language") or "",
        "agreement": item.get("agreement"),
        "eligible": {s: bool(item.get(f"eligible_{s}")) for s in STAGES},
        "features": {name: item.get(name) for name, _ in FEATURE_FIELDS},
        "source_uri": item["source_uri"],
        "source_sha256": item.get("source_sha256"),
        "start_s": float(item["start_s"]),
        "end_s": float(item["end_s"]),
        "duration_s": float(item["end_s"]) - float(item["start_s"]),
        "n_frames": int(n_frames),
        "speaker_crop": [int(crop[0]), int(crop[1])],
        "augmentations": list(aug_names),
        "run_id": item.get("run_id"),
    }
    return _clean(meta)


# ---------------------------------------------------------------- stages (plain callables over items)


class ReadStage:
    """Each clip's span from its source at 44.1 kHz, padded/trimmed to exactly its duration."""

    step = "tokenize:read"

    def __init__(self, cfg: TokenizeConfig, run_id: str) -> None:
        self.cfg, self.run_id = cfg, run_id
        self._sha: dict[str, str] = {}

    def _read(self, item: Item) -> np.ndarray:
        from accord.pipeline.audio_io import read_segment, sha256_of

        try:
            check_key(item["clip_id"])
        except ValueError as e:
            raise _ClipError("bad_clip_id", str(e)) from None
        start, end = float(item["start_s"]), float(item["end_s"])
        if not (math.isfinite(start) and math.isfinite(end)) or end - start < self.cfg.min_clip_seconds:
            raise _ClipError("bad_span", f"span [{start}, {end}) is under {self.cfg.min_clip_seconds} s")
        src = item["source_uri"]
        if self.cfg.verify_sha256 and item.get("source_sha256"):
            if src not in self._sha:
                self._sha[src] = sha256_of(src)
            if self._sha[src] != item["source_sha256"]:
                raise _ClipError("source_changed", f"sha256 of {src} differs from the manifest's")
        x, _ = read_segment(src, start, end, CODEC_RATE)
        want = round((end - start) * CODEC_RATE)
        if want - len(x) > self.cfg.max_short_read_s * CODEC_RATE:
            raise _ClipError(
                "short_read", f"source gave {len(x) / CODEC_RATE:.3f} s of a {end - start:.3f} s clip"
            )
        return np.pad(x, (0, max(0, want - len(x))))[:want]

    def __call__(self, items: list[Item]) -> list[Item]:
        from accord.pipeline.audio_io import AudioError

        out = []
        for item in items:
            if "error" in item:
                out.append(item)
                continue
            try:
                item["wav44"] = self._read(item)
            except _ClipError as e:
                item["error"] = error_row(item, self.step, e.error_type, e.reason, self.run_id)
            except FileNotFoundError as e:
                item["error"] = error_row(item, self.step, "missing_source", f"not found: {e}", self.run_id)
            except AudioError as e:
                item["error"] = error_row(item, self.step, e.error_type, e.reason, self.run_id)
            except Exception as e:
                item["error"] = error_row(item, self.step, type(e).__name__, str(e), self.run_id)
            out.append(item)
        return out


class _ClipError(Exception):
    def __init__(self, error_type: str, reason: str) -> None:
        super().__init__(f"{error_type}: {reason}")
        self.error_type, self.reason = error_type, reason


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


def _charge(items: list[Item], seconds: float) -> None:
    """Spread a batch's model time over its items (summed again on the driver)."""
    for it in items:
        it["model_s"] = it.get("model_s", 0.0) + seconds / max(1, len(items))


def _batch_or_each(run_all: Callable[[], list], units: list, run_one: Callable, fail: Callable) -> list:
    """``run_all()``; if the batch fails, run each unit alone so one bad item cannot sink the
    batch: a unit that fails again gets ``fail(unit, error)`` and ``None`` in its place."""
    try:
        return run_all()
    except Exception:
        out = []
        for unit in units:
            try:
                out.append(run_one(unit))
            except Exception as e:
                fail(unit, e)
                out.append(None)
        return out


def _tag_random(it: Item, refs: list[str]) -> None:
    """Record on the item which of the models that touched it had random weights, so the driver
    can check the workers loaded what ``tokenize.json`` says (a cluster's nodes may differ)."""
    it[RANDOM_WEIGHTS_KEY] = sorted({*it.get(RANDOM_WEIGHTS_KEY, ()), *refs})


class _ModelStage:
    step: str
    run_id: str

    def _fail(self, it: Item, e: Exception) -> None:
        it["error"] = error_row(it, self.step, type(e).__name__, str(e), self.run_id)


class CodecStage(_ModelStage):
    """DAC codes for a batch; also leaves the 16 kHz copy the speaker stage needs."""

    step = "tokenize:dac"

    def __init__(self, cfg: TokenizeConfig, run_id: str, codec: DacCodec | None = None) -> None:
        _set_threads(cfg.torch_threads)
        self.cfg, self.run_id = cfg, run_id
        self.codec = codec or DacCodec.load(config=cfg.codec)
        self.random_refs = [self.codec.ref] if self.codec.random_weights else []

    def __call__(self, items: list[Item]) -> list[Item]:
        import soxr

        ok = [it for it in items if "error" not in it]
        t0 = time.perf_counter()
        codes = _batch_or_each(
            lambda: self.codec.encode_batch([it["wav44"] for it in ok]) if ok else [],
            ok,
            lambda it: self.codec.encode_batch([it["wav44"]])[0],
            self._fail,
        )
        _charge(ok, time.perf_counter() - t0)
        for it, c in zip(ok, codes, strict=True):
            _tag_random(it, self.random_refs)
            wav44 = it.pop("wav44")
            if c is None:
                continue
            if c.shape[-1] != n_frames_for(len(wav44)):
                it["error"] = error_row(it, self.step, "frame_mismatch", f"codes {c.shape}", self.run_id)
                continue
            try:
                it["wav16"] = soxr.resample(wav44, CODEC_RATE, SPEAKER_RATE, quality="HQ").astype(np.float32)
            except Exception as e:
                it["error"] = error_row(it, self.step, type(e).__name__, f"resample: {e}", self.run_id)
                continue
            it["codes"] = c
        return items


class SpeakerStage(_ModelStage):
    """ECAPA embeddings per clip: full clip, the speaker crop, and each augmented copy."""

    step = "tokenize:speaker"

    def __init__(self, cfg: TokenizeConfig, run_id: str, encoder: SpeakerEncoder | None = None) -> None:
        _set_threads(cfg.torch_threads)
        self.cfg, self.run_id = cfg, run_id
        self.encoder = encoder or SpeakerEncoder.load(config=cfg.speaker)
        self.random_refs = [self.encoder.ref] if self.encoder.random_weights else []

    def _views(self, it: Item) -> tuple[list[np.ndarray], tuple[int, int]]:
        x = it["wav16"]
        n_frames = it["codes"].shape[-1]
        f0, f1 = crop_range(it["clip_id"], n_frames, self.cfg)
        s0 = round(f0 * HOP_LENGTH * SPEAKER_RATE / CODEC_RATE)
        s1 = round(f1 * HOP_LENGTH * SPEAKER_RATE / CODEC_RATE)
        return [x, x[s0:s1], *augment(x, it["clip_id"], self.cfg.augment)], (f0, f1)

    def __call__(self, items: list[Item]) -> list[Item]:
        ok = [it for it in items if "error" not in it]
        views, spans, crops = [], [], []
        for it in ok:
            try:
                v, crop = self._views(it)
            except Exception as e:
                it["error"] = error_row(it, self.step, type(e).__name__, f"augment: {e}", self.run_id)
                continue
            spans.append((it, len(views), len(views) + len(v)))
            views.extend(v)
            crops.append(crop)
        t0 = time.perf_counter()

        def embed_all() -> list[np.ndarray]:
            emb = self.encoder.embed_batch(views) if views else np.zeros((0, 0), np.float32)
            return [emb[a:b] for _, a, b in spans]

        per_clip = _batch_or_each(
            embed_all,
            spans,
            lambda span: self.encoder.embed_batch(views[span[1] : span[2]]),
            lambda span, e: self._fail(span[0], e),
        )
        _charge([it for it, _, _ in spans], time.perf_counter() - t0)
        for (it, _, _), crop, e in zip(spans, crops, per_clip, strict=True):
            _tag_random(it, self.random_refs)
            it.pop("wav16")
            if e is None:
                it.pop("codes")
                continue
            if not np.isfinite(e).all():
                it["error"] = error_row(
                    it, self.step, "nan_embedding", "non-finite speaker embedding", self.run_id
                )
                continue
            codes = it.pop("codes")
            it["sample"] = {
                "codes": codes,
                "spk": e[0],
                "spkcrop": e[1],
                "spkaug": e[2:],
                "json": clip_meta(it, codes.shape[-1], crop, self.cfg.augment.names),
            }
        return items


# ---------------------------------------------------------------- executors


def _pack(items: list[Item]) -> dict[str, list[Any]]:
    return {"blob": [pickle.dumps(it, protocol=5) for it in items]}


def _unpack(batch: dict[str, Any]) -> list[Item]:
    return [pickle.loads(b) for b in batch["blob"]]


class _RayStage:
    """Adapts a stage (class + args) to Ray Data's dict-of-columns batches."""

    def __init__(self, stage_cls: type, cfg: TokenizeConfig, run_id: str) -> None:
        self.stage = stage_cls(cfg, run_id)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        return _pack(self.stage(_unpack(batch)))


def _ray_read(batch: dict[str, Any], cfg: TokenizeConfig, run_id: str) -> dict[str, list[Any]]:
    return _pack(ReadStage(cfg, run_id)(_unpack(batch)))


def _run_ray(items: list[Item], cfg: TokenizeConfig, run_id: str, address: str | None) -> Iterator[Item]:
    import ray

    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ds = ray.data.from_items([{"blob": pickle.dumps(it, protocol=5)} for it in items])
        bs = cfg.batch_size
        ds = ds.map_batches(
            _ray_read, batch_size=bs, num_cpus=cfg.read_num_cpus, fn_kwargs={"cfg": cfg, "run_id": run_id}
        )
        ds = ds.map_batches(
            _RayStage,
            batch_size=bs,
            fn_constructor_args=(CodecStage, cfg, run_id),
            concurrency=cfg.dac_actors,
            num_cpus=cfg.dac_num_cpus,
            num_gpus=cfg.dac_num_gpus or None,
        )
        ds = ds.map_batches(
            _RayStage,
            batch_size=bs,
            fn_constructor_args=(SpeakerStage, cfg, run_id),
            concurrency=cfg.speaker_actors,
            num_cpus=cfg.speaker_num_cpus,
            num_gpus=cfg.speaker_num_gpus or None,
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            yield from _unpack(batch)
    finally:
        if started:
            ray.shutdown()


def _run_local(
    items: list[Item],
    cfg: TokenizeConfig,
    run_id: str,
    codec: DacCodec | None,
    encoder: SpeakerEncoder | None,
) -> Iterator[Item]:
    read = ReadStage(cfg, run_id)
    dac = CodecStage(cfg, run_id, codec)
    spk = SpeakerStage(cfg, run_id, encoder)
    for i in range(0, len(items), cfg.batch_size):
        yield from spk(dac(read(items[i : i + cfg.batch_size])))


# ---------------------------------------------------------------- job


def _tokenize_json(cfg: TokenizeConfig, codec: DacCodec, speaker: SpeakerEncoder, extra: Item) -> Item:
    """The run's metadata: which models (with ``random_weights``), vocabulary, crops, shard limits."""
    vocab = Vocab(cfg.vocab)
    codec_info = {
        "ref": codec.ref,
        "weights_path": str(codec.weights_path),
        "sample_rate": codec.sample_rate,
        "hop_length": codec.hop_length,
        "frame_rate": codec.frame_rate,
        "n_codebooks": codec.n_codebooks,
        "codebook_size": codec.codebook_size,
    }
    speaker_info = {
        **speaker.info,
        "ref": speaker.ref,
        "dim": speaker.dim,
        "sample_rate": speaker.sample_rate,
    }
    random_refs = [m.ref for m in (codec, speaker) if m.random_weights]
    return _clean(
        {
            "schema_version": SCHEMA_VERSION,
            "codec": codec_info,
            "speaker": speaker_info,
            RANDOM_WEIGHTS_KEY: sorted(set(random_refs)),
            "augmentations": list(cfg.augment.names),
            "crop": {"fraction": cfg.crop_fraction, "seconds": list(cfg.crop_seconds)},
            "vocab": {
                **cfg.vocab.to_dict(),
                "text_vocab": vocab.size,
                "default_text_vocab": DEFAULT_VOCAB.size,
            },
            "shards": asdict(cfg.shards),
            **extra,
        }
    )


def _check_compatible(shards_uri: str, new: Item) -> None:
    """Refuse to mix shards written with a different codec, speaker model, random/trained
    weights, or crop/augment setup."""
    import fsspec

    uri = f"{shards_uri.rstrip('/')}/tokenize.json"
    fs, path = fsspec.core.url_to_fs(uri)
    if not fs.exists(path):
        return
    old = json.loads(fs.cat_file(path))
    for key in ("codec", "speaker", RANDOM_WEIGHTS_KEY, "augmentations", "crop"):
        a, b = old.get(key), new.get(key)
        if key in ("codec", "speaker") and a and b:
            a = {k: a.get(k) for k in ("ref", "format", "dim", "frame_rate")}
            b = {k: b.get(k) for k in ("ref", "format", "dim", "frame_rate")}
        if a != b:
            raise ValueError(
                f"{shards_uri} holds shards written with a different {key} ({a} vs now {b}); "
                "write to a new --out or remove the old shards"
            )


def check_weights(cfg: TokenizeConfig) -> list[str]:
    """Fail now, before hours of work that would end in a tokenize run, if its models would be
    refused (:class:`accord.weights.ModelNotFound` with the how-to); else the refs that will load
    random weights. Resolves references only; loads nothing."""
    chosen = [
        choose_weights(cfg.codec.ref, cfg.codec.allow_random),
        choose_weights(cfg.speaker.ref, cfg.speaker.allow_random),
    ]
    return sorted({w.ref for w in chosen if w.random})


@dataclass
class TokenizeResult:
    shards_uri: str
    run_id: str
    n_clips: int
    n_shards: int
    n_written: int  # shards written in this run
    n_skipped: int  # shards already done
    n_samples: int  # samples written in this run
    n_errors: int  # error rows written in this run
    seconds: float  # audio seconds written in this run
    wall_s: float
    index: pa.Table | None = None
    model_s: float = 0.0  # time inside the DAC and ECAPA forwards (summed over workers)


def run_tokenize(
    manifest_uri: str,
    shards_uri: str,
    min_stage: str = "pretrain",
    config: TokenizeConfig | None = None,
    address: str | None = None,
    thresholds: Any = None,
    reapply: bool = True,
    codec: DacCodec | None = None,
    encoder: SpeakerEncoder | None = None,
) -> TokenizeResult:
    """Tokenize every clip of ``manifest_uri`` eligible for ``min_stage`` into ``shards_uri``.

    ``codec``/``encoder`` reuse already-loaded models (local executor only). Models without
    trained weights are refused (``ModelNotFound``) before anything under ``shards_uri`` is
    written or removed, unless the config opts in to random weights (``allow_random`` or a
    ``<kind>:random`` ref); ``tokenize.json`` and the index record such refs as ``random_weights``.
    """
    t0 = time.perf_counter()
    cfg = config or TokenizeConfig()
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    clips = read_clips(manifest_uri, min_stage, thresholds=thresholds, reapply=reapply)
    plan = plan_shards(clips, cfg.shards)
    pending = {i: ids for i, ids in enumerate(plan) if not is_done(shards_uri, i, ids)}
    log.info("%d clips in %d shards, %d to write", len(clips), len(plan), len(pending))

    meta: Item = {}
    if pending:
        # Model identity for tokenize.json: loaded here once (cheap next to encoding) so that
        # missing weights or a mismatch with existing shards fail before any write or removal
        # (the speaker first: it loads in a fraction of DAC's time).
        # With Ray the actors hold the models (maybe on GPUs); the driver loads CPU copies only here.
        on_driver = cfg.executor == "ray"
        speaker_model = encoder or SpeakerEncoder.load(
            config=replace(cfg.speaker, device="cpu") if on_driver else cfg.speaker
        )
        codec_model = codec or DacCodec.load(
            config=replace(cfg.codec, device="cpu") if on_driver else cfg.codec
        )
        meta = _tokenize_json(
            cfg,
            codec_model,
            speaker_model,
            {"min_stage": min_stage, "manifest_uri": manifest_uri, "run_id": run_id},
        )
        _check_compatible(shards_uri, meta)

    stale = remove_stale(shards_uri, len(plan))
    if stale:
        log.warning("removed %d shards beyond the current plan of %d: %s", len(stale), len(plan), stale)

    if not pending:  # everything done: no model loads, just refresh the index
        index, _ = write_index(shards_uri, len(plan))
        result = TokenizeResult(
            shards_uri,
            run_id,
            len(clips),
            len(plan),
            0,
            len(plan),
            0,
            0,
            0.0,
            time.perf_counter() - t0,
            index,
        )
        _write_run_record(result)
        return result

    random_refs = meta[RANDOM_WEIGHTS_KEY]
    shard_of = {cid: i for i, ids in pending.items() for cid in ids}
    todo = [c for c in clips if c["clip_id"] in shard_of]
    writers: dict[int, ShardWriter] = {}
    n_samples = n_errors = 0
    seconds = model_s = 0.0
    try:
        if todo:
            if cfg.executor == "local":
                stream = _run_local(todo, cfg, run_id, codec_model, speaker_model)
            elif cfg.executor == "ray":
                del codec_model, speaker_model  # actors load their own
                stream = _run_ray(todo, cfg, run_id, address)
            else:
                raise ValueError(f"unknown executor {cfg.executor!r}; expected 'ray' or 'local'")
            for it in stream:
                model_s += it.get("model_s", 0.0)
                i = shard_of[it["clip_id"]]
                if i not in writers:
                    writers[i] = ShardWriter(shards_uri, i, pending[i], random_refs)
                w = writers[i]
                if "sample" in it:
                    if it.get(RANDOM_WEIGHTS_KEY) != random_refs:
                        raise RuntimeError(
                            f"clip {it['clip_id']}: the workers' models had random weights for "
                            f"{it.get(RANDOM_WEIGHTS_KEY)}, the driver's for {random_refs}; give every "
                            "node the same model files ($ACCORD_MODELS) or explicit paths"
                        )
                    w.add(it["sample"])
                    n_samples += 1
                    seconds += it["sample"]["json"]["duration_s"]
                else:
                    err = it.get("error") or error_row(
                        it, "tokenize", "lost", "no sample and no error", run_id
                    )
                    w.add_error(it["clip_id"], err)
                    n_errors += 1
                if w.complete:
                    writers.pop(i).close()
        if writers:
            raise RuntimeError(f"shards {sorted(writers)} did not receive all their clips")
    finally:
        for w in writers.values():
            w.abort()
    index, _ = write_index(shards_uri, len(plan))
    meta["n_shards"] = len(plan)
    atomic_write_bytes(f"{shards_uri.rstrip('/')}/tokenize.json", json.dumps(meta, indent=2).encode())
    wall = time.perf_counter() - t0
    result = TokenizeResult(
        shards_uri, run_id, len(clips), len(plan), len(pending), len(plan) - len(pending),
        n_samples, n_errors, seconds, wall, index, model_s,
    )  # fmt: skip
    _write_run_record(result)
    return result


def _write_run_record(result: TokenizeResult) -> None:
    record = {k: getattr(result, k) for k in TokenizeResult.__dataclass_fields__ if k != "index"}
    uri = f"{result.shards_uri.rstrip('/')}/runs/{result.run_id}.json"
    atomic_write_bytes(uri, json.dumps(record, indent=2).encode())
