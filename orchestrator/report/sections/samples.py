"""Sample grids over time: for the top trials, what the generator made of the same latents at each evaluation."""
from __future__ import annotations

import base64
from typing import Optional

from orchestrator.report.data import ReportData
from orchestrator.report.grids import FIXED_Z_SEED
from orchestrator.report.sections.common import caption
from orchestrator.report.svg import esc, fmt

TITLE = "Samples over time"


def pick_steps(grids: list[tuple[int, bytes]], limit: int) -> list[tuple[int, bytes]]:
    """At most `limit` grids spread evenly over the run, always the first and the last."""
    if len(grids) <= limit:
        return grids
    if limit < 2:
        return grids[-1:]
    picks = sorted({round(i * (len(grids) - 1) / (limit - 1)) for i in range(limit)})
    return [grids[i] for i in picks]


# The most trials whose grids one page shows (page.BUDGETS start here): the report reads no other trial's grids.
MAX_TRIALS = 4


def render(data: ReportData, top_trials: int = MAX_TRIALS, steps_per_trial: int = 8) -> Optional[str]:
    shown = [t for t in data.trials if t.grids][:top_trials]
    if not shown:
        return caption("No sample grids were stored for this run (they are recorded at each evaluation by ganforge "
                       "runs that write a report).")
    rows = []
    for t in shown:
        cells = "".join(
            f'<figure class="grid-img"><img alt="trial {esc(t.trial_id)} step {step}" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode()}"><figcaption>step {step:,}</figcaption>'
            "</figure>" for step, png in pick_steps(t.grids, steps_per_trial))
        label = "champion" if t.trial_id == data.champion else t.status
        rows.append(f'<div class="grid-row"><div class="grid-label"><code>{esc(t.trial_id)}</code><br>{esc(label)}'
                    f'<br>{esc(data.metric)} {fmt(t.value) if t.value is not None else "–"}</div>'
                    f'<div class="grid-steps">{cells}</div></div>')
    return caption(f"The {len(shown)} best-ranked trials with stored grids, one row each, left to right over "
                   f"evaluations. Every picture uses the same latent vectors z (seed {FIXED_Z_SEED}) for every trial "
                   "and step, drawn by the generator the evaluation scored (raw or EMA), so differences are the "
                   "generator's alone.") + "".join(rows)
