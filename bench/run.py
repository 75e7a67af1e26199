"""Run every ``bench/bench_*.py`` and write ``bench/results.json`` and ``bench/results.md``.

Contract for a benchmark module: ``def run(quick: bool) -> list[dict]``, each dict a
result row with ``name`` (str), ``value`` (float), ``unit`` (str), and optionally
``baseline`` (float, the peer measured in the same run), ``ratio`` (value / baseline, or
the reverse where lower is better — say so in ``note``), ``goal`` (ratio target) and
``note``. Ratios, not absolute numbers, are what we compare: this machine drifts 15–35%
between passes, so each benchmark alternates accord and its peer within one run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).parent


def _table(rows: list[dict]) -> str:
    lines = ["| benchmark | value | unit | baseline | ratio | goal | met |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio, goal = r.get("ratio"), r.get("goal")
        met = "" if ratio is None or goal is None else ("yes" if ratio >= goal else "NO")
        fmt = lambda v: "" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))  # noqa: E731
        lines.append(
            f"| {r['name']} | {fmt(r.get('value'))} | {r.get('unit', '')} | {fmt(r.get('baseline'))} "
            f"| {fmt(ratio)} | {fmt(goal)} | {met} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller inputs (smoke run)")
    ap.add_argument("--only", nargs="*", help="module names, e.g. bench_moe")
    args = ap.parse_args(argv)
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if args.only:
        names = [n for n in names if n in args.only]
    rows: list[dict] = []
    failed = 0
    for name in names:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(f"bench.{name}")
            for r in mod.run(quick=args.quick):
                r.setdefault("module", name)
                rows.append(r)
        except Exception:
            failed += 1
            traceback.print_exc()
            rows.append({"name": name, "module": name, "value": None, "unit": "", "note": "FAILED"})
        print(f"   {time.perf_counter() - t0:.1f}s", flush=True)
    out = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "results": rows,
    }
    (HERE / "results.json").write_text(json.dumps(out, indent=2))
    table = _table(rows)
    (HERE / "results.md").write_text(table + "\n")
    print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
