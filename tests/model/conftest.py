"""Small model fixtures: the debug flavour on CPU with a fixed seed."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.fixture
def debug_cfg():
    from accord.model.config import get_flavour

    return get_flavour("debug")


@pytest.fixture
def debug_model(debug_cfg):
    from accord.model.zonos import ZonosModel

    torch.manual_seed(0)
    return ZonosModel(debug_cfg).eval()


def random_ids(cfg, B: int, T: int, seed: int = 0) -> torch.Tensor:
    """Audio rows of random codes with the text column padded (what the model sees mid-clip)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg.codebook_size, (B, T, cfg.n_codebooks + 1), generator=g)
    ids[..., cfg.n_codebooks] = torch.randint(0, cfg.text_vocab + 1, (B, T), generator=g)
    return ids
