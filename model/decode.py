"""Fast decoding: a static KV cache, sampling on the device, one CUDA graph per decode step.

Feeding one row per step to a growing KV cache and reading the logits back to sample on
the host gives new shapes every step (a new attention plan), thousands of kernel launches
and a host round trip per row. Here every step has the same shapes:
- the cache (``StaticKVCache``) is preallocated; each step writes row b at its own position
  and attends over a fixed span of slots with a mask of the valid ones;
- ``RowSampler`` applies the release's sampler (repetition penalty, temperature, top-k,
  top-p, min-p) and the EOA countdown as tensor ops on state kept in device tensors, so
  nothing is read back inside a step;
- on CUDA the step (sample the row, embed it, all layers, head) is captured once per
  attention span bucket and replayed; the host looks at the ``finished`` flags only every
  ``sync_every`` steps (or per streaming chunk). On the CPU the same step runs eagerly.
Prompts of different lengths decode together: the prefill is right-padded (each row keeps
positions 0..P_b - 1, exactly as alone) and every row then advances its own position, so a
row's codes equal decoding its prompt alone, up to the float rounding of batched kernels.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from accord.model.sampling import RowSampler, SamplingConfig
from accord.model.static_cache import StaticKVCache
from accord.model.zonos import ZonosModel

log = logging.getLogger(__name__)


@dataclass
class DecodeConfig:
    # None: CUDA graphs on CUDA when the step runs without a host sync (else eager, with a
    # warning); True: graphs required (an error if capture fails); False: always eager.
    cuda_graphs: bool | None = None
    sync_every: int = 16  # decode steps between host checks of the finished flags
    kv_bucket: int = 256  # attention spans are multiples of this (one graph each); 0 = full cache

    def validate(self) -> DecodeConfig:
        if self.sync_every < 1 or self.kv_bucket < 0:
            raise ValueError(
                f"sync_every must be >= 1 and kv_bucket >= 0, got {self.sync_every}, {self.kv_bucket}"
            )
        return self


@dataclass
class GenerationResult:
    codes_KT: torch.Tensor  # undelayed codes, int64
    ended: bool  # True when the model emitted EOA itself (not forced by max_frames)
    steps: int


def undelay_rows(rows_NK: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Frames [start, stop) ``[K, n]`` from sampled delayed rows: frame f, codebook j = rows[f + j, j]."""
    K = rows_NK.shape[1]
    idx_Kn = torch.arange(start, stop).unsqueeze(0) + torch.arange(K).unsqueeze(1)
    return rows_NK.T.gather(1, idx_Kn)


class Decoder:
    """Decodes up to ``batch`` prompts of at most ``max_prompt_len`` rows with one sampling config.

    Buffers (and on CUDA the graphs) are built once; hold a decoder to decode many batches.
    """

    def __init__(
        self,
        model: ZonosModel,
        sampling: SamplingConfig,
        batch: int = 1,
        max_prompt_len: int = 512,
        cfg: DecodeConfig | None = None,
    ) -> None:
        if batch < 1 or max_prompt_len < 1:
            raise ValueError(f"batch and max_prompt_len must be >= 1, got {batch}, {max_prompt_len}")
        self.model = model.eval()
        self.sampling = sampling.validate()
        self.cfg = (cfg or DecodeConfig()).validate()
        mc = model.cfg
        p = next(model.parameters())
        self.device, self.batch, self.K = p.device, batch, mc.n_codebooks
        self.max_prompt_len = max_prompt_len
        self.max_steps = sampling.max_steps(self.K)
        # slots for the longest prompt and every fed row, rounded up for aligned attention masks
        self.max_len = math.ceil((max_prompt_len + self.max_steps) / 64) * 64
        self.cache = StaticKVCache.empty(
            mc.n_layers, batch, mc.n_kv_heads, self.max_len, mc.head_dim, p.dtype, self.device
        )
        self.sampler = RowSampler(mc, sampling, batch, self.device)
        self.logits_BKV = torch.zeros(batch, self.K, mc.audio_vocab, dtype=p.dtype, device=self.device)
        self.rows_BNK = torch.full((batch, self.max_steps, self.K), mc.audio_pad_id, device=self.device)
        self.ids_B1C = torch.full((batch, 1, self.K + 1), mc.text_pad_id, device=self.device)
        self.slots_S = torch.arange(self.max_len, device=self.device)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        if self.cfg.cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"cuda_graphs=True needs a model on CUDA, this one is on {self.device}")
        if self.device.type == "cuda" and self.cfg.cuda_graphs is not False:
            with self._on_device():
                self._capture()

    @property
    def graphed(self) -> bool:
        """Whether decode steps replay CUDA graphs (False on the CPU or after a fallback)."""
        return bool(self.graphs)

    def _on_device(self) -> contextlib.AbstractContextManager:
        return torch.cuda.device(self.device) if self.device.type == "cuda" else contextlib.nullcontext()

    def span(self, n_slots: int) -> int:
        """The attention span covering ``n_slots`` slots: a bucket multiple, at most the cache."""
        b = self.cfg.kv_bucket
        return self.max_len if b <= 0 else min(self.max_len, math.ceil(n_slots / b) * b)

    # -- public ------------------------------------------------------------------------
    def generate(
        self, prompts: Sequence[torch.Tensor], speakers: Sequence[torch.Tensor | None] | None = None
    ) -> list[GenerationResult]:
        """Every prompt's codes, in prompt order."""
        codes = [torch.empty(self.K, 0, dtype=torch.long) for _ in prompts]
        ends: dict[int, tuple[bool, int]] = {}
        for b, chunk, end in self._decode(prompts, speakers, chunk_frames=0):
            if chunk is not None:
                codes[b] = chunk  # chunk_frames=0: one chunk, when the row finishes
            if end is not None:
                ends[b] = end
        return [GenerationResult(codes[b], *ends[b]) for b in range(len(prompts))]

    def stream(
        self, prompts: Sequence[torch.Tensor], speakers: Sequence[torch.Tensor | None] | None = None
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """``(prompt index, undelayed codes [K, n])`` as frames complete.

        Each prompt's chunks have ``sampling.chunk_frames`` frames but its last (or one chunk
        at its end when 0); concatenated they are the codes :meth:`generate` returns for it.
        """
        for b, chunk, _ in self._decode(prompts, speakers, self.sampling.chunk_frames):
            if chunk is not None:
                yield b, chunk

    # -- one call ----------------------------------------------------------------------
    @torch.no_grad()
    def _decode(
        self,
        prompts: Sequence[torch.Tensor],
        speakers: Sequence[torch.Tensor | None] | None,
        chunk_frames: int,
    ) -> Iterator[tuple[int, torch.Tensor | None, tuple[bool, int] | None]]:
        """``(row, new frames or None, (ended, steps) once the row finishes, else None)``."""
        n = len(prompts)
        with self._on_device():
            p_max = self._prefill(prompts, speakers)
        self.sampler.reset(self.sampling.seed)
        host_rows_BNK = torch.empty(self.batch, self.max_steps, self.K, dtype=torch.long)
        emitted = [0] * n
        done = [False] * n
        steps, left = 0, self.max_steps  # left: steps until every row is done, once all EOAs are out
        while steps < self.max_steps and not all(done):
            todo = min(self.max_steps - steps, self.cfg.sync_every, left)
            if chunk_frames > 0:
                todo = min(todo, chunk_frames)
            with self._on_device():  # graphs replay on the device they were captured on
                for i in range(steps, steps + todo):
                    self._run_step(self.span(p_max + i + 1))
            host_rows_BNK[:, steps : steps + todo] = self.rows_BNK[:, steps : steps + todo].cpu()  # syncs
            steps += todo
            s = self.sampler
            state = [
                s.steps_B,
                s.complete_frames(),
                s.finished(),
                s.forced_end_B,
                s.eos_frame_B,
                s.countdown_B,
            ]
            taken_B, ready_B, finished_B, forced_B, eos_B, countdown_B = torch.stack(
                [t.long() for t in state]
            ).tolist()
            for b in range(n):
                if done[b]:
                    continue
                if chunk_frames > 0:
                    while ready_B[b] - emitted[b] >= chunk_frames:
                        yield b, undelay_rows(host_rows_BNK[b], emitted[b], emitted[b] + chunk_frames), None
                        emitted[b] += chunk_frames
                if finished_B[b]:
                    done[b] = True
                    last = (
                        undelay_rows(host_rows_BNK[b], emitted[b], ready_B[b])
                        if ready_B[b] > emitted[b]
                        else None
                    )
                    yield b, last, (not forced_B[b], taken_B[b])
            open_rows = [b for b in range(n) if not done[b]]
            if open_rows and all(eos_B[b] >= 0 for b in open_rows):  # only countdowns left: no overshoot
                left = max(countdown_B[b] for b in open_rows)
        if not all(done):  # unreachable: max_frames forces EOA, the countdown ends every row
            raise RuntimeError(f"decoding stopped after {steps} steps with unfinished rows")

    def _prefill(
        self, prompts: Sequence[torch.Tensor], speakers: Sequence[torch.Tensor | None] | None
    ) -> int:
        """Run the right-padded prompts through the model; the cache holds them, logits the next row's."""
        n, K = len(prompts), self.K
        if not 1 <= n <= self.batch:
            raise ValueError(f"expected 1 to {self.batch} prompts, got {n}")
        if speakers is not None and len(speakers) != n:
            raise ValueError(f"{len(speakers)} speakers for {n} prompts")
        for i, p in enumerate(prompts):
            if p.dim() != 2 or p.shape[1] != K + 1 or not 1 <= p.shape[0] <= self.max_prompt_len:
                raise ValueError(
                    f"prompt {i} has shape {tuple(p.shape)}, expected [1..{self.max_prompt_len}, {K + 1}]"
                )
        fill = [p.to(self.device) for p in prompts]
        fill += [fill[0][:1]] * (self.batch - n)  # idle rows: a one-row prompt
        lengths = [p.shape[0] for p in fill]
        p_max, B = max(lengths), self.batch
        ids_BPC = torch.stack([torch.cat([p, p[:1].expand(p_max - p.shape[0], -1)]) for p in fill])
        len_B = torch.tensor(lengths, device=self.device)
        spk = [(b, s) for b, s in enumerate(speakers or []) if s is not None]
        speaker_NS = torch.stack([s.reshape(-1) for _, s in spk]).to(self.device) if spk else None
        speaker_pos_N2 = torch.tensor([[b, 0] for b, _ in spk], dtype=torch.long).view(-1, 2)
        span = self.span(p_max)
        self.cache.set_span(span)
        self.cache.length.zero_()
        t_P1 = torch.arange(p_max, device=self.device).unsqueeze(1)
        s_S = self.slots_S[:span]
        # causal within the prompt; padding rows attend to themselves only (no NaN from empty rows)
        mask_BPS = ((s_S <= t_P1) & (s_S < len_B.view(B, 1, 1))) | (s_S == t_P1)
        out = self.model(
            ids_BPC,
            speaker_NS=speaker_NS,
            speaker_pos_N2=speaker_pos_N2,
            positions_BT=t_P1.T.expand(B, p_max),
            cache=self.cache,
            mask_B1TS=mask_BPS.unsqueeze(1),
        )
        self.logits_BKV.copy_(out.logits_BTKV[torch.arange(B, device=self.device), len_B - 1])
        self.cache.length.copy_(len_B)
        return p_max

    # -- one step ----------------------------------------------------------------------
    def _step(self, span: int) -> None:
        """Sample the next rows from ``logits_BKV``, record them, feed them, leave the next logits."""
        B, K = self.batch, self.K
        step_1 = self.sampler.step.view(1).clone()
        row_BK = self.sampler.sample(self.logits_BKV)
        self.rows_BNK.index_copy_(1, step_1, row_BK.unsqueeze(1))
        self.ids_B1C[:, 0, :K].copy_(row_BK)
        pos_B1 = self.cache.length.view(B, 1).clone()
        self.cache.set_span(span)
        mask_B11S = (self.slots_S[:span] <= pos_B1).view(B, 1, 1, span)
        out = self.model(self.ids_B1C, positions_BT=pos_B1, cache=self.cache, mask_B1TS=mask_B11S)
        self.logits_BKV.copy_(out.logits_BTKV[:, -1])

    def _run_step(self, span: int) -> None:
        graph = self.graphs.get(span)
        if graph is None:
            self._step(span)
        else:
            graph.replay()

    @torch.no_grad()
    def _capture(self) -> None:
        """One CUDA graph per attention span; on a host sync in the step, stay eager (or raise)."""
        spans = sorted({self.span(n) for n in range(1, self.max_len + 1)})
        pool = torch.cuda.graph_pool_handle()
        graphs: dict[int, torch.cuda.CUDAGraph] = {}
        side = torch.cuda.Stream(device=self.device)
        try:
            for i, span in enumerate(spans):
                side.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(side):
                    self._reset_junk()
                    self._step(span)  # warm-up: lazy inits, attention plans for this span
                    if i == 0:  # a host sync would break capture: detect it in a plain step first
                        self._reset_junk()
                        previous = torch.cuda.get_sync_debug_mode()
                        torch.cuda.set_sync_debug_mode("error")
                        try:
                            self._step(span)
                        finally:
                            torch.cuda.set_sync_debug_mode(previous)
                torch.cuda.current_stream(self.device).wait_stream(side)
                self._reset_junk()
                graph = torch.cuda.CUDAGraph()
                graph.register_generator_state(self.sampler.generator)
                with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
                    self._step(span)
                graphs[span] = graph
        except RuntimeError as e:
            if self.cfg.cuda_graphs:
                raise RuntimeError(f"CUDA graph capture of the decode step failed: {e}") from e
            log.warning("decode step not capturable, decoding eagerly (slow): %s", str(e).splitlines()[0])
            torch.cuda.synchronize(self.device)
            return
        self.graphs = graphs

    def _reset_junk(self) -> None:
        """State that keeps warm-up steps in bounds (every call's prefill sets the real state)."""
        self.cache.length.zero_()
        self.sampler.reset(0)
        self.logits_BKV.zero_()


def decode(
    model: ZonosModel,
    prompts: Sequence[torch.Tensor],
    speakers: Sequence[torch.Tensor | None] | None = None,
    sampling: SamplingConfig | None = None,
    cfg: DecodeConfig | None = None,
) -> list[GenerationResult]:
    """Decode prompts ``[P_b, K + 1]`` together, one result each (a one-off :class:`Decoder`)."""
    sampling = sampling or SamplingConfig()
    decoder = Decoder(model, sampling, len(prompts), max(p.shape[0] for p in prompts), cfg)
    return decoder.generate(prompts, speakers)
