"""Error kinds for per-item failures, shared with the malformed-corpus generator.

The strings are the contract: ``accord.samples.malformed`` generates files that must fail
with exactly these kinds, and ``errors/`` rows carry them in ``error_type``. A test keeps the
two in step; pipeline code imports them from here only, never from test-data code.
"""

from __future__ import annotations

EMPTY_FILE = "empty_file"  # zero bytes
NOT_AUDIO = "not_audio"  # bytes that no demuxer recognises as audio
DECODE_ERROR = "decode_error"  # recognised, but decoding failed (corrupt or truncated stream)
NAN_SAMPLES = "nan_samples"  # decoded samples contain NaN or inf
EMPTY_AUDIO = "empty_audio"  # decodes to zero samples
NO_SPEECH = "no_speech"  # decodes fine, but VAD finds no speech clip

ERROR_KINDS: tuple[str, ...] = (EMPTY_FILE, NOT_AUDIO, DECODE_ERROR, NAN_SAMPLES, EMPTY_AUDIO, NO_SPEECH)
