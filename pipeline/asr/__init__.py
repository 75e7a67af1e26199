"""ASR backends behind one interface; see :mod:`accord.pipeline.asr.base`."""

from accord.pipeline.asr.base import AsrBackend, Transcript, available_backends, create_backend, register

__all__ = ["AsrBackend", "Transcript", "available_backends", "create_backend", "register"]
