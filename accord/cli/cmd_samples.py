"""``accord samples``: generate the deterministic sample bucket and the malformed corpus."""

from __future__ import annotations

from pathlib import Path

import click


@click.group(help="Generate the deterministic sample bucket and malformed corpus.")
def samples() -> None:
    pass


@samples.command("bucket")
@click.argument("out", type=click.Path(path_type=Path))
@click.option(
    "--scale", type=click.IntRange(min=1), default=1, show_default=True, help="Copies of the recipe."
)
@click.option("--seed", type=int, default=0, show_default=True)
def bucket(out: Path, scale: int, seed: int) -> None:
    """Write OUT/bucket/ (audio files) and OUT/truth.json (sentence spans per file)."""
    from accord.samples import make_bucket

    try:
        b = make_bucket(out, scale=scale, seed=seed)
    except FileExistsError as e:
        raise click.ClickException(f"{e}; choose an empty or new OUT") from e
    seconds = sum(e["duration_s"] for e in b.truth.values())
    n_sent = sum(len(e["sentences"]) for e in b.truth.values())
    click.echo(
        f"{b.path}: {len(b.truth)} files, {seconds:.1f} s, {n_sent} sentences; truth: {b.root / 'truth.json'}"
    )


@samples.command("malformed")
@click.argument("out", type=click.Path(path_type=Path))
def malformed(out: Path) -> None:
    """Write OUT/malformed/ (broken files) and OUT/expected.json (filename -> error kind or null)."""
    from accord.samples import make_malformed

    try:
        m = make_malformed(out)
    except FileExistsError as e:
        raise click.ClickException(f"{e}; choose an empty or new OUT") from e
    for name, kind in sorted(m.expected.items()):
        click.echo(f"{name:24s} {kind or '(must succeed)'}")
    click.echo(f"{m.path}; expected: {m.path.parent / 'expected.json'}")
