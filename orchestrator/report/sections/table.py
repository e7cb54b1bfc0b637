"""The trial table: one row per trial, sortable by any column (click a header), the scores of the evaluation that
ranks each trial beside their real-vs-real floors, and every searched hyperparameter."""
from __future__ import annotations

import math

from orchestrator.report.data import ReportData
from orchestrator.report.sections.common import STATUS_WORDS, caption, param_label, value
from orchestrator.report.svg import esc, fmt

TITLE = "Trials"


def score_columns(data: ReportData) -> list[str]:
    """The search metric first, then every other score that has a real-vs-real floor."""
    others = sorted(k.removesuffix("_floor") for k in data.floors if k.removesuffix("_floor") != data.metric)
    return [data.metric] + others


def _cell(v) -> str:
    sort = v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else ""
    shown = value(v)
    return f'<td data-v="{esc(sort if sort != "" else shown)}"{" class=num" if sort != "" else ""}>{shown}</td>'


def render(data: ReportData) -> str:
    if not data.trials:
        return caption("No trial has reported yet.")
    scores = score_columns(data)
    params = sorted(data.space) or sorted({k for t in data.trials for k in t.params})
    head = ["rank", "trial", "status", "evaluations", "step"]
    header = "".join(f"<th>{h}</th>" for h in head)
    for s in scores:
        floor = data.floors.get(f"{s}_floor")
        header += (f'<th title="{esc(s)}">{esc(s)}' + (f'<br><small>floor {fmt(floor)}</small>' if floor is not None
                                                      else "") + "</th>")
    header += "".join(f'<th class="param" title="{esc(p)}">{esc(param_label(p))}</th>' for p in params)
    rows = []
    for rank, t in enumerate(data.trials, 1):
        champion = ' class="champion"' if t.trial_id == data.champion else ""
        status = (f'<td data-v="{t.status}"><span class="status {t.status}" title="{esc(t.reason)}">'
                  f'{STATUS_WORDS[t.status]}</span></td>')
        cells = [_cell(rank), f'<td data-v="{esc(t.trial_id)}"><code>{esc(t.trial_id)}</code></td>', status,
                 _cell(t.iterations), _cell(t.step)]
        cells += [_cell(t.value if s == data.metric else t.scores.get(s)) for s in scores]
        cells += [_cell(t.params.get(p)) for p in params]
        rows.append(f"<tr{champion}>{''.join(cells)}</tr>")
    best = "lowest" if data.mode == "min" else "highest"
    return (caption(f"Ranked as the run ranks them ({esc(data.metric)}, {best} first; trials without a score last). "
                    "Scores are those of the evaluation that stands for each trial "
                    f"(search.score: {esc(data.search.get('score', 'best'))}). Click a header to sort; hover a "
                    "status for why the trial ended. The champion's row is highlighted.")
            + f'<div class="scroll"><table class="sortable trials"><thead><tr>{header}</tr></thead>'
              f'<tbody>{"".join(rows)}</tbody></table></div>')
