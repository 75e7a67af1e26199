// The clip table, its filters and the what-if thresholds: state lives in the URL's query string.
"use strict";
const form = document.getElementById("filter-form");
const tbody = document.querySelector("#clips tbody");
let page = 0, size = 50, total = 0, seq = 0;

const parseNum = (s) => {
  s = String(s).trim();
  if (s === "inf" || s === "+inf") return Infinity;
  if (s === "-inf") return -Infinity;
  return s === "" ? NaN : Number(s);
};
const same = (a, b) => (typeof a === "number" || typeof b === "number")
  ? parseNum(a) === parseNum(b) : JSON.stringify(a) === JSON.stringify(b);

// The page's thresholds as overrides of the defaults (what /export/thresholds.yaml writes).
function overrides() {
  const out = {};
  for (const el of document.querySelectorAll("input.th")) {
    const s = el.dataset.stage, name = el.dataset.name, d = DEFAULTS[s][name];
    let v;
    if (el.dataset.kind === "bool") v = el.checked;
    else if (el.dataset.kind === "list") v = el.value.split(",").map((x) => x.trim()).filter(Boolean);
    else { v = el.value.trim(); if (v === "") continue; }
    const differs = el.dataset.kind === "num" ? parseNum(v) !== parseNum(d) : !same(v, d);
    if (differs) (out[s] = out[s] || {})[name] = el.dataset.kind === "num" ? (isFinite(parseNum(v)) ? parseNum(v) : v) : v;
  }
  return out;
}

function params(extra) {
  const p = new URLSearchParams();
  for (const [k, v] of new FormData(form)) if (v !== "") p.set(k, v);
  const th = overrides();
  if (Object.keys(th).length) p.set("th", JSON.stringify(th));
  for (const [k, v] of Object.entries(extra || {})) p.set(k, v);
  return p;
}

const fmt = (v, d = 2) => (v === null || v === undefined) ? "–" : (typeof v === "number" ? v.toFixed(d) : v);
const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));

async function loadClips() {
  const my = ++seq;
  const p = params({page, size});
  history.replaceState(null, "", "?" + p.toString());
  document.getElementById("export-clips").href = "/export/clips.csv?" + p.toString();
  const r = await fetch("/api/clips?" + p.toString());
  if (my !== seq) return;
  if (!r.ok) { document.getElementById("summary").textContent = await r.text(); document.body.dataset.clipsReady = "error"; return; }
  const data = await r.json();
  total = data.total;
  const th = p.get("th") ? "?th=" + encodeURIComponent(p.get("th")) : "";
  tbody.innerHTML = data.rows.map((c) => {
    const stages = STAGES.map((s) => `<td class="${c.eligible[s] ? "ok" : "no"}" data-stage="${s}">${c.eligible[s] ? "✓" : "✗"}</td>`).join("");
    const fails = STAGES.filter((s) => c.failing[s].length).map((s) => `${s}: ${c.failing[s].join(", ")}`).join("; ");
    const src = String(c.source_uri).split("/").pop();
    return `<tr data-clip="${esc(c.clip_id)}"><td><a class="open" href="/clip/${encodeURIComponent(c.clip_id)}${th}">${esc(c.clip_id.slice(0, 10))}</a></td>`
      + `<td title="${esc(c.source_uri)}">${esc(src)} @${fmt(c.start_s, 1)}</td><td>${fmt(c.duration_s)}</td><td>${esc(c.language || "–")}</td>`
      + `<td>${fmt(c.language_prob)}</td><td>${fmt(c.n_asr, 0)}</td><td>${fmt(c.agreement)}</td><td>${fmt(c.dnsmos_ovrl)}</td>`
      + `<td>${fmt(c.snr_db, 1)}</td><td>${fmt(c.speaker_consistency)}</td>${stages}<td class="fails" title="${esc(fails)}">${esc(fails)}</td>`
      + `<td class="preview" title="${esc(c.preview || "")}">${esc((c.preview || "").slice(0, 80))}</td></tr>`;
  }).join("");
  document.getElementById("summary").innerHTML = `<b id="n-selected">${data.total}</b> clips, ${data.hours.toFixed(3)} h selected`;
  const pages = Math.max(1, Math.ceil(total / size));
  document.getElementById("pageinfo").textContent = `page ${page + 1} / ${pages}`;
  document.body.dataset.clipsReady = String(my);
}

async function loadWhatif() {
  const p = params();
  const th = p.get("th");
  const q = th ? "?th=" + encodeURIComponent(th) : "";
  document.getElementById("export-yaml").href = "/export/thresholds.yaml" + q;
  const r = await fetch("/api/whatif" + q);
  const err = document.getElementById("th-error");
  if (!r.ok) { err.textContent = await r.text(); return; }
  err.textContent = "";
  const data = await r.json();
  let html = '<table id="counts"><tr><th>stage</th><th>language</th><th>clips</th><th>hours</th><th>was</th></tr>';
  for (const s of STAGES) {
    const st = data.stages[s];
    html += `<tr class="stage-total" data-stage="${s}"><td><b>${s}</b></td><td>all</td><td class="clips">${st.clips}</td><td>${st.hours.toFixed(3)}</td>`
      + `<td>${st.base_clips} / ${st.base_hours.toFixed(3)} h <span class="added">+${st.added}</span> <span class="removed">−${st.removed}</span></td></tr>`;
    for (const [lang, v] of Object.entries(st.languages)) {
      if (!v.clips && !v.base_clips) continue;  // a language this stage keeps nothing of, before or after
      html += `<tr data-stage="${s}" data-language="${esc(lang)}"><td></td><td>${esc(lang)}</td><td>${v.clips}</td><td>${v.hours.toFixed(3)}</td><td>${v.base_clips}</td></tr>`;
    }
  }
  document.getElementById("whatif-counts").innerHTML = html + "</table>";
  // the failing-gate menu lists the gates active under the page's thresholds
  const gate = document.getElementById("f-gate"), chosen = gate.value;
  for (const og of gate.querySelectorAll("optgroup")) {
    const s = og.dataset.stage;
    og.innerHTML = data.gates[s].map((g) => `<option value="${s}:${g}">${s}: ${g}</option>`).join("");
  }
  gate.value = [...gate.options].some((o) => o.value === chosen) ? chosen : "";
  document.body.dataset.whatifReady = JSON.stringify(data.overrides);
}

let timer = null;
const later = (fn) => { clearTimeout(timer); timer = setTimeout(fn, 250); };
form.addEventListener("input", () => later(() => { page = 0; loadClips(); }));
form.addEventListener("change", () => { page = 0; loadClips(); });
for (const el of document.querySelectorAll("input.th")) {
  el.addEventListener("change", () => { page = 0; loadWhatif().then(loadClips); });
}
document.getElementById("prev").onclick = () => { if (page > 0) { page--; loadClips(); } };
document.getElementById("next").onclick = () => { if ((page + 1) * size < total) { page++; loadClips(); } };
document.getElementById("reset-th").onclick = () => { location.search = ""; };

// Restore the state a link carries.
(function restore() {
  const q = new URLSearchParams(location.search);
  for (const [k, v] of q) {
    const el = form.elements[k];
    if (!el) continue;
    if (el.type === "checkbox") el.checked = v === "1"; else el.value = v;
  }
  page = Number(q.get("page") || 0);
  const th = q.get("th") ? JSON.parse(q.get("th")) : BASE_OVERRIDES;
  for (const el of document.querySelectorAll("input.th")) {
    const s = el.dataset.stage, name = el.dataset.name;
    const v = (th[s] && name in th[s]) ? th[s][name] : DEFAULTS[s][name];
    if (el.dataset.kind === "bool") el.checked = !!v;
    else if (el.dataset.kind === "list") el.value = (v || []).join(",");
    else el.value = String(v);
  }
  loadWhatif().then(() => {
    const g = q.get("gate");
    if (g) document.getElementById("f-gate").value = g;
    loadClips();
  });
})();
