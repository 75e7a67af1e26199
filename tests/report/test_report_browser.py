"""The report opens in a real browser: every plot decodes, the audio player loads the wav, it looks right."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pytest
import soundfile as sf

from .conftest import chromium

pytestmark = pytest.mark.integration


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.found.append((tag, dict(attrs)))


def _dom(html_path) -> list[tuple[str, dict]]:
    out = chromium("--dump-dom", html_path.as_uri())
    assert out.returncode == 0, out.stderr[-2000:]
    parser = _Elements()
    parser.feed(out.stdout)
    return parser.found


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
