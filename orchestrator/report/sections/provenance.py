"""Provenance: what the scores mean and how they were made, the code version, and the job as it was run (secrets
redacted)."""
from __future__ import annotations

import json
from typing import Optional

from orchestrator.report.data import ReportData
from orchestrator.report.sections.common import caption
from orchestrator.report.svg import esc

TITLE = "Provenance"
METRIC_DEFINITIONS = {
    "fid": "Fréchet distance between Gaussians fitted to feature vectors of generated and real samples (lower is "
           "better).",
    "kid": "Kernel Inception-style distance: an unbiased squared MMD with a cubic polynomial kernel on the same "
           "features, averaged over subsets (lower is better).",
    "reverse_kl": "KL divergence of the generated samples' histogram over the mixture's modes from the uniform one "
                  "(high-quality samples only; lower is better).",
    "modes": "Mixture modes with at least one high-quality sample (within 3σ of the mode's mean).",
    "hq": "Percentage of samples within 3σ of their nearest mode's mean.",
    "balanced_mode_hq": "HQ share times the effective share of modes covered, exp(−reverse KL) (higher is better).",
    "mode_hq": "HQ share times the share of modes covered (higher is better).",
    "precision": "Share of generated samples inside the k-NN balls of real samples (Kynkäänniemi et al.).",
    "recall": "Share of real samples inside the k-NN balls of generated samples.",
    "coverage": "Share of real samples whose k-NN ball holds a generated sample (Naeem et al.).",
}
FEATURES = {
    "image": "a small network trained on this data set itself (a CNN classifier's penultimate layer for a labelled "
             "set, an autoencoder's code otherwise; trainers/metrics/feature_net.py), the offline stand-in for "
             "Inception: scores compare within this data set, not with published Inception FIDs",
    "points": "none: mixture scores are computed on the 2-D points directly (PacGAN's protocol)",
}


def render(data: ReportData) -> Optional[str]:
    kind = data.dataset.get("kind") or ("points" if data.metric in ("reverse_kl", "modes", "hq", "balanced_mode_hq",
                                                                    "mode_hq") else "image")
    definition = METRIC_DEFINITIONS.get(data.metric, "as reported by the metric suite")
    rows = [
        ("Search metric", f"<b>{esc(data.metric)}</b>: {esc(definition)}"),
        ("Feature network", esc(FEATURES.get(kind, "–"))),
        ("Samples per evaluation", f"{data.eval_samples:,} generated against "
                                   f"{min(data.eval_samples, int(data.dataset.get('rows') or data.eval_samples)):,} "
                                   "real samples (the same real set and sample count for every trial and step)"),
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
