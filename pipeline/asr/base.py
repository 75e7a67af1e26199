"""The ASR backend contract and its registry.

A backend turns a batch of 16 kHz mono float32 clips into one :class:`Transcript` each.
``load`` is separate from construction so a Ray actor pool loads a model once per actor,
and so benchmarks can time ``transcribe_batch`` alone. Backends are registered by name
(``faster-whisper``, ``moonshine``, ``nemo``) and created from configuration.

Each backend declares the languages it can transcribe (:attr:`AsrBackend.languages`, ``None``
for any): the ASR step sends a clip only to the systems that support its language, so an
English-only model never "transcribes" German into English nonsense that then scores as
disagreement (:func:`supports`).
"""

from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Transcript:
    text: str
    language: str = ""  # ISO 639-1, "" when the system does not say
    language_prob: float = math.nan
    avg_logprob: float = math.nan
    extra: dict[str, Any] = field(default_factory=dict)


class AsrBackend(ABC):
    """One ASR system. Subclasses set ``name`` and ``default_model`` and take ``model_ref`` + options."""

    name: str = "asr"
    # The model reference a run gets when it names none (resolved by accord.core.weights); the one
    # place a default ASR model is defined ("": the backend needs one named, e.g. NeMo).
    default_model: str = ""
    # The option that sets the backend's intra-op CPU threads (None: it has no such knob).
    # The ingest job sets it from the actor's CPU reservation unless the run config does.
    thread_option: str | None = None
    # The dataclass of its options (``steps: {"asr:<system>": {...}}``), checked on the driver
    # before any actor builds the backend (None: the backend reads the options it knows).
    options_class: type | None = None
    # ISO 639-1 codes the model transcribes; None: any language (a multilingual model). A
    # backend may narrow it in ``load`` once it knows its model (Whisper ``*.en``).
    languages: frozenset[str] | None = None

    def __init__(self, model_ref: str | None = None, **options: Any) -> None:
        self.model_ref = model_ref or self.default_model
        if not self.model_ref:
            raise ValueError(f"ASR backend {self.name!r} needs a model reference")
        self.options = options

    @abstractmethod
    def load(self) -> None:
        """Load weights (idempotent)."""

    @abstractmethod
    def transcribe_batch(
        self,
        audios: list[np.ndarray],
        groups: list[Hashable] | None = None,
        languages: list[str] | None = None,
    ) -> list[Transcript]:
        """One transcript per 16 kHz mono float32 clip, in order.

        ``groups`` (e.g. the source URI per clip) tells backends which clips may share
        context, such as one packed decoding window; backends may ignore it. ``languages``:
        each clip's identified language ("" unknown), for backends that can be told the
        language instead of guessing it; others ignore it.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_ref!r})"


def supports(languages: frozenset[str] | None, language: str) -> bool:
    """Whether a system restricted to ``languages`` (None: any) should transcribe a clip in
    ``language``. An unknown language ("") goes to every system: nothing to route on."""
    return languages is None or not language or language in languages


# name -> "module:Class", imported only when used (NeMo import takes ~20 s)
_REGISTRY: dict[str, str] = {
    "faster-whisper": "accord.pipeline.asr.whisper:WhisperBackend",
    "moonshine": "accord.pipeline.asr.moonshine:MoonshineBackend",
    "nemo": "accord.pipeline.asr.nemo:NemoBackend",
}


def register(name: str, target: str | Callable[..., AsrBackend]) -> None:
    """Add a backend: ``target`` is ``"module:Class"`` or a class."""
    if callable(target):
        target = f"{target.__module__}:{target.__qualname__}"
    _REGISTRY[name] = target


def available_backends() -> list[str]:
    return sorted(_REGISTRY)


def backend_class(name: str) -> type[AsrBackend]:
    """The class registered as ``name`` (imports its module, not its model libraries)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown ASR backend {name!r}; available: {', '.join(available_backends())}")
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def default_models() -> dict[str, str]:
    """Registered backend -> its ``default_model`` ("" when it needs one named)."""
    return {name: backend_class(name).default_model for name in _REGISTRY}


def create_backend(name: str, model_ref: str | None = None, **options: Any) -> AsrBackend:
    """Instantiate the backend registered as ``name`` (not loaded yet); no ``model_ref``: its default."""
    return backend_class(name)(model_ref, **options)
