"""``accord tokenize MANIFEST --out SHARDS`` routes to ``run``; subcommands stay reachable; the
run's config comes from its dataclass, ``--config``, the named flags and ``--set``."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
from click.testing import CliRunner

from accord.cli.main import cli
from accord.core.config import load_config, to_dict
from accord.core.stages import STAGES
from accord.core.vocab import VocabConfig
from accord.tokenize.config import TokenizeConfig
from accord.tokenize.sample_manifest import clip_row, write_manifest


def test_default_run_with_nothing_eligible(tmp_path) -> None:
    row = clip_row(str(tmp_path / "a.wav"), 0.0, 1.0, "x", "en", eligible=dict.fromkeys(STAGES, False))
    manifest = write_manifest([row], tmp_path / "ingest")
    out = tmp_path / "shards"
    r = CliRunner().invoke(cli, ["tokenize", str(manifest), "--out", str(out), "--local", "--no-reapply"])
    assert r.exit_code == 0, r.output
    assert "0 clips in 0 shards" in r.output
    assert pq.read_table(out / "index.parquet").num_rows == 0
    runs = list((out / "runs").glob("*.json"))
    assert len(runs) == 1 and json.loads(runs[0].read_text())["n_clips"] == 0


def test_help_lists_subcommands_and_bad_stage_fails(tmp_path) -> None:
    r = CliRunner().invoke(cli, ["tokenize", "--help"])
    assert r.exit_code == 0 and all(c in r.output for c in ("run", "fit-lda", "decode"))
    manifest = write_manifest([clip_row("/x.wav", 0.0, 1.0, "x", "en")], tmp_path / "ingest")
    r = CliRunner().invoke(
        cli, ["tokenize", str(manifest), "--out", str(tmp_path / "s"), "--min-stage", "bogus", "--local"]
    )
    assert r.exit_code == 2 and "bogus" in r.output and "pretrain" in r.output


def test_config_file_flags_and_sets_override_in_order(tmp_path, monkeypatch) -> None:
    """defaults < --config < named flags < --set: a clip eligible for pretrain only is selected
    (and its absent trained models refused) exactly when the winning min_stage is pretrain."""
    (tmp_path / "models").mkdir()
    monkeypatch.setenv("ACCORD_MODELS", str(tmp_path / "models"))  # no trained weights resolve
    only_pretrain = {s: s == "pretrain" for s in STAGES}
    row = clip_row(str(tmp_path / "a.wav"), 0.0, 1.0, "x", "en", eligible=only_pretrain)
    manifest = str(write_manifest([row], tmp_path / "ingest"))
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("ingest: {asr: moonshine}\ntokenize: {min_stage: anneal1, reapply: false}\n")
    base = ["tokenize", manifest, "--out", str(tmp_path / "s"), "--local"]

    def run(*extra: str):
        return CliRunner().invoke(cli, [*base, *extra])

    refused = run("--no-reapply")  # the default min_stage (pretrain) selects the clip
    assert refused.exit_code == 1 and "not available offline" in refused.output, refused.output
    r = run("--config", str(run_yaml))
    assert r.exit_code == 0 and "0 clips in 0 shards" in r.output, r.output
    assert run("--config", str(run_yaml), "--min-stage", "pretrain").exit_code == 1
    r = run("--config", str(run_yaml), "--min-stage", "pretrain", "--set", "min_stage=anneal1")
    assert r.exit_code == 0 and "0 clips" in r.output, r.output


def test_bad_config_keys_are_usage_errors(tmp_path) -> None:
    manifest = str(write_manifest([clip_row("/x.wav", 0.0, 1.0, "x", "en")], tmp_path / "ingest"))
    base = ["tokenize", manifest, "--out", str(tmp_path / "s"), "--local"]
    r = CliRunner().invoke(cli, [*base, "--set", "codec.reff=dac:random"])
    assert r.exit_code == 2 and "tokenize.codec.reff" in r.output and "ref" in r.output, r.output
    r = CliRunner().invoke(cli, [*base, "--set", "min_stage=finetune"])
    assert r.exit_code == 2 and "unknown stage" in r.output, r.output
    assert not (tmp_path / "s").exists()


def test_tokenize_config_loads_nested_sections(tmp_path) -> None:

    p = tmp_path / "run.yaml"
    p.write_text(
        "tokenize:\n  codec: {ref: 'dac:random'}\n  shards: {max_samples: 10}\n"
        "  augment: {names: 'noise,music'}\n  vocab: {speaking_rate_buckets: ['0-8', '8-12', '12+']}\n"
        "  crop_seconds: [0.5, 2]\n"
    )
    cfg = load_config(TokenizeConfig, str(p), section="tokenize")
    assert cfg.codec.ref == "dac:random" and cfg.codec.device == TokenizeConfig().codec.device
    assert cfg.shards.max_samples == 10 and cfg.shards.max_bytes == TokenizeConfig().shards.max_bytes
    assert cfg.augment.names == ("noise", "music") and cfg.crop_seconds == (0.5, 2.0)
    assert cfg.vocab == VocabConfig.from_dict({"speaking_rate_buckets": ["0-8", "8-12", "12+"]})
    assert load_config(TokenizeConfig, flags=to_dict(cfg)) == cfg, "resolved configs travel as plain data"


def test_for_model_picks_the_speaker_encoder_of_the_flavour() -> None:
    """zonos2-8b's speaker path takes the release's 2048-d voice embedding; the 192-d flavours
    ECAPA; an explicit --speaker wins."""
    import pytest

    from accord.cli.cmd_tokenize import parse_run_flags
    from accord.tokenize.speaker import DEFAULT_REF, ZONOS2_REF, speaker_ref_for

    assert ZONOS2_REF == "zonos2-spk:release"
    assert parse_run_flags(["--for-model", "zonos2-8b"])["speaker"]["ref"] == ZONOS2_REF
    assert parse_run_flags(["--for-model", "debug"])["speaker"]["ref"] == DEFAULT_REF
    flags = parse_run_flags(["--for-model", "zonos2-8b", "--speaker", "ecapa:auralis"])
    assert flags["speaker"]["ref"] == "ecapa:auralis"
    with pytest.raises(ValueError, match="no speaker encoder makes 512-d"):
        speaker_ref_for(512)
