"""The ingest plan checked and ordered from its steps' declarations (pipeline/job/plan.py), the
one spelling of step options, and the one owner of the default ASR models. No models load."""

from __future__ import annotations

import dataclasses

import pytest

from accord.core.clip import CLIP_SCHEMA
from accord.jobs.contract import PlanError
from accord.pipeline.job import plan as P
from accord.pipeline.job.config import IngestConfig
from accord.pipeline.steps.score import FeatureStep, TranscriptCheckStep

POST = ["AgreementStep", "TextLanguageStep", "FeatureStep", "TranscriptCheckStep", "EligibilityStep"]


def test_the_default_plan_keeps_its_order() -> None:
    """Outputs stay identical: the derived order is the one the tables had."""
    plan = P.build_plan(IngestConfig())
    assert [s.label for s in plan.post] == POST
    assert plan.before_asr == ("speaker_consistency", "lid")
    assert list(plan.signals) == ["speaker_consistency", "lid", "dnsmos"]
    assert [s.label for s in plan.source] == ["DecodeStep", "VadStep"]
    # only DNSMOS on: nothing runs before ASR
    assert P.build_plan(IngestConfig(signals=("dnsmos",))).before_asr == ()


def test_every_registered_step_declares_real_columns() -> None:
    steps = [*P.SOURCE_STEPS.values(), *P.SIGNAL_STEPS.values(), *P.POST_STEPS.values(), (P.ASR_STEP, None)]
    for step, _ in steps:
        assert step.writes, step  # every ingest step adds something to the clip
        for key in step.writes:
            assert key.partition(".")[0] in CLIP_SCHEMA.names, (step, key)


class MisspeltFeatures(FeatureStep):
    writes = tuple("snr_dB" if k == "snr_db" else k for k in FeatureStep.writes)


class ReadsNothingWritten(TranscriptCheckStep):
    reads = (*TranscriptCheckStep.reads, "speaker_embedding")


def test_a_misspelt_output_fails_at_plan_time(monkeypatch) -> None:
    monkeypatch.setitem(P.POST_STEPS, "features", (MisspeltFeatures, P.POST_STEPS["features"][1]))
    with pytest.raises(
        PlanError, match="step 'features' writes 'snr_dB', which is not a column of CLIP_SCHEMA"
    ):
        P.build_plan(IngestConfig())


def test_a_read_no_earlier_step_writes_fails_at_plan_time(monkeypatch) -> None:
    monkeypatch.setitem(P.POST_STEPS, "transcript_checks", (ReadsNothingWritten, None))
    with pytest.raises(
        PlanError, match="'transcript_checks' reads 'speaker_embedding', which no earlier step"
    ):
        P.build_plan(IngestConfig())
    # without the feature step, nothing measures the silences the transcript checks read
    monkeypatch.setitem(P.POST_STEPS, "transcript_checks", (TranscriptCheckStep, None))
    monkeypatch.delitem(P.POST_STEPS, "features")
    with pytest.raises(PlanError, match="reads 'leading_silence_s', which no earlier step writes"):
        P.build_plan(IngestConfig())


def test_a_reader_listed_before_its_writer_is_reordered(monkeypatch) -> None:
    table = dict(P.POST_STEPS)
    shuffled = {
        n: table[n] for n in ("eligibility", "transcript_checks", "features", "text_language", "agreement")
    }
    monkeypatch.setattr(P, "POST_STEPS", shuffled)
    assert [s.label for s in P.build_plan(IngestConfig()).post] == [
        "FeatureStep", "AgreementStep", "TranscriptCheckStep", "TextLanguageStep", "EligibilityStep"
    ]  # fmt: skip
    # DNSMOS listed first still runs after ASR (nothing ASR reads), LID still before it
    signals = dict(P.SIGNAL_STEPS)
    monkeypatch.setattr(P, "SIGNAL_STEPS", {n: signals[n] for n in ("dnsmos", "lid", "speaker_consistency")})
    plan = P.build_plan(IngestConfig())
    assert plan.before_asr == ("speaker_consistency", "lid")  # LID reads the audio the speaker step cuts
    assert list(plan.signals) == ["speaker_consistency", "lid", "dnsmos"]


def test_one_spelling_for_model_and_threads() -> None:
    for step, config in (*P.SIGNAL_STEPS.values(), *P.SOURCE_STEPS.values(), *P.POST_STEPS.values()):
        names = {f.name for f in dataclasses.fields(config)} if config else set()
        assert not names & set(P.RENAMED_OPTIONS), (step, names & set(P.RENAMED_OPTIONS))
    assert P.build_plan(IngestConfig(steps={"lid": {"threads": 3}})).signals["lid"].kwargs == {"threads": 3}
    for steps, message in [
        ({"lid": {"cpu_threads": 2}}, "steps.lid: option 'cpu_threads' is now spelt 'threads'"),
        ({"lid": {"model_ref": "whisper:small"}}, "steps.lid: option 'model_ref' is now spelt 'model'"),
        ({"speaker_consistency": {"weights": "x"}}, "option 'weights' is now spelt 'model'"),
        ({"vad": {"model_path": "x.onnx"}}, "option 'model_path' is now spelt 'model'"),
        ({"asr:faster-whisper": {"cpu_threads": 2}}, "steps.asr:faster-whisper: option 'cpu_threads' is now"),
        (
            {"features": {"speech_treshold": 0.4}},
            r"steps.features: unknown option\(s\) \['speech_treshold'\]",
        ),
        ({"agreement": {"x": 1}}, "steps.agreement: this step takes no options"),
    ]:
        with pytest.raises(ValueError, match=message):
            P.build_plan(IngestConfig(steps=steps))
    # the steps that took plain keyword arguments have config classes now
    plan = P.build_plan(IngestConfig(steps={"transcript_checks": {"max_repeat_ratio": 0.9}}))
    assert plan.post[3].build().config.max_repeat_ratio == 0.9


def test_default_asr_models_have_one_owner() -> None:
    from accord.pipeline.asr.base import backend_class, create_backend, default_models
    from accord.pipeline.steps.asr import DEFAULT_SYSTEMS

    assert default_models() == {
        "faster-whisper": "whisper:base",
        "moonshine": "moonshine:tiny-en",
        "nemo": "",
    }
    assert IngestConfig().asr_models == default_models()
    assert backend_class("faster-whisper").default_model == "whisper:base"
    assert [create_backend(s.backend, s.model).model_ref for s in DEFAULT_SYSTEMS] == [
        "whisper:base", "moonshine:tiny-en"
    ]  # fmt: skip
    with pytest.raises(ValueError, match="needs a model reference"):
        create_backend("nemo")


def test_a_new_signal_is_a_module_and_a_registration(monkeypatch) -> None:
    """docs/signals.md's worked example: a Step subclass with its declarations and config, one
    line in SIGNAL_STEPS, and its column (here added to a copy of CLIP_SCHEMA)."""
    from dataclasses import dataclass

    import numpy as np
    import pyarrow as pa

    from accord.pipeline.steps.batched import AUDIO_KEY, AudioBatchStep

    @dataclass(frozen=True)
    class ClippingConfig:
        level: float = 0.999

    class ClippingStep(AudioBatchStep):
        name = "clipping"
        reads = (AUDIO_KEY,)
        writes = ("clipped_share",)

        def __init__(self, config: ClippingConfig | None = None) -> None:
            self.config = config or ClippingConfig()

        def score(self, audios):
            return [
                float(np.mean(np.abs(x) >= self.config.level)) if len(x) else float("nan") for x in audios
            ]

        def annotate(self, item, share):
            return {**item, "clipped_share": share}

    monkeypatch.setitem(P.SIGNAL_STEPS, "clipping", (ClippingStep, ClippingConfig))
    cfg = IngestConfig(signals=("lid", "clipping"), steps={"clipping": {"level": 0.9}})
    with pytest.raises(PlanError, match="'clipping' writes 'clipped_share', which is not a column"):
        P.build_plan(cfg)  # the column comes first
    monkeypatch.setattr(P, "CLIP_SCHEMA", CLIP_SCHEMA.append(pa.field("clipped_share", pa.float32())))
    plan = P.build_plan(cfg)
    assert plan.before_asr == ("lid",) and list(plan.signals) == ["lid", "clipping"]  # after ASR
    step = plan.signals["clipping"].build()
    out = step.process({AUDIO_KEY: np.array([0.0, 0.95, -1.0, 0.2], np.float32)})[0]
    assert out["clipped_share"] == 0.5
