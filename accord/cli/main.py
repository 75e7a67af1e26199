"""The ``accord`` command: one group per user verb, each loaded only when used.

Heavy imports (torch, ray, nemo) happen inside the subcommand modules, so ``accord --help``
and ``accord doctor`` stay fast.
"""

from __future__ import annotations

import importlib

import click

# verb -> "module:attribute" of a click command or group
COMMANDS: dict[str, str] = {
    "ingest": "accord.cli.cmd_ingest:ingest",
    "manifest": "accord.cli.cmd_manifest:manifest",
    "tokenize": "accord.cli.cmd_tokenize:tokenize",
    "train": "accord.cli.cmd_train:train",
    "synth": "accord.cli.cmd_synth:synth",
    "model": "accord.cli.cmd_model:model",
    "samples": "accord.cli.cmd_samples:samples",
    "report": "accord.cli.cmd_report:report",
    "doctor": "accord.cli.cmd_doctor:doctor",
}

HELP = {
    "ingest": "Raw audio bucket -> VAD clips -> multi-ASR transcripts -> agreement manifest (Ray job).",
    "manifest": "Inspect agreement-filtered manifests: stats, show, filter, plot.",
    "tokenize": "Manifest -> DAC codes, ECAPA embeddings, byte text -> WebDataset shards.",
    "train": "Train the ZONOS2-style MoE through pretrain, midtrain, anneal1, anneal2.",
    "synth": "Synthesize speech from a checkpoint.",
    "model": "Model flavours: parameter counts, checkpoint import/export.",
    "samples": "Generate the deterministic sample bucket and malformed corpus.",
    "report": "Build the HTML report of a run.",
    "doctor": "Versions, devices, offline models, Ray reachability.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as e:
            if e.name == module:
                return click.Command(name, help=HELP[name] + " (not available in this build)")
            raise

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text from HELP, so listing commands imports nothing heavy.
        with formatter.section("Commands"):
            formatter.write_dl([(n, HELP[n]) for n in sorted(COMMANDS)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="accord")
def cli() -> None:
    """accord: raw audio buckets to a trained ZONOS2-style MoE TTS model."""


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
