"""The explorer's web app: a small Starlette (ASGI) app, server-rendered Jinja pages and a
little vanilla JavaScript (``static/explore.js``) that asks JSON endpoints for one page of rows.

Routes (all GET; nothing writes anywhere):

- ``/``: the clip table, its filters and the what-if thresholds;
  ``/api/clips``, ``/api/whatif``: a page of clips, counts per stage and language.
- ``/clip/<id>``: one clip (``/audio/<id>.wav`` its segment, Range-capable; ``/api/wave/<id>``).
- ``/errors``: the error rows, paged.
- ``/export/thresholds.yaml``, ``/export/clips.csv``: the page's thresholds, its selection.

The page's thresholds travel in the ``th`` query parameter as JSON overrides of the defaults
(:func:`accord.core.eligibility.threshold_overrides`'s shape), so a link says what it shows.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from accord.core.clip import json_safe
from accord.core.eligibility import DEFAULT_THRESHOLDS, StageThresholds, threshold_overrides
from accord.core.errors import UserError
from accord.core.stages import STAGES
from accord.core.storage import redact_uri
from accord.explore import query
from accord.explore.audio import SegmentCache, byte_range, waveform
from accord.explore.catalog import Catalog
from accord.explore.clipview import clip_row, signals, transcripts
from accord.explore.gates import all_gates

HERE = Path(__file__).parent
ERRORS_PAGE = 100


def number(v: Any, spec: str = ".2f") -> str:
    """A signal for a page: formatted, or a dash when missing (None, NaN, undefined)."""
    return format(v, spec) if isinstance(v, int | float) and v == v else "–"


def thresholds_json(th: Mapping[str, StageThresholds]) -> dict[str, dict[str, Any]]:
    """Every threshold of every stage, JSON-ready (infinite limits as "inf" / "-inf")."""
    out: dict[str, dict[str, Any]] = {}
    for s in STAGES:
        d = th[s].to_dict()
        out[s] = {
            k: ("inf" if v > 0 else "-inf") if isinstance(v, float) and math.isinf(v) else v
            for k, v in d.items()
        }
    return out


def thresholds_yaml(th: Mapping[str, StageThresholds]) -> str:
    """The thresholds file ``accord manifest stats --thresholds`` and ``accord tokenize
    --eligibility`` read: the overrides of the defaults under ``eligibility:``."""
    head = "# accord thresholds (accord manifest explore): overrides of the defaults per stage\n"
    return head + yaml.safe_dump({"eligibility": threshold_overrides(th)}, sort_keys=False)


def create_app(cat: Catalog, base: Mapping[str, StageThresholds]) -> Starlette:
    """The app over ``cat``; ``base`` are the thresholds it starts from (what-if compares to them)."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["num"] = number
    audio = SegmentCache()
    base = dict(base)
    base_overrides = json.dumps(threshold_overrides(base))

    def current(request: Request) -> dict[str, StageThresholds]:
        return query.thresholds_from(request.query_params.get("th"), base)

    def home(request: Request) -> Response:
        numeric = [f.name for f in fields(StageThresholds) if f.name != "languages"]
        return templates.TemplateResponse(
            request,
            "index.html",
            {
                "out": redact_uri(cat.uri),
                "n_clips": cat.n_clips,
                "n_errors": cat.n_errors,
                "stages": STAGES,
                "facets": query.facets(cat),
                "numeric": query.NUMERIC,
                "columns": query.TABLE_COLUMNS,
                "threshold_names": [*numeric, "languages"],
                "base_th": thresholds_json(base),
                "defaults": json.dumps(thresholds_json(DEFAULT_THRESHOLDS)),
                "base_overrides": base_overrides,
                "gates": all_gates(base),
            },
        )

    def api_clips(request: Request) -> Response:
        view = query.View.from_params(request.query_params)
        return JSONResponse(json_safe(query.page(cat, view, current(request), base)))

    def api_whatif(request: Request) -> Response:
        th = current(request)
        return JSONResponse(
            json_safe(
                {
                    "stages": query.whatif(cat, th, base),
                    "gates": all_gates(th),
                    "overrides": threshold_overrides(th),
                }
            )
        )

    def clip_page(request: Request) -> Response:
        row = clip_row(cat, request.path_params["clip_id"])
        if row is None:
            return PlainTextResponse("no such clip", status_code=404)
        th = current(request)
        return templates.TemplateResponse(
            request,
            "clip.html",
            {
                "row": json_safe(row),
                "stages": STAGES,
                "transcripts": transcripts(row),
                "signals": signals(row, th),
                "th_param": request.query_params.get("th") or "",
            },
        )

    def clip_audio(request: Request) -> Response:
        row = clip_row(cat, request.path_params["clip_id"])
        if row is None:
            return PlainTextResponse("no such clip", status_code=404)
        data = audio.wav(row["source_uri"], row["start_s"], row["end_s"])
        headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-store"}
        span = byte_range(request.headers.get("range"), len(data))
        if span is None:
            return Response(data, media_type="audio/wav", headers=headers)
        first, last = span
        if first >= len(data) or first > last:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{len(data)}"})
        headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
        return Response(data[first : last + 1], status_code=206, media_type="audio/wav", headers=headers)

    def clip_wave(request: Request) -> Response:
        row = clip_row(cat, request.path_params["clip_id"])
        if row is None:
            return PlainTextResponse("no such clip", status_code=404)
        w = waveform(row["source_uri"], row["start_s"], row["end_s"], row["source_duration_s"] or math.nan)
        keys = ("start_s", "end_s", "leading_silence_s", "trailing_silence_s", "speaker_change_s")
        return JSONResponse(json_safe({**w, **{k: row[k] for k in keys}}))

    def errors_page(request: Request) -> Response:
        q = request.query_params
        conds, params = [], []
        for col in ("step", "error_type"):
            if q.get(col):
                conds.append(f"{col} = ?")
                params.append(q[col])
        if q.get("text"):
            conds.append("(contains(lower(reason), ?) OR contains(lower(input_uri), ?))")
            params += [q["text"].lower()] * 2
        where = " AND ".join(conds) or "true"
        page_n = max(0, int(q.get("page") or 0))
        rows = cat.rows(
            f"SELECT * FROM errors WHERE {where} ORDER BY input_uri, step, clip_id "
            f"LIMIT {ERRORS_PAGE} OFFSET {page_n * ERRORS_PAGE}",
            params,
        )
        total = cat.scalar(f"SELECT count(*) FROM errors WHERE {where}", params)
        by = cat.rows("SELECT step, error_type, count(*) AS n FROM errors GROUP BY 1, 2 ORDER BY 3 DESC")
        return templates.TemplateResponse(
            request,
            "errors.html",
            {"rows": rows, "total": total, "by": by, "page": page_n, "size": ERRORS_PAGE, "q": dict(q)},
        )

    def export_yaml(request: Request) -> Response:
        return PlainTextResponse(
            thresholds_yaml(current(request)),
            media_type="application/yaml",
            headers={"Content-Disposition": 'attachment; filename="thresholds.yaml"'},
        )

    def export_clips(request: Request) -> Response:
        view = query.View.from_params(request.query_params)
        th = current(request)

        def lines() -> Iterator[str]:
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["clip_id", "source_uri", "start_s", "end_s", "duration_s", "language"])
            for r in query.selection_ids(cat, view, th, base):
                w.writerow(
                    [r["clip_id"], r["source_uri"], r["start_s"], r["end_s"], r["duration_s"], r["language"]]
                )
                if buf.tell() > 1 << 16:
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
            yield buf.getvalue()

        return StreamingResponse(
            lines(),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="clips.csv"'},
        )

    async def user_error(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(str(exc), status_code=400)

    routes = [
        Route("/", home),
        Route("/api/clips", api_clips),
        Route("/api/whatif", api_whatif),
        Route("/clip/{clip_id}", clip_page),
        Route("/audio/{clip_id}.wav", clip_audio),
        Route("/api/wave/{clip_id}", clip_wave),
        Route("/errors", errors_page),
        Route("/export/thresholds.yaml", export_yaml),
        Route("/export/clips.csv", export_clips),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={UserError: user_error, ValueError: user_error})
