"""PBT: the population's lineage over time (who copied whom, with the hyperparameters after each mutation) and the
schedule of hyperparameters that reproduces the champion, as a YAML fragment."""
from __future__ import annotations

from typing import Any, Optional

import yaml

from orchestrator.report.data import ReportData
from orchestrator.report.sections.common import caption, param_label, value
from orchestrator.report.svg import BLUE, GRID_GREY, VERMILION, esc, fmt, legend
from orchestrator.search_kinds import scheduler_info

TITLE = "PBT lineage"


def _rounded(v: Any) -> Any:
    return float(f"{v:.4g}") if isinstance(v, float) else v


def _mutated(record: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    return {k: _rounded(record["new_config"].get(k)) for k in keys if k in record["new_config"]}


def champion_schedule(data: ReportData) -> list[dict[str, Any]]:
    """The hyperparameters the champion's weights were trained with, segment by segment: follow its exploits back
    (a recipient continues from its donor's checkpoint), then read them forwards. Steps are generator steps."""
    keys = sorted(data.space)
    trial, until = data.champion, None
    segments = []
    while trial is not None:
        exploits = [r for r in data.pbt_records
                    if r["recipient"] == trial and (until is None or r["iteration"] <= until)]
        if not exploits:
            root = data.trial(trial)
            segments.append({"from_step": 0, "trial": trial,
                             **{k: _rounded(root.params.get(k)) if root else None for k in keys}})
            break
        last = max(exploits, key=lambda r: r["iteration"])
        segments.append({"from_step": int(last["donor_iteration"]) * data.eval_every, "trial": trial,
                         **_mutated(last, keys)})
        trial, until = last["donor"], last["donor_iteration"]
    segments.reverse()
    return segments


def lineage_svg(data: ReportData) -> str:
    keys = sorted(data.space)
    ids = sorted({t.trial_id for t in data.trials} | {r["recipient"] for r in data.pbt_records}
                 | {r["donor"] for r in data.pbt_records})
    last = max([t.iterations for t in data.trials] + [r["iteration"] for r in data.pbt_records] + [1])
    left, right, top, row = 140, 920, 30, 56
    height = top + row * len(ids) + 50
    x = lambda it: left + (right - left) * it / last  # noqa: E731
    y = {t: top + row * (i + 0.5) for i, t in enumerate(ids)}
    parts = []
    for t in ids:
        rec = data.trial(t)
        end = rec.iterations if rec else last
        colour = VERMILION if t == data.champion else BLUE
        parts.append(f'<line x1="{x(0):.1f}" x2="{x(end):.1f}" y1="{y[t]:.1f}" y2="{y[t]:.1f}" stroke="{colour}" '
                     f'stroke-width="{4 if t == data.champion else 2.5}" stroke-opacity="0.8"/>')
        parts.append(f'<text x="{left - 10}" y="{y[t] + 4:.1f}" text-anchor="end" class="tick">'
                     f'{"★ " if t == data.champion else ""}{esc(t)}</text>')
    for it in range(0, last + 1, max(1, last // 10)):
        parts.append(f'<line x1="{x(it):.1f}" x2="{x(it):.1f}" y1="{top - 6}" y2="{height - 44}" stroke="{GRID_GREY}"/>'
                     f'<text x="{x(it):.1f}" y="{height - 28}" text-anchor="middle" class="tick">{it}</text>')
    for n, r in enumerate(_in_order(data), 1):
        x0, y0, x1, y1 = x(r["donor_iteration"]), y[r["donor"]], x(r["iteration"]), y[r["recipient"]]
        mid = (x0 + x1) / 2 + 12
        changes = ", ".join(f"{param_label(k)} {value(v)}" for k, v in _mutated(r, keys).items())
        tip = (f"iteration {r['iteration']}: {r['recipient']} copies {r['donor']} (its iteration "
               f"{r['donor_iteration']}) and explores: {changes}")
        parts.append(f'<path d="M{x0:.1f},{y0:.1f} C{mid:.1f},{y0:.1f} {mid:.1f},{y1:.1f} {x1:.1f},{y1:.1f}" '
                     f'fill="none" stroke="#333" stroke-width="1.4" marker-end="url(#arrow)"><title>{esc(tip)}</title>'
                     "</path>")
        parts.append(f'<circle cx="{x1:.1f}" cy="{y1:.1f}" r="4" fill="{VERMILION}"><title>{esc(tip)}</title></circle>')
        # The exploit's number, alternately above and below the line; the table lists its hyperparameters.
        parts.append(f'<text x="{x1 + 5:.1f}" y="{y1 + (-7 if n % 2 else 15):.1f}" class="note">{n}</text>')
    parts.append(f'<text x="{(left + right) / 2:.0f}" y="{height - 8}" text-anchor="middle" class="axis">'
                 "training iteration (evaluations)</text>")
    arrow = ('<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#333"/></marker></defs>')
    return (f'<svg class="chart" viewBox="0 0 960 {height}" width="960" height="{height}" role="img" '
            f'aria-label="PBT lineage">{arrow}{"".join(parts)}</svg>')


def _in_order(data: ReportData) -> list[dict[str, Any]]:
    """Exploits by time: their numbers in the drawing and the table."""
    return sorted(data.pbt_records, key=lambda r: (r["iteration"], str(r["recipient"])))


def _exploit_table(data: ReportData) -> str:
    keys = sorted(data.space)
    head = "".join(f'<th title="{esc(k)}">{esc(param_label(k))}</th>' for k in keys)
    rows = "".join(
        f"<tr><td class=num>{n}</td><td class=num>{r['iteration']}</td><td><code>{esc(r['recipient'])}</code></td>"
        f"<td><code>{esc(r['donor'])}</code> @ {r['donor_iteration']}</td>"
        + "".join(f"<td class=num>{value(r['new_config'].get(k))}</td>" for k in keys) + "</tr>"
        for n, r in enumerate(_in_order(data), 1))
    return ('<div class="scroll"><table class="sortable"><thead><tr><th>#</th><th>iteration</th><th>recipient</th>'
            f"<th>copies donor @ iteration</th>{head}</tr></thead><tbody>{rows}</tbody></table></div>")


def render(data: ReportData) -> Optional[str]:
    if not scheduler_info(data.search.get("scheduler", "")).exploit_log:
        return None
    if not data.pbt_records:
        return caption("PBT has not exploited yet: no trial has copied another so far.")
    out = caption("One row per population member, time to the right. Each arrow is an exploit: the recipient copies "
                  "the donor's checkpoint (from the donor's iteration where the arrow starts) and continues with "
                  "mutated hyperparameters: the number beside the dot is the exploit's row in the table below. "
                  "Hover an arrow or a dot for the details.")
    out += f"<figure>{lineage_svg(data)}</figure>" + legend([("line", VERMILION, "champion"),
                                                             ("line", BLUE, "other members"),
                                                             ("dot", VERMILION, "exploit + explore")])
    out += "<h3>Exploits</h3>" + _exploit_table(data)
    schedule = champion_schedule(data)
    fragment = yaml.safe_dump({"pbt_schedule": schedule}, sort_keys=False, default_flow_style=None, width=110)
    out += ("<h3>Schedule that reproduces the champion</h3>"
            + caption(f"The hyperparameters the champion's weights were trained with, from generator step "
                      f"<code>from_step</code> on (exploits happen at evaluations, every {data.eval_every:,} steps); "
                      "<code>trial</code> is the member that trained that segment.")
            + f"<pre class=\"yaml\">{esc(fragment)}</pre>")
    return out
