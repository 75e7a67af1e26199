"""``accord doctor``: versions, devices, offline models, Ray reachability."""

from __future__ import annotations

import dataclasses
import json

import click


@click.command(help="Report versions, devices, which models resolve offline, and Ray reachability.")
@click.option("--address", default=None, help="Ray address to check (ray://host:10001, http://host:8265).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor(address: str | None, as_json: bool) -> None:
    from accord.app.doctor import run

    report = run(address)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(report), indent=2, default=str))
        return
    click.echo(f"python      {report.python}  ({report.platform})")
    click.echo("packages")
    for name, version in report.versions.items():
        click.echo(f"  {name:<22} {version or 'not installed'}")
    click.echo("devices")
    for key, value in report.devices.items():
        click.echo(f"  {key:<22} {value}")
    click.echo("models (offline)")
    for m in report.models:
        state = "available" if m.available else "ABSENT"
        click.echo(f"  {m.ref:<22} {state:<10} {m.path or m.note}")
    r = report.ray
    reach = {True: "reachable", False: "UNREACHABLE", None: "-"}[r.get("reachable")]
    click.echo(f"ray         {r.get('address') or '(local)'}: {reach}  {r.get('note', '')}")
