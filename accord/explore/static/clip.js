// The clip page: its waveform with the VAD boundaries, and a playhead that follows the audio.
"use strict";
const canvas = document.getElementById("wave");
const player = document.getElementById("player");
let wave = null;

function draw() {
  if (!wave) return;
  const g = canvas.getContext("2d"), W = canvas.width, H = canvas.height, n = wave.min.length;
  const x = (t) => ((t - wave.t0) / (wave.t1 - wave.t0)) * W;
  g.clearRect(0, 0, W, H);
  g.fillStyle = "#eee";
  g.fillRect(0, 0, x(wave.start_s), H);
  g.fillRect(x(wave.end_s), 0, W - x(wave.end_s), H);
  g.fillStyle = "#335";
  for (let i = 0; i < n; i++) {
    const px = (i / n) * W, y0 = (1 - wave.max[i]) * H / 2, y1 = (1 - wave.min[i]) * H / 2;
    g.fillRect(px, y0, Math.max(1, W / n), Math.max(1, y1 - y0));
  }
  const line = (t, color, dash) => {
    if (t === null || t === undefined || !isFinite(t)) return;
    g.strokeStyle = color; g.setLineDash(dash || []); g.beginPath(); g.moveTo(x(t), 0); g.lineTo(x(t), H); g.stroke();
  };
  line(wave.start_s, "#06c"); line(wave.end_s, "#06c");
  if (wave.leading_silence_s !== null) line(wave.start_s + wave.leading_silence_s, "#06c", [4, 3]);
  if (wave.trailing_silence_s !== null) line(wave.end_s - wave.trailing_silence_s, "#06c", [4, 3]);
  if (wave.speaker_change_s !== null) line(wave.start_s + wave.speaker_change_s, "#c00");
  line(wave.start_s + player.currentTime, "#e80");
  g.setLineDash([]);
}

fetch("/api/wave/" + encodeURIComponent(canvas.dataset.clip)).then((r) => r.json()).then((w) => {
  wave = w; draw(); canvas.dataset.drawn = String(w.min.length);
});
player.addEventListener("timeupdate", draw);
player.addEventListener("loadedmetadata", () => { player.dataset.duration = String(player.duration); });
canvas.addEventListener("click", (e) => {
  if (!wave) return;
  const t = wave.t0 + (e.offsetX / canvas.width) * (wave.t1 - wave.t0) - wave.start_s;
  if (t >= 0 && t <= wave.end_s - wave.start_s) { player.currentTime = t; player.play(); }
});
