"""A person's session in a real headless Chromium (Debian's, driven by Playwright): open the
explorer that ``accord manifest explore`` serves, filter by a failing gate, open a clip and play
it, change a threshold and see the counts change, export the YAML and read it back with
``accord manifest stats``."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from accord.core.eligibility import DEFAULT_THRESHOLDS, failures, load_thresholds
from accord.core.manifest import read_manifest
from accord.report.browser import chromium_path

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(explore_out):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "accord.cli.main",
            "manifest",
            "explore",
            str(explore_out.path),
            "--port",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # A thread reads the lines (and keeps draining them): a selector on the pipe beside a buffered
    # readline missed the URL whenever it arrived in one read with the line before it.
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True)
    reader.start()
    url, seen, deadline = None, [], time.monotonic() + 120
    while url is None and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            if not reader.is_alive() and lines.empty():  # the explorer exited, its output all read
                break
            continue
        seen.append(line)
        m = re.search(r"explore: (http://127\.0\.0\.1:\d+/)", line)
        url = m.group(1) if m else None
    if url is None:
        proc.kill()
        pytest.fail("the explorer did not start: " + "".join(seen))
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    exe = chromium_path()
    if exe is None:
        pytest.skip("chromium is not installed (scripts/setup.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=exe, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"]
        )
        yield b
        b.close()


def test_filter_listen_whatif_export(server, browser, explore_out, tmp_path) -> None:
    rows = read_manifest(str(explore_out.path)).to_pylist()
    page = browser.new_page(viewport={"width": 1500, "height": 900}, accept_downloads=True)
    page.set_default_timeout(20_000)
    page.goto(server)
    page.wait_for_selector("body[data-clips-ready]")
    page.wait_for_selector("#counts")
    assert int(page.inner_text("#n-selected")) == len(rows)

    # 1. filter by a failing gate: exactly the clips that fail it, each row saying so
    failing = [r for r in rows if "min_snr_db" in failures(r, DEFAULT_THRESHOLDS["anneal1"])]
    assert 0 < len(failing) < len(rows)
    page.select_option("#f-gate", "anneal1:min_snr_db")
    page.wait_for_function(f"document.getElementById('n-selected').textContent === '{len(failing)}'")
    shown = page.eval_on_selector_all(
        "#clips tbody tr", "rs => rs.map(r => [r.dataset.clip, r.querySelector('.fails').textContent])"
    )
    assert shown and all("min_snr_db" in fails for _, fails in shown)
    assert {c for c, _ in shown} <= {r["clip_id"] for r in failing}

    # 2. open a clip and play it: the audio element loads the segment with the clip's duration
    clip_id = shown[0][0]
    row = next(r for r in rows if r["clip_id"] == clip_id)
    page.click(f"#clips tbody tr[data-clip='{clip_id}'] a.open")
    page.wait_for_selector("canvas[data-drawn]")
    page.wait_for_function("document.getElementById('player').readyState >= 1")
    duration = page.eval_on_selector("#player", "e => e.duration")
    assert abs(duration - row["duration_s"]) < 0.03, (duration, row["duration_s"])
    page.eval_on_selector("#player", "e => e.play()")
    page.wait_for_function("document.getElementById('player').currentTime > 0.2")
    # the signals table marks the gate the clip fails, beside the stage's threshold
    assert page.locator("tr[data-signal='snr_db'] span.gate.no[title='min_snr_db']").count() >= 1
    page.go_back()
    page.wait_for_selector("body[data-clips-ready]")

    # 3. what-if: relax anneal1's SNR gate; the counts follow, as read_manifest computes them
    before = int(page.inner_text("#counts tr.stage-total[data-stage='anneal1'] .clips"))
    page.fill("input.th[data-stage='anneal1'][data-name='min_snr_db']", "6")
    page.dispatch_event("input.th[data-stage='anneal1'][data-name='min_snr_db']", "change")
    th = load_thresholds({"anneal1": {"min_snr_db": 6}})
    want = sum(r["eligible_anneal1"] for r in read_manifest(str(explore_out.path), thresholds=th).to_pylist())
    assert want != before
    cell = "#counts tr.stage-total[data-stage='anneal1'] .clips"
    page.wait_for_function(f"document.querySelector(\"{cell}\").textContent === '{want}'")

    # 4. export the YAML and read it back with `accord manifest stats`
    with page.expect_download() as download:
        page.click("#export-yaml")
    path = tmp_path / "thresholds.yaml"
    download.value.save_as(path)
    assert load_thresholds(str(path)) == th
    out = subprocess.run(
        [sys.executable, "-m", "accord.cli.main", "manifest", "stats", str(explore_out.path),
         "--thresholds", str(path), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["by_stage_language"]["anneal1"]["*"]["clips"] == want
    page.close()
