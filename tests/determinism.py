"""One place for what the tests pin so that a model's output is the same on every x86 machine.

Why (issue #29): CTranslate2, which runs Whisper (ASR and language ID), links Intel MKL, and MKL
picks its GEMM kernels by the CPU it finds (AVX2, AVX-512, VNNI, AMX). For int8 weights the
kernels round differently, and on a sentence Whisper base hears only just (espeak-ng's German
voice) that is enough to change words: on an AVX-512/VNNI CPU, the bilingual German clip read
"... bis zum Avant im Garten." natively and "... Stilzen, bis zum Avant ..." with MKL held to
AVX2, while the same clip with -80 dB of added noise, or its start moved by 50 ms, read "Abend".
``CT2_FORCE_CPU_ISA`` alone does not move MKL (it selects CTranslate2's own kernels only), which
is why setting it changed nothing on the machine the failure was reported from.

So tests assert what they are about with a tolerance (``tests/transcripts.py``), never one word
of a model's free-running output; and for reproducible failures across machines they run MKL in
its conditional-numerical-reproducibility mode at the AVX2 level (``MKL_CBWR=AVX2``, honoured by
every MKL copy in the process: CTranslate2's and torch's) with CTranslate2's own kernels at AVX2
too. Production leaves both unset and keeps the fastest path. ``ACCORD_TEST_NATIVE_ISA=1`` runs
the suite on the native path instead (the ISA test runs both either way).
"""

from __future__ import annotations

import os
from pathlib import Path

NATIVE_ENV = "ACCORD_TEST_NATIVE_ISA"
ISA_VARIABLES: tuple[str, ...] = ("MKL_CBWR", "CT2_FORCE_CPU_ISA")


def cpu_has_avx2() -> bool:
    try:
        return " avx2 " in f" {Path('/proc/cpuinfo').read_text()} ".replace("\n", " ")
    except OSError:
        return False


def pinned_isa_env() -> dict[str, str]:
    """The variables that hold MKL and CTranslate2 to AVX2 (empty where the CPU has no AVX2:
    CTranslate2 refuses an instruction set the CPU lacks)."""
    return {"MKL_CBWR": "AVX2", "CT2_FORCE_CPU_ISA": "AVX2"} if cpu_has_avx2() else {}


def native_isa_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` without the pins: the kernels the CPU would pick for a user."""
    return {k: v for k, v in env.items() if k not in ISA_VARIABLES}


def pin_for_tests() -> dict[str, str]:
    """Set the pins in this process (before any MKL user is loaded), unless the run asked for
    the native path; subprocesses and embedded Ray workers inherit them. Returns what it set."""
    if os.environ.get(NATIVE_ENV, "") not in ("", "0"):
        return {}
    pins = {k: v for k, v in pinned_isa_env().items() if k not in os.environ}
    os.environ.update(pins)
    return pins
