"""Stability diagnostics per trial (discriminator accuracy, gradient norms, spectral norm, mode collapse) and why each
trial that did not finish ended."""
from __future__ import annotations

import math
from typing import Optional

from orchestrator.report.data import ReportData, TrialRecord
from orchestrator.report.sections.common import STATUS_WORDS, caption
from orchestrator.report.svg import esc, fmt

TITLE = "Stability"
# (column, metric, how it is summarised over evaluations, what it tells)
COLUMNS = (
    ("D acc. real", "d_real_acc", "last", "share of real samples D calls real (near 1 with fakes near 0: D wins)"),
    ("D acc. fake", "d_fake_acc", "last", "share of generated samples D calls fake"),
    ("‖∇G‖ max", "grad_norm_g", "max", "largest mean gradient norm of G over evaluations"),
    ("‖∇D‖ max", "grad_norm_d", "max", "largest mean gradient norm of D over evaluations"),
    ("σ_max(D)", "sn_max_d", "last", "largest spectral norm of D's layers (growing: a divergence precursor)"),
    ("diversity", "diversity_ratio", "last", "mean pairwise distance of samples / of real data"),
)


def _summary(t: TrialRecord, metric: str, how: str) -> Optional[float]:
    values = [r[metric] for r in t.history if metric in r and math.isfinite(r[metric]) and r.get("diverged", 0) < 1]
    if not values:
        return None
    return max(values) if how == "max" else values[-1]


def _collapse(t: TrialRecord) -> str:
    flags = [(r.get("step", 0), r["collapsed"]) for r in t.history if "collapsed" in r]
    if not flags:
        return "–"
    collapsed = [s for s, f in flags if f >= 1]
    if not collapsed:
        return "no"
    return (f'<span class="flag">yes</span> at {len(collapsed)} of {len(flags)} evaluations '
            f"(first step {int(collapsed[0]):,})")


def render(data: ReportData) -> Optional[str]:
    if not data.trials:
        return None
    header = "".join(f'<th title="{esc(tip)}">{esc(name)}</th>' for name, _, _, tip in COLUMNS)
    rows = []
    for t in data.trials:
        values = [_summary(t, m, how) for _, m, how, _ in COLUMNS]
        cells = "".join(f'<td class="num" data-v="{"" if v is None else v}">{"–" if v is None else fmt(v)}</td>'
                        for v in values)
        why = "" if t.status == "done" else esc(t.reason)
        rows.append(f'<tr><td data-v="{esc(t.trial_id)}"><code>{esc(t.trial_id)}</code></td>'
                    f'<td data-v="{t.status}"><span class="status {t.status}">{STATUS_WORDS[t.status]}</span></td>'
                    f"{cells}<td>{_collapse(t)}</td><td class=\"why\">{why}</td></tr>")
    note = ("Diagnostics the training loop samples every few steps, summarised per trial (hover a header for its "
            "meaning). Mode collapse is flagged when the covered share of modes/classes falls below "
            "train.collapse_coverage or sample diversity below train.collapse_diversity of the real data's.")
    return (caption(note) + '<div class="scroll"><table class="sortable stability"><thead><tr><th>trial</th>'
            f"<th>status</th>{header}<th>mode collapse</th><th>why it ended</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")
