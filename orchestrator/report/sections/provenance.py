"""Provenance: what the scores mean and how they were made, the code version, and the job as it was run (secrets
redacted)."""
from __future__ import annotations

import json
from typing import Optional

from orchestrator.report.data import ReportData
from orchestrator.report.sections.common import caption
from orchestrator.report.svg import esc
from trainers.metrics.declared import METRIC_SUITE_INFO, scoring_plan

TITLE = "Provenance"
_FD = "Fréchet distance between Gaussians fitted to {space} features of generated and real samples (lower is better)."
_KD = ("Kernel distance: an unbiased squared MMD with a cubic polynomial kernel on the same {space} features, "
       "averaged over subsets (lower is better).")
METRIC_DEFINITIONS = {
    "fid": _FD.format(space="Inception (pool3, TTUR weights)") + " Comparable with published FIDs.",
    "kid": _KD.format(space="Inception"),
    "fd_own": _FD.format(space="the data set's own network") + " Compares runs on this data set, not with papers.",
    "kd_own": _KD.format(space="the data set's own network"),
    "reverse_kl": "KL divergence of the generated samples' histogram over the mixture's modes from the uniform one "
                  "(high-quality samples only; lower is better).",
    "modes": "Mixture modes with at least one high-quality sample (within 3σ of the mode's mean).",
    "hq": "Percentage of samples within 3σ of their nearest mode's mean.",
    "balanced_mode_hq": "HQ share times the effective share of modes covered, exp(−reverse KL) (higher is better).",
    "mode_hq": "HQ share times the share of modes covered (higher is better).",
    "spread_mode_hq": "balanced_mode_hq with HQ capped at a perfect sampler's 98.9 % and scaled by min(1, mode "
                      "spread): modes drawn narrower than the data's never raise it (higher is better).",
    "precision": "Share of generated samples inside the k-NN balls of real samples (Kynkäänniemi et al.).",
    "recall": "Share of real samples inside the k-NN balls of generated samples.",
    "coverage": "Share of real samples whose k-NN ball holds a generated sample (Naeem et al.).",
}
POINTS = "none: mixture scores are computed on the 2-D points directly (PacGAN's protocol)"


def _features(plan: dict) -> str:
    if "features" not in plan:
        return esc(POINTS)
    fit = (f"; fitted on {plan['fit_rows']:,} rows of a fixed seeded split, disjoint from the real samples scores "
           "compare with") if "fit_rows" in plan else ""
    weights = f"; weights {plan['weights_file']} from {plan['weights']}" if "weights_file" in plan else ""
    return (f"<b>{esc(plan['features'])}</b>: {esc(plan['description'])}{esc(fit)}{esc(weights)}. "
            f"Resize: {esc(plan['resize'])}. Each trial's MLflow run holds the weights digest (param "
            "<code>metrics.weights_sha256</code>)")


def render(data: ReportData) -> Optional[str]:
    kind = data.dataset.get("kind") or ("points" if data.metric in METRIC_SUITE_INFO.get("points").modes else "image")
    definition = METRIC_DEFINITIONS.get(data.metric, "as reported by the metric suite")
    metrics = data.resolved_spec.get("metrics") or {}
    rows_in_data = int(data.dataset.get("rows") or 2 * data.eval_samples)
    plan = scoring_plan(kind, metrics.get("features", "own"), metrics.get("weights"), data.eval_samples, rows_in_data)
    rows = [
        ("Search metric", f"<b>{esc(data.metric)}</b>: {esc(definition)}"),
        ("Feature space", _features(plan)),
        ("Samples per evaluation", f"{data.eval_samples:,} generated against {plan['n_real']:,} "
                                   f"{'held-out ' if 'fit_rows' in plan else ''}real samples (the same real set and "
                                   "sample count for every trial and step)"),
        ("Real-vs-real floor", "each score of two real sample sets of that size: the best a generator can be told "
                               "apart from the data at this sample count"),
        ("Code", f"ganforge {esc(data.ganforge_version or '?')}, git commit "
                 f"<code>{esc(data.git_commit or 'unknown')}</code>"),
        ("Results", f"<code>{esc(data.run_path)}</code>"),
        ("--set overrides", ", ".join(f"<code>{esc(o)}</code>" for o in data.overrides) or "none"),
    ]
    facts = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    spec = json.dumps(data.resolved_spec, indent=2, default=str)
    return (f'<table class="facts">{facts}</table><h3>Job YAML</h3>'
            + caption("As written (values of <code>${VAR}</code> references and credentials redacted).")
            + f'<pre class="yaml">{esc(data.job_yaml)}</pre>'
            + f"<details><summary>Resolved spec (every default filled in)</summary><pre>{esc(spec)}</pre></details>")
