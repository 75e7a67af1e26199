"""faster-whisper (CTranslate2) backend that packs several short clips into one window.

Whisper encodes a 30 s window, so a 3 s clip alone wastes 90% of the encoder (ANCHORS.md:
5.4 RTFx clip by clip vs 25 batched). Here the clips of one group (source) are trimmed of
near-silent edges and laid end to end with ``gap_s`` of silence into windows of at most
``max_window_s`` (13 s: see :class:`WhisperOptions`), each encoded at its length plus
``tail_pad_s`` of silence rather than padded to 30 s (CTranslate2 accepts any length;
without the tail Whisper hallucinates). On 134 s of bucket speech this ran 1.6x the
throughput of faster-whisper's ``BatchedInferencePipeline`` (batch 16, beam 1) at the same
WER (0.054 vs 0.051); 30 s windows were only ~1.1x. The
language is detected from the same encoder output (no second encode) and decoding runs
greedily *with* timestamps. Each timestamped segment goes to the clip it overlaps most.
When a segment spans two clips (Whisper did not break at the gap, e.g. VAD cut one
sentence at a pause), the window's words are placed one by one by their cross-attention
alignment (one decoder pass over the encoder output already computed); if that fails, the
window's clips are decoded again one per window. Either way no text leaks into a neighbour.
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from accord.pipeline.asr.base import AsrBackend, Transcript

RATE = 16000

_MODELS: dict[tuple[str, str, str, int], Any] = {}


def whisper_model(path: str, device: str = "cpu", compute_type: str = "int8", threads: int = 2) -> Any:
    """A ``faster_whisper.WhisperModel``, loaded once per process for each (path, device, compute
    type, threads): in a fused actor the language-ID step (:mod:`accord.pipeline.lid`) and this
    backend share one copy of the weights (Whisper base int8: ~110 MB and ~0.5 core-s per actor).
    Safe to share: a CTranslate2 model serialises the calls of one process."""
    key = (os.path.realpath(path), device, compute_type, int(threads))
    model = _MODELS.get(key)
    if model is None:
        from faster_whisper import WhisperModel

        model = WhisperModel(path, device=device, compute_type=compute_type, cpu_threads=threads)
        _MODELS[key] = model
    return model


@dataclass(frozen=True)
class WhisperOptions:
    compute_type: str = "int8"
    threads: int = 2  # intra-op CPU threads (CTranslate2 cpu_threads)
    device: str = "cpu"
    batch_size: int = 8  # windows per encoder/decoder call
    pack: bool = True  # False: one clip per window (the reference behaviour)
    # Encoder cost per audio-second falls steeply with length (here: 0.06 s at 30 s, 0.038 at
    # 15 s, 0.02 at 10 s), so windows of ~13 s + tail beat full 30 s ones; shorter windows
    # start to cost accuracy (134 s of bucket speech, WER: 13 s 0.054, 10 s 0.066, one clip
    # per window 0.10-0.15, 29 s 0.072; BatchedInferencePipeline 0.051).
    max_window_s: float = 13.0
    gap_s: float = 0.3  # silence between packed clips
    variable_length: bool = True  # encode short windows at content + tail_pad_s instead of 30 s
    tail_pad_s: float = 2.0
    trim_db: float = 45.0  # drop edge audio this far below the clip's peak (VAD pads), keep trim_keep_s
    trim_keep_s: float = 0.1
    beam_size: int = 1
    language: str | None = None  # force a language; None detects it per window
    # Decoding budget per window: tokens_per_s of content (speech is <= ~6 tokens/s plus
    # timestamps), capped; bounds the cost of a hallucination loop on noise.
    tokens_per_s: float = 12.0
    max_new_tokens: int = 440


@dataclass
class _Slot:
    index: int  # position in the caller's batch
    start_s: float  # inside the window
    end_s: float


class _Lazy:
    """A window's encoder output, materialised only when alignment needs it."""

    def __init__(self, fn: Any, k: int) -> None:
        self.fn, self.k = fn, k

    def get(self) -> Any:
        return self.fn(self.k)


class WhisperBackend(AsrBackend):
    name = "faster-whisper"
    thread_option = "threads"
    options_class = WhisperOptions
    default_model = "whisper:base"

    def __init__(self, model_ref: str | None = None, **options: Any) -> None:
        super().__init__(model_ref, **options)
        self.opts = WhisperOptions(**options)
        self.model: Any = None

    def load(self) -> None:
        if self.model is not None:
            return
        from faster_whisper.tokenizer import Tokenizer

        from accord.core.weights import resolve

        path = resolve(self.model_ref)
        self.model = whisper_model(str(path), self.opts.device, self.opts.compute_type, self.opts.threads)
        self.multilingual = bool(self.model.model.is_multilingual)
        if not self.multilingual:
            self.languages = frozenset({"en"})
        self._tokenizers: dict[str, Any] = {}
        self._Tokenizer = Tokenizer

    def _hint(self, language: str | None) -> str | None:
        """A clip's language as Whisper can decode it, or None (detect it)."""
        if not language or not self.multilingual:
            return None
        known = self.model.hf_tokenizer.token_to_id(f"<|{language}|>") is not None
        return language if known else None

    def _tokenizer(self, language: str) -> Any:
        if language not in self._tokenizers:
            self._tokenizers[language] = self._Tokenizer(
                self.model.hf_tokenizer, self.multilingual, task="transcribe", language=language
            )
        return self._tokenizers[language]

    # -- packing -------------------------------------------------------------------------------
    def _trimmed(self, x: np.ndarray) -> np.ndarray:
        """The clip without near-silent edges: less silence per window, more clips per window."""
        if self.opts.trim_db <= 0 or len(x) < RATE // 2:
            return x
        n = RATE // 100
        m = len(x) // n
        p = np.square(x[: m * n].reshape(m, n).astype(np.float64)).mean(axis=1)
        loud = np.flatnonzero(p >= p.max() * 10 ** (-self.opts.trim_db / 10))
        if len(loud) == 0:
            return x
        keep = int(self.opts.trim_keep_s * RATE)
        return x[max(0, loud[0] * n - keep) : min(len(x), (loud[-1] + 1) * n + keep)]

    def _frames(self, content_s: float) -> int:
        """Encoder length (mel frames) for a window: 30 s, or content + tail padding when shorter.

        Whisper hallucinates when its input ends right after speech; with >= 2 s of trailing
        silence a short window decodes as well as a 30 s one (WER 0.088 vs 0.075 on 18 bucket
        sentences) at a fraction of the encoder cost.
        """
        if not self.opts.variable_length:
            return 3000
        return int(min(3000, math.ceil(content_s + self.opts.tail_pad_s) * 100))

    def _pack(
        self, audios: list[np.ndarray], indices: list[int], pack: bool, groups: list[Hashable]
    ) -> list[list[_Slot]]:
        windows: list[list[_Slot]] = []
        cur: list[_Slot] = []
        t = 0.0
        order = {g: k for k, g in enumerate(dict.fromkeys(groups[i] for i in indices))}
        for i in sorted(indices, key=lambda i: order[groups[i]]):  # stable: clip order within a group
            d = len(audios[i]) / RATE
            start = t + (self.opts.gap_s if cur else 0.0)
            new_group = bool(cur) and groups[cur[-1].index] != groups[i]
            if cur and (not pack or new_group or start + d > self.opts.max_window_s):
                windows.append(cur)
                cur, start = [], 0.0
            cur.append(_Slot(i, start, start + d))
            t = start + d
        if cur:
            windows.append(cur)
        return windows

    def _window_audio(self, audios: list[np.ndarray], slots: list[_Slot]) -> np.ndarray:
        n = math.ceil(slots[-1].end_s * RATE)
        out = np.zeros(n, np.float32)
        for s in slots:
            a = round(s.start_s * RATE)
            x = audios[s.index]
            out[a : a + len(x)] = x[: n - a]
        return out

    # -- decoding ------------------------------------------------------------------------------
    def _run(
        self, audios: list[np.ndarray], windows: list[list[_Slot]], hints: list[str | None]
    ) -> list[dict]:
        """Decode windows; returns per window: language, prob, avg_logprob, segments [(t0, t1, tokens)].
        ``hints``: per clip, the language to decode in (None: detect it per window)."""
        import ctranslate2
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.transcribe import get_suppressed_tokens

        fe = self.model.feature_extractor
        results: dict[int, dict] = {}
        frames = [self._frames(w[-1].end_s) for w in windows]
        order = sorted(range(len(windows)), key=lambda k: -frames[k])
        batches = []  # equal encoder lengths only (one tensor per call)
        for k in order:
            if batches and frames[batches[-1][0]] == frames[k] and len(batches[-1]) < self.opts.batch_size:
                batches[-1].append(k)
            else:
                batches.append([k])
        for batch in batches:
            group = [windows[k] for k in batch]
            n = frames[batch[0]]
            feats = np.stack([pad_or_trim(fe(self._window_audio(audios, w))[..., :-1], n) for w in group])
            enc = self.model.model.encode(ctranslate2.StorageView.from_array(feats), to_cpu=False)
            window_hints = [hints[w[0].index] for w in group]  # one per window: packing groups by it
            if self.opts.language or not self.multilingual:
                # forced, or an English-only model: probability 1, as faster-whisper reports it
                langs = [(self.opts.language or "en", 1.0)] * len(group)
            elif all(window_hints):
                langs = [(h, math.nan) for h in window_hints]  # identified per clip upstream: no guess
            else:
                detected = self.model.model.detect_language(enc)
                langs = [
                    (h, math.nan) if h else (r[0][0][2:-2], float(r[0][1]))
                    for h, r in zip(window_hints, detected, strict=True)
                ]
            prompts, suppress = [], None
            for lang, _ in langs:
                tok = self._tokenizer(lang)
                prompts.append(list(tok.sot_sequence))
                if suppress is None:
                    suppress = list(get_suppressed_tokens(tok, [-1]))
            content_s = max(w[-1].end_s for w in group)
            budget = min(
                self.opts.max_new_tokens, 448 - len(prompts[0]), int(20 + self.opts.tokens_per_s * content_s)
            )
            gen = self.model.model.generate(
                enc,
                prompts,
                beam_size=self.opts.beam_size,
                max_length=len(prompts[0]) + budget,
                suppress_blank=True,
                suppress_tokens=suppress,
                return_scores=True,
                return_no_speech_prob=True,
                max_initial_timestamp_index=50,
            )
            enc_np: list[np.ndarray | None] = [None]

            def window_encoding(k: int, enc=enc, enc_np=enc_np) -> Any:
                if enc_np[0] is None:
                    enc_np[0] = np.asarray(enc)
                return ctranslate2.StorageView.from_array(np.ascontiguousarray(enc_np[0][k : k + 1]))

            for k, wk, ((lang, prob), r) in zip(
                range(len(batch)), batch, zip(langs, gen, strict=True), strict=True
            ):
                ids = r.sequences_ids[0]
                avg = r.scores[0] * len(ids) / (len(ids) + 1) if ids else math.nan
                results[wk] = {
                    "language": lang,
                    "language_prob": prob,
                    "avg_logprob": float(avg),
                    "no_speech_prob": float(r.no_speech_prob),
                    "segments": self._segments(ids, self._tokenizer(lang)),
                    "tokenizer": self._tokenizer(lang),
                    "encoder_output": _Lazy(window_encoding, k),
                }
        return [results[k] for k in range(len(windows))]

    @staticmethod
    def _segments(ids: list[int], tok: Any) -> list[tuple[float, float, list[int]]]:
        ts0 = tok.timestamp_begin
        segs: list[tuple[float, float, list[int]]] = []
        start: float | None = None
        text: list[int] = []
        for t in ids:
            if t >= ts0:
                ts = (t - ts0) * 0.02
                if start is not None and text:
                    segs.append((start, ts, text))
                    start, text = None, []
                else:
                    start = ts
            elif t < tok.eot:
                text.append(t)
                start = 0.0 if start is None else start
        if text:
            segs.append((start or 0.0, math.inf, text))
        return segs

    @staticmethod
    def _best_slot(slots: list[_Slot], t0: float, t1: float) -> int:
        """Slot with the largest overlap with [t0, t1]; the nearest one when none overlaps."""
        overlaps = [max(0.0, min(t1, s.end_s) - max(t0, s.start_s)) for s in slots]
        if max(overlaps) > 0.0:
            return int(np.argmax(overlaps))
        return int(np.argmin([abs((s.start_s + s.end_s) / 2 - (t0 + t1) / 2) for s in slots]))

    @staticmethod
    def _ambiguous(slots: list[_Slot], t0: float, t1: float) -> bool:
        """A segment overlapping two clips by > 0.3 s each: its text cannot go to one clip."""
        overlaps = sorted(max(0.0, min(t1, s.end_s) - max(t0, s.start_s)) for s in slots)
        return len(overlaps) > 1 and overlaps[-2] > 0.3

    def _attribute(self, slots: list[_Slot], res: dict, enc_w: Any) -> dict[int, list[int]] | None:
        """Text tokens per clip index; ``None`` when the window must be decoded clip by clip."""
        res["attribution"] = "timestamps"
        texts: dict[int, list[int]] = {s.index: [] for s in slots}
        end = slots[-1].end_s + 1.0
        segments = [(t0, min(t1, end), ids) for t0, t1, ids in res["segments"]]
        if not any(self._ambiguous(slots, t0, t1) for t0, t1, _ in segments):
            for t0, t1, ids in segments:
                texts[slots[self._best_slot(slots, t0, t1)].index].extend(ids)
            return texts
        # Whisper ran two clips together: place each word by its cross-attention alignment.
        tok = res["tokenizer"]
        ids = [t for _, _, seg in segments for t in seg]
        n_frames = math.ceil(slots[-1].end_s * 100)
        try:
            words = self.model.find_alignment(tok, [ids], enc_w.get(), n_frames)[0]
        except Exception:
            return None
        if sum(len(w["tokens"]) for w in words) != len(ids):
            return None
        res["attribution"] = "alignment"
        for w in words:
            texts[slots[self._best_slot(slots, float(w["start"]), float(w["end"]))].index].extend(w["tokens"])
        return texts

    def transcribe_batch(
        self,
        audios: list[np.ndarray],
        groups: list[Hashable] | None = None,
        languages: list[str] | None = None,
    ) -> list[Transcript]:
        """Transcripts in order. Clips are packed only with clips of the same group (pass the
        source URI: one window gets one language, so sources must not mix). ``languages``: each
        clip's identified language; clips of one language share windows, and Whisper decodes in
        that language instead of detecting one per window (a bilingual source's German clip is
        transcribed as German). "" falls back to detection."""
        self.load()
        audios = [self._trimmed(np.asarray(a, np.float32))[: 30 * RATE] for a in audios]
        groups = list(groups) if groups is not None else [0] * len(audios)
        if len(groups) != len(audios) or (languages is not None and len(languages) != len(audios)):
            raise ValueError(
                f"{len(groups)} groups, {len(languages or [])} languages for {len(audios)} clips"
            )
        hints = [self._hint(x) for x in languages] if languages is not None else [None] * len(audios)
        groups = [(g, h) for g, h in zip(groups, hints, strict=True)]
        out: list[Transcript | None] = [None] * len(audios)
        todo = list(range(len(audios)))
        pack = self.opts.pack
        while todo:
            windows = self._pack(audios, todo, pack, groups)
            retry: list[int] = []
            for slots, res in zip(windows, self._run(audios, windows, hints), strict=True):
                texts = self._attribute(slots, res, res.pop("encoder_output")) if len(slots) > 1 else None
                if texts is None and len(slots) > 1:
                    retry.extend(s.index for s in slots)
                    continue
                if texts is None:
                    texts = {slots[0].index: [t for _, _, ids in res["segments"] for t in ids]}
                tok = res["tokenizer"]
                for s in slots:
                    out[s.index] = Transcript(
                        text=tok.decode(texts[s.index]).strip().lstrip(",;: "),
                        language=res["language"],
                        language_prob=res["language_prob"],
                        avg_logprob=res["avg_logprob"],
                        extra={
                            "packed": len(slots),
                            "attribution": res.get("attribution", "single"),
                            "no_speech_prob": res["no_speech_prob"],
                        },
                    )
            todo, pack = retry, False
        return [t for t in out if t is not None]
