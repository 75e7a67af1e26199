"""Run every ``bench/bench_*.py`` and write ``bench/results.json`` and ``bench/results.md``
(``results-cuda.*`` with ``--device cuda``).

Contract for a benchmark module: ``def run(quick: bool, device: str = "cpu") -> list[dict]``
(``device``: "cpu" or "cuda"; a module with no rows for a device returns []), each dict a
result row with ``name`` (str), ``value`` (float), ``unit`` (str), and optionally
``baseline`` (float, the peer measured in the same run), ``ratio`` (value / baseline, or
the reverse where lower is better — say so in ``note``), ``goal`` (ratio target),
``target`` (an absolute goal for ``value``, higher is better: MFU, frames/s) and ``note``.
On the CPU ratios, not absolute numbers, are what we compare: this machine drifts 15–35%
between passes, so each benchmark alternates accord and its peer within one run.

``--device cuda`` runs the modules in ``CUDA_MODULES`` (issue #12's table, bench_gpu) unless
``--only`` names others; the CPU-only modules would spend the GPU's time on CPU work.
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
CUDA_MODULES = ("bench_gpu",)


def met(r: dict) -> str:
    ratio, goal, value, target = r.get("ratio"), r.get("goal"), r.get("value"), r.get("target")
    if ratio is not None and goal is not None:
        return "yes" if ratio >= goal else "NO"
    if value is not None and target is not None:
        return "yes" if value >= target else "NO"
    return ""


def _table(rows: list[dict]) -> str:
    lines = ["| benchmark | value | unit | baseline | ratio | goal | met |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio, goal = r.get("ratio"), r.get("goal") if r.get("goal") is not None else r.get("target")
        verdict = met(r)
        fmt = lambda v: "" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))  # noqa: E731
        lines.append(
            f"| {r['name']} | {fmt(r.get('value'))} | {r.get('unit', '')} | {fmt(r.get('baseline'))} "
            f"| {fmt(ratio)} | {fmt(goal)} | {verdict} |"
        )
    return "\n".join(lines)


def select_modules(names: list[str], device: str, only: list[str] | None) -> list[str]:
    """``--only`` if given, else every module on the CPU and ``CUDA_MODULES`` on CUDA."""
    if only:
        return [n for n in names if n in only]
    return [n for n in names if device == "cpu" or n in CUDA_MODULES]


def _device(device: str) -> dict:
    if device != "cuda":
        return {"device": "cpu"}
    import torch

    if not torch.cuda.is_available():
        return {"device": "cuda (unavailable)"}
    return {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller inputs (smoke run)")
    ap.add_argument("--only", nargs="*", help="module names, e.g. bench_moe")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the models run")
    args = ap.parse_args(argv)
    names = select_modules(sorted(p.stem for p in HERE.glob("bench_*.py")), args.device, args.only)
    rows: list[dict] = []
    failed = 0
    for name in names:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(f"bench.{name}")
            for r in mod.run(quick=args.quick, device=args.device):
                r.setdefault("module", name)
                rows.append(r)
                failed += str(r.get("note", "")).startswith("FAILED")  # a module's own failed section
        except Exception:
            failed += 1
            traceback.print_exc()
            rows.append({"name": name, "module": name, "value": None, "unit": "", "note": "FAILED"})
        print(f"   {time.perf_counter() - t0:.1f}s", flush=True)
    out = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            **_device(args.device),
        },
        "results": rows,
    }
    stem = "results" if args.device == "cpu" else f"results-{args.device}"
    (HERE / f"{stem}.json").write_text(json.dumps(out, indent=2))
    table = _table(rows)
    (HERE / f"{stem}.md").write_text(table + "\n")
    print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
