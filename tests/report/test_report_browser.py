"""The report opens in a real browser: every plot decodes, the audio player loads the wav, it looks right."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from accord.report.browser import problems, rendered_elements

from .conftest import chromium

pytestmark = pytest.mark.integration


def _dom(html_path) -> list[tuple[str, dict]]:
    chromium("--version")  # skips when Chromium is absent
    return rendered_elements(html_path)


def test_plots_decode_and_audio_loads_in_chromium(built_report) -> None:
    elements = _dom(built_report.html)
    body = [a for t, a in elements if t == "body"]
    assert body and body[0].get("data-ready") == "1", "the page's load handler did not run"
    plots = {a["alt"]: a for t, a in elements if t == "img" and "plot" in (a.get("class") or "")}
    expected = {"hours in and kept per stage", "agreement histogram", "pairwise WER per system pair",
                "loss curves per stage"}  # fmt: skip
    assert expected <= set(plots), set(plots)
    for alt, a in plots.items():
        w, _, h = (a.get("data-decoded") or "0").partition("x")
        assert int(w or 0) > 100 and int(h or 0) > 100, f"{alt} did not decode: {a.get('data-decoded')}"
    audios = [a for t, a in elements if t == "audio"]
    assert len(audios) == 1 and "controls" in audios[0]
    assert audios[0]["src"].startswith("data:audio/wav;base64,")
    info = sf.info(str(built_report.run_dir / "synth.wav"))
    assert audios[0].get("data-duration") not in (None, "error"), "the browser could not load the audio"
    assert abs(float(audios[0]["data-duration"]) - info.duration) < 0.05


def test_screenshot_shows_the_report(built_report, tmp_path) -> None:
    from PIL import Image

    shot = tmp_path / "report.png"
    out = chromium("--window-size=1200,2400", f"--screenshot={shot}", built_report.html.as_uri())
    assert out.returncode == 0 and shot.exists(), out.stderr[-2000:]
    px = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert px.shape == (2400, 1200)
    # Not a blank or error page: a real share of dark (text, bars) and mid-grey pixels.
    assert (px < 100).mean() > 0.01 and px.std() > 20
    # The first plot sits in the upper part of the page: its area is not uniform.
    assert px[400:1000, 50:650].std() > 20


def test_problems_is_empty_for_a_good_report_and_names_what_is_missing(built_report, tmp_path) -> None:
    assert problems(built_report.html, min_plots=4) == []
    broken = tmp_path / "broken.html"
    html = built_report.html.read_text()
    broken.write_text(html.replace("data:audio/wav;base64,", "data:audio/wav;base64,AAAA"))
    assert any("did not load" in p for p in problems(broken))
    assert any("expected at least 9" in p for p in problems(built_report.html, min_plots=9))
