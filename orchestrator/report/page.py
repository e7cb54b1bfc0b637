"""Assemble the sections into one HTML page: inline CSS and a few lines of inline JS (table sorting), images as
data: URIs, and a Content-Security-Policy that forbids every network fetch, so the page opens anywhere, offline."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Optional

from orchestrator.report.data import ReportData
from orchestrator.report.sections import (budget, curves, params, pbt, provenance, samples, stability, summary,
                                          table)
from orchestrator.report.svg import esc

log = logging.getLogger(__name__)
MAX_BYTES = 5 * 1024 * 1024  # the documented cap: sample grids, then curves, are thinned until the page fits
# (top trials with grids, grids per trial, points per curve) tried in order until the page fits under MAX_BYTES
BUDGETS = ((samples.MAX_TRIALS, 8, curves.MAX_POINTS), (samples.MAX_TRIALS, 4, curves.MAX_POINTS),
           (2, 4, curves.MAX_POINTS), (1, 2, curves.MAX_POINTS), (0, 0, curves.MAX_POINTS), (0, 0, 50), (0, 0, 12))
_THINNED = ("samples", "curves")  # the sections a budget changes; the others render once


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    render: Callable[[ReportData], Optional[str]]


def sections(top_trials: int, steps_per_trial: int, curve_points: int) -> tuple[Section, ...]:
    return (
        Section("summary", summary.TITLE, summary.render),
        Section("trials", table.TITLE, table.render),
        Section("curves", curves.TITLE, lambda d: curves.render(d, curve_points)),
        Section("hyperparameters", params.TITLE, params.render),
        Section("budget", budget.TITLE, budget.render),
        Section("samples", samples.TITLE, lambda d: samples.render(d, top_trials, steps_per_trial)),
        Section("pbt", pbt.TITLE, pbt.render),
        Section("stability", stability.TITLE, stability.render),
        Section("provenance", provenance.TITLE, provenance.render),
    )


CSS = """
:root { --text: #1a1a1a; --muted: #5a5a5a; --line: #d9d9d9; --accent: #0072B2; --hi: #fff4e0; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--text); background: #fff; font: 15px/1.5 -apple-system, "Segoe UI", Roboto,
       "Helvetica Neue", Arial, sans-serif; }
header { padding: 18px 32px 10px; border-bottom: 1px solid var(--line); }
header h1 { margin: 0; font-size: 24px; font-weight: 650; }
header .sub { color: var(--muted); font-size: 14px; }
nav { position: sticky; top: 0; background: #fafafa; border-bottom: 1px solid var(--line); padding: 6px 32px;
      z-index: 2; font-size: 14px; }
nav a { color: var(--accent); text-decoration: none; margin-right: 16px; }
nav a:hover { text-decoration: underline; }
main { padding: 4px 32px 40px; max-width: 1500px; }
section { padding-top: 10px; border-bottom: 1px solid #eee; padding-bottom: 18px; }
h2 { font-size: 20px; margin: 14px 0 6px; }
h3 { font-size: 16px; margin: 16px 0 4px; }
.caption { color: var(--muted); margin: 4px 0 10px; max-width: 980px; font-size: 14px; }
code { font: 13px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background: #f6f6f6; border: 1px solid #e6e6e6; padding: 10px 12px; overflow: auto; max-height: 420px;
      font: 13px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
table { border-collapse: collapse; font-size: 14px; }
th, td { padding: 4px 9px; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
table.trials td { white-space: nowrap; }
th { font-weight: 600; background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.facts th { width: 190px; background: none; color: var(--muted); font-weight: 500; }
table.sortable th { cursor: pointer; user-select: none; white-space: nowrap; position: sticky; top: 0; }
table.sortable th small { font-weight: 400; color: var(--muted); }
table.sortable th.asc::after { content: " ▲"; font-size: 10px; }
table.sortable th.desc::after { content: " ▼"; font-size: 10px; }
tr.champion td { background: var(--hi); font-weight: 600; }
.scroll { overflow: auto; max-height: 560px; border: 1px solid #eee; width: fit-content; max-width: 100%; }
.status { padding: 1px 7px; border-radius: 9px; font-size: 13px; white-space: nowrap; border: 1px solid; }
.status.done { color: #005a8c; border-color: #0072B2; }
.status.stopped { color: #7a5200; border-color: #E69F00; }
.status.diverged, .status.error { color: #8f2f6e; border-color: #CC79A7; }
.status.running { color: #006b4f; border-color: #009E73; }
.flag { color: #a33f00; font-weight: 600; }
.muted { color: var(--muted); }
svg.chart { max-width: 100%; height: auto; display: block; }
svg text { fill: var(--text); font-family: inherit; }
svg .tick { font-size: 12px; fill: #333; }
svg .tick.pc { font-size: 11px; }
svg .axis { font-size: 13px; font-weight: 600; }
svg .note { font-size: 11px; fill: #333; }
figure { margin: 0 0 8px; }
.legend { display: flex; flex-wrap: wrap; gap: 18px; font-size: 13px; color: var(--muted); margin: 2px 0 8px; }
.legend span { display: inline-flex; align-items: center; gap: 6px; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fill, minmax(400px, 1fr)); gap: 8px 20px; }
figure.small figcaption { font-weight: 600; font-size: 14px; }
.grid-row { display: flex; gap: 12px; align-items: flex-start; margin: 10px 0; }
.grid-label { width: 120px; flex: none; font-size: 13px; }
.grid-steps { display: flex; flex-wrap: wrap; gap: 8px; }
.grid-img img { width: 132px; height: 132px; image-rendering: pixelated; border: 1px solid #ddd; display: block; }
.grid-img figcaption { font-size: 12px; color: var(--muted); text-align: center; }
table.importance .bar { height: 12px; background: #0072B2; }
td.why { max-width: 520px; font-size: 13px; }
details summary { cursor: pointer; color: var(--accent); margin: 8px 0; }
"""

# Sort a table by the clicked column: numbers numerically (data-v), everything else as text. The load time goes on
# <html data-loaded-ms>, where bench/report_open.py reads it.
JS = """
window.addEventListener('load', function () {
  document.documentElement.setAttribute('data-loaded-ms', Math.round(performance.now()));
});
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('thead th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = !th.classList.contains('asc');
      table.querySelectorAll('thead th').forEach(function (h) { h.classList.remove('asc', 'desc'); });
      th.classList.add(asc ? 'asc' : 'desc');
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute('data-v') || '', y = b.cells[col].getAttribute('data-v') || '';
        var nx = parseFloat(x), ny = parseFloat(y), cmp;
        if (x === '' || y === '') { cmp = (x === '') - (y === ''); return cmp; }
        cmp = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return asc ? cmp : -cmp;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _page(data: ReportData, parts: list[tuple[Section, str]]) -> str:
    built = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(data.built_at or time.time()))
    state = "search running — this page is refreshed while it runs" if data.running else "search finished"
    nav = "".join(f'<a href="#{s.anchor}">{esc(s.title)}</a>' for s, _ in parts)
    body = "".join(f'<section id="{s.anchor}"><h2>{esc(s.title)}</h2>{html}</section>' for s, html in parts)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>ganforge report: {esc(data.name)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>Search report: {esc(data.name)}</h1>"
            f'<div class="sub">{state} · built {built} · ganforge {esc(data.ganforge_version)}</div></header>'
            f"<nav>{nav}</nav><main>{body}</main><script>{JS}</script></body></html>")


def render_page(data: ReportData, max_bytes: int = MAX_BYTES) -> str:
    """The report as one HTML string under `max_bytes`: sample grids are thinned until it fits (fewer steps, then
    fewer trials), then the points per learning curve. Other sections render once."""
    rendered = {s.anchor: s.render(data) for s in sections(0, 0, 0) if s.anchor not in _THINNED}
    page = ""
    for budget in BUDGETS:
        parts = [(s, html) for s in sections(*budget)
                 if (html := rendered[s.anchor] if s.anchor in rendered else s.render(data)) is not None]
        page = _page(data, parts)
        if len(page.encode()) <= max_bytes:
            return page
    log.warning("the report is %.1f MiB, over its %.1f MiB cap even with no sample grids and %d points per curve "
                "(a search of thousands of trials): its table and other sections are never cut",
                len(page.encode()) / 2**20, max_bytes / 2**20, BUDGETS[-1][2])
    return page
