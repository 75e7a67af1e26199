"""Expert parallelism for accord's dropless MoE, applied from outside the model.

With ``ep_size`` = P, each rank of an expert-parallel group keeps E / P experts (a contiguous
block). :class:`ExpertParallelExperts` replaces a layer's ``GroupedExperts``: the router runs
replicated as before; the routed token slots are sorted by expert, exchanged with one
``all_to_all`` so each rank receives the slots of its own experts, computed with the same
grouped kernel, and sent back with a second ``all_to_all`` (both differentiable, so backward
runs the mirror exchange). Nothing is dropped and no capacity factor exists.

Process groups come from DeepSpeed's groups API (``ep_size_P`` expert-parallel and
expert-data-parallel groups). The replacement module subclasses DeepSpeed's ``MoE`` only so
that the engine knows the model has MoE layers: expert parameters are tagged
``allreduce=False`` / ``group_name``, DeepSpeed then averages their gradients over the
expert-data-parallel group only (never mixing different experts), and ZeRO 1/2 places them in
their own MoE param groups. Non-expert parameters stay data parallel over all ranks.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from deepspeed.moe.layer import MoE as _DeepSpeedMoE
from deepspeed.utils import groups
from torch import nn
from torch.distributed.nn.functional import all_to_all_single

from accord.model.moe import GroupedExperts


def ep_group_name(ep_size: int) -> str:
    return f"ep_size_{ep_size}"


def create_groups(ep_size: int) -> tuple[dist.ProcessGroup, dist.ProcessGroup]:
    """(expert-parallel group, expert-data-parallel group) for this rank."""
    name = ep_group_name(ep_size)
    if name not in groups._get_expert_parallel_group_dict():
        groups._create_expert_and_data_parallel(ep_size)
    return groups._get_expert_parallel_group(name), groups._get_expert_data_parallel_group(name)


class ExpertParallelExperts(_DeepSpeedMoE):
    """The local block of experts of one MoE layer plus the all-to-all token exchange."""

    def __init__(self, full: GroupedExperts, ep_size: int, ep_group: dist.ProcessGroup) -> None:
        nn.Module.__init__(self)  # DeepSpeed's MoE.__init__ builds its own gate/experts: skip it
        E = full.n_experts
        if E % ep_size:
            raise ValueError(f"{E} experts cannot be split over ep_size={ep_size}")
        self.ep_size = ep_size
        self.num_experts = E
        self.num_local_experts = E // ep_size
        self.expert_group_name = ep_group_name(ep_size)
        self.enable_expert_tensor_parallelism = False
        self.use_residual = False
        self.ep_group = ep_group
        self.ep_rank = dist.get_rank(ep_group)
        L = self.num_local_experts
        lo = self.ep_rank * L
        self.local = GroupedExperts(full.dim, full.hidden, L)
        self.local.impl = full.impl
        with torch.no_grad():
            self.local.w13 = nn.Parameter(full.w13.detach()[lo : lo + L].clone())
            self.local.w2 = nn.Parameter(full.w2.detach()[lo : lo + L].clone())
        for p in self.local.parameters():
            p.allreduce = False
            p.group_name = self.expert_group_name

    # DeepSpeed calls this during engine setup; our groups exist already
    def set_deepspeed_parallelism(self, use_data_before_expert_parallel_: bool = False) -> None:
        create_groups(self.ep_size)

    @property
    def n_experts(self) -> int:
        return self.num_experts

    def forward(self, x_ND: torch.Tensor, experts_NK: torch.Tensor, weights_NK: torch.Tensor) -> torch.Tensor:
        _N, D = x_ND.shape
        K = experts_NK.shape[1]
        P, L = self.ep_size, self.num_local_experts
        flat_M = experts_NK.reshape(-1)
        order_M = torch.argsort(flat_M, stable=True)
        token_M = order_M // K
        counts_E = torch.bincount(flat_M, minlength=self.num_experts)
        x_MD = x_ND.index_select(0, token_M)
        # how many slots each peer sends me, per local expert: [P, L]
        recv_counts_PL = torch.empty_like(counts_E.view(P, L))
        dist.all_to_all_single(recv_counts_PL, counts_E.view(P, L).contiguous(), group=self.ep_group)
        send_splits = counts_E.view(P, L).sum(1).tolist()
        recv_splits = recv_counts_PL.sum(1).tolist()
        recv_RD = x_MD.new_empty(sum(recv_splits), D)
        recv_RD = all_to_all_single(recv_RD, x_MD, recv_splits, send_splits, group=self.ep_group)
        # received rows are grouped by peer, then by local expert: regroup by local expert
        local_R = torch.repeat_interleave(
            torch.arange(L, device=x_ND.device).repeat(P), recv_counts_PL.reshape(-1)
        )
        perm_R = torch.argsort(local_R, stable=True)
        y_sorted = self.local.forward_sorted(recv_RD.index_select(0, perm_R), recv_counts_PL.sum(0))
        y_RD = torch.empty_like(y_sorted).index_copy(0, perm_R, y_sorted)
        back_MD = x_MD.new_empty(x_MD.shape[0], D)
        back_MD = all_to_all_single(back_MD, y_RD, send_splits, recv_splits, group=self.ep_group)
        w_M1 = weights_NK.reshape(-1)[order_M].unsqueeze(-1).to(back_MD.dtype)
        return torch.zeros_like(x_ND).index_add(0, token_M, back_MD * w_M1)


def apply_expert_parallel(model: nn.Module, ep_size: int) -> list[ExpertParallelExperts]:
    """Swap every MoE layer's experts for its local block; returns the new modules."""
    ep_group, _ = create_groups(ep_size)
    swapped = []
    for layer in model.layers:
        ff = getattr(layer, "feed_forward", None)
        if ff is not None and isinstance(getattr(ff, "experts", None), GroupedExperts):
            ff.experts = ExpertParallelExperts(ff.experts, ep_size, ep_group)
            swapped.append(ff.experts)
    return swapped


def save_expert_files(engine, ckpt_dir: str, tag: str) -> None:
    """Write each rank's expert blocks where DeepSpeed's MoE loader looks for them.

    DeepSpeed keeps expert parameters out of the shared model file and reloads them from
    ``layer_{l}_expert_{e}_mp_rank_00_model_states.pt``; its own writer only knows its native
    per-expert modules, so for our fused ``[E_local, ...]`` blocks we write the local block under
    the first local expert's file (with the full state-dict keys) and empty files for the rest.
    """
    from deepspeed.runtime.engine import DeepSpeedEngine

    layer_id = 0
    for name, m in engine.module.named_modules():
        if not isinstance(m, ExpertParallelExperts):
            continue
        first = m.ep_rank * m.num_local_experts
        block = {f"{name}.{k}": v.detach().clone() for k, v in m.state_dict().items()}
        for local in range(m.num_local_experts):
            path = DeepSpeedEngine._get_expert_ckpt_name(ckpt_dir, layer_id, first + local, tag)
            torch.save(block if local == 0 else {}, path)
        layer_id += 1


def local_expert_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        n: p.detach().clone() for n, p in model.named_parameters() if getattr(p, "allreduce", True) is False
    }


def load_local_expert_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, v in state.items():
            params[n].copy_(v)


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded state dict (ZONOS2 keys): local expert blocks gathered over the EP group."""
    sd = {}
    ep_mods = {n: m for n, m in model.named_modules() if isinstance(m, ExpertParallelExperts)}
    for k, v in model.state_dict().items():
        k = k.replace("_checkpoint_wrapped_module.", "")
        owner = next(
            (n for n in ep_mods if k.startswith(n.replace("_checkpoint_wrapped_module.", "") + ".")), None
        )
        if owner is None:
            sd[k] = v
            continue
        m = ep_mods[owner]
        parts = [torch.empty_like(v) for _ in range(m.ep_size)]
        dist.all_gather(parts, v.contiguous(), group=m.ep_group)
        sd[k.replace(".local.", ".")] = torch.cat(parts, 0)
    return sd
