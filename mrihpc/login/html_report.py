"""``mrihpc report RUN``: one self-contained HTML page of a run, to open from the shared
filesystem or through the tunnel, offline (no server, no script, no file beside it: the images
are inline PNG data). It holds the results table (per configuration over folds when the sweep
has them, then per point), the state of every point with its failure reason, the curves of
every point, each point's latest sample panel, the spec and what each point overrides, and the
provenance. The tables are ``results --csv``'s rows."""

from __future__ import annotations

import base64
import csv
import html
import io
import tempfile
from pathlib import Path

from mrihpc.paths import RunPaths, atomic_write_bytes, refuse_links

STYLE = """body{font:14px system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}
pre{background:#f7f7f7;padding:8px;overflow:auto;max-height:420px}
img{max-width:100%;border:1px solid #ddd}
.failed{background:#fde8e8}.wide{overflow-x:auto}
.point{display:inline-block;vertical-align:top;margin:0 16px 16px 0}"""


def _table(text: str, table_id: str, failed_column: str = "") -> str:
    """A CSV text as an HTML table; rows whose ``failed_column`` says failed are marked."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return "<p>(nothing)</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    flag = rows[0].index(failed_column) if failed_column in rows[0] else None
    body = "".join(
        f"<tr{' class=failed' if flag is not None and r[flag] in ('failed', 'lost') else ''}>"
        + "".join(f"<td>{html.escape(c)}</td>" for c in r)
        + "</tr>"
        for r in rows[1:]
    )
    return (
        f"<div class=wide><table id={table_id}><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
        "</table></div>"
    )


def _png(path: Path) -> str:
    return f"data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"


def _latest_panel(run: RunPaths, index: int) -> Path | None:
    """The point's newest sample image: samples/epoch-*.png, else a prediction panel."""
    root = run.point(index).root
    found = sorted(root.glob("samples/*.png")) or sorted(root.glob("predictions/*/*.png"))
    return found[-1] if found else None


def build(run: RunPaths, manifest: dict, metric: str, notes: list[str]) -> str:
    from mrihpc.login.results import provenance_report, results_report, status_report

    grouped = results_report(run, manifest, metric, as_csv=True, notes=notes)
    points = results_report(run, manifest, metric, as_csv=True, notes=notes, each=True)
    status = status_report(run, manifest, metric, notes)
    parts = [
        f"<h1>{html.escape(run.root.parent.name)} / {html.escape(run.root.name)}</h1>",
        f"<p>{len(manifest['points'])} points, task {html.escape(str(manifest.get('task', '?')))}, "
        f"ranked by best_{html.escape(metric)}</p>",
    ]
    if grouped != points:
        parts += [
            "<h2>Configurations (mean, std, n over folds)</h2>",
            _table(grouped, "configurations"),
        ]
    parts += [
        "<h2>Points</h2>",
        _table(points, "points", "state"),
        "<h2>State</h2>",
        f"<pre id=status>{html.escape(status)}</pre>",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        from mrihpc.login.plots import plot_curves

        curves = Path(tmp) / "curves.png"
        plot_curves(run, manifest, metric, curves)
        parts += [
            "<h2>Curves</h2>",
            f"<img id=curves alt='curves of every point' src='{_png(curves)}'>",
        ]
    panels = []
    for p in manifest["points"]:
        panel = _latest_panel(run, p["index"])
        overrides = (
            ", ".join(f"{k}={v}" for k, v in p.get("overrides", {}).items())
            or "(the spec as written)"
        )
        image = (
            f"<img class=panel alt='{html.escape(panel.name)}' src='{_png(panel)}'>"
            if panel
            else "<p>(no image)</p>"
        )
        panels.append(
            f"<div class=point><h3>{p['index']}: {html.escape(p['name'])}</h3>"
            f"<p>{html.escape(overrides)}</p>{image}</div>"
        )
    parts += [
        "<h2>Points: overrides and latest samples</h2>",
        "".join(panels),
        "<h2>Spec</h2>",
        f"<pre id=spec>{html.escape(run.spec.read_text(errors='replace'))}</pre>",
        "<h2>Provenance</h2>",
        f"<pre id=provenance>{html.escape(provenance_report(run, manifest, notes))}</pre>",
    ]
    if notes:
        parts += [
            "<h2>Damaged files</h2>",
            "<pre>" + html.escape("\n".join(dict.fromkeys(notes))) + "</pre>",
        ]
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{html.escape(run.root.name)}</title>"
        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )


def write(run: RunPaths, manifest: dict, metric: str, out: Path, notes: list[str]) -> Path:
    """The page at ``out`` (default ``<run>/report.html``), written atomically, never through a
    link."""
    refuse_links(out)
    atomic_write_bytes(out, build(run, manifest, metric, notes).encode())
    return out
