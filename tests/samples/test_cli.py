"""``accord samples``: thin CLI over the generators."""

from __future__ import annotations

import json

from click.testing import CliRunner

from accord.cli.main import cli
from accord.samples.malformed import EXPECTED


def test_samples_malformed_writes_corpus(tmp_path):
    out = tmp_path / "m"
    r = CliRunner().invoke(cli, ["samples", "malformed", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "expected.json").read_text()) == EXPECTED
    assert sorted(p.name for p in (out / "malformed").iterdir()) == sorted(EXPECTED)
    # same command again reuses it; a different corpus kind in the same folder is refused
    assert CliRunner().invoke(cli, ["samples", "malformed", str(out)]).exit_code == 0
    r = CliRunner().invoke(cli, ["samples", "bucket", str(out)])
    assert r.exit_code != 0 and "exists" in r.output
