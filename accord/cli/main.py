"""The ``accord`` command: one group per user verb, each loaded only when used.

Heavy imports (torch, ray, nemo) happen inside the subcommand modules, so ``accord --help``
and ``accord doctor`` stay fast.

A user's mistake leaves here as one line on stderr and exit status 2, never a traceback: a
usage error of any subcommand (click's, or a command's ``click.UsageError``) and every
:class:`accord.core.errors.UserError` the library raises (a config key or value, a missing
input, a thresholds file) become :class:`UserMistake` in :meth:`LazyGroup.invoke`, the one
place that does so. A run that stops because its storage refused a write (disk full, quota,
read-only, permission) leaves as one line naming the file and exit status 1
(:class:`StorageFault`): nothing about it is the user's input, and a traceback would bury the
one fact that matters. ``ACCORD_TRACEBACK=1`` shows the traceback instead.
"""

from __future__ import annotations

import errno
import importlib
import os
from typing import IO, Any

import click

from accord.core.errors import UserError

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
    "manifest": "Inspect agreement-filtered manifests: stats, show, filter, plot, explore.",
    "tokenize": "Manifest -> DAC codes, ECAPA embeddings, byte text -> WebDataset shards.",
    "train": "Train the ZONOS2-style MoE through pretrain, midtrain, anneal1, anneal2.",
    "synth": "Synthesize speech from a checkpoint.",
    "model": "Model flavours: parameter counts, checkpoint import/export.",
    "samples": "Generate the deterministic sample bucket and malformed corpus.",
    "report": "Build the HTML report of a run.",
    "doctor": "Versions, devices, offline models, Ray reachability.",
}


class UserMistake(click.UsageError):
    """A user's mistake as ``accord`` reports it: ``accord: error: <problem and fix>``, one line
    on stderr, exit status 2."""

    def show(self, file: IO[Any] | None = None) -> None:
        message = " ".join(line.strip() for line in self.format_message().splitlines() if line.strip())
        click.echo(f"accord: error: {message}", file=file, err=file is None)


class StorageFault(click.ClickException):
    """A write the storage refused (:data:`STORAGE_ERRNOS`): one line on stderr, exit status 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"accord: error: {self.format_message()}", file=file, err=file is None)


# errno values that mean "the storage refused", not "accord failed"
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def storage_fault(e: OSError) -> StorageFault:
    where = f" writing {e.filename}" if e.filename else ""
    return StorageFault(
        f"{os.strerror(e.errno)}{where}: free space or fix the permissions, then run the same command again"
    )


class LazyGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        """The subcommand, with every user mistake turned into one :class:`UserMistake` line."""
        try:
            return super().invoke(ctx)
        except UserMistake:
            raise
        except click.UsageError as e:  # click's own (a missing option, a bad choice) and ours
            where = e.ctx.command_path if e.ctx is not None else ctx.command_path
            raise UserMistake(f"{e.format_message()} (see '{where} --help')", e.ctx) from None
        except UserError as e:
            raise UserMistake(str(e), ctx) from None
        except OSError as e:
            if e.errno not in STORAGE_ERRNOS or os.environ.get("ACCORD_TRACEBACK"):
                raise
            raise storage_fault(e) from None

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
