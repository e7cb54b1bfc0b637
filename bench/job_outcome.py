"""Freeze what a finished `ganforge run` selected into a small JSON file that can be committed beside the results.

A search's stored results (Tune's trial folders and `ganforge-run.json`) are hundreds of megabytes and live on a
run's storage; what docs/results.md needs from them is small: the job, its metric, the champion trial and its
configuration, and every trial's final scores. `bench/job_champions.py` then trains the champion's configuration
on the protocol's seeds from this file alone.

    .venv/bin/python bench/job_outcome.py RUN_PATH --out bench/results/ring8-job.json

RUN_PATH is the run folder the job printed ("results in …"): local, or s3://… with the usual AWS environment.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from orchestrator.search import SEED_KEY, TRIAL_INDEX
from orchestrator.storage import RUN_RECORD, list_names, read_text

# Final scores worth keeping per trial (the mixture, image and translation suites' headline values; the job's own
# metric is always kept, whatever its name was when the job ran).
KEPT = ("step", "modes", "hq", "reverse_kl", "mode_spread", "mode_hq", "balanced_mode_hq", "spread_mode_hq",
        "fd_own", "kd_own", "fid", "kid", "l1", "psnr", "ssim", "fd_own_ab", "fd_own_ba", "cycle_error", "truth_l1",
        "uses_ema", "diverged")


def trial_outcomes(run_path: str, kept: tuple[str, ...] = KEPT) -> list[dict[str, Any]]:
    """Each trial folder's parameters and last reported scores, in trial-id order."""
    trials = []
    for name in list_names(run_path):
        if not name.startswith("trial_"):
            continue
        params = json.loads(read_text(f"{run_path}/{name}/params.json") or "{}")
        lines = [line for line in (read_text(f"{run_path}/{name}/result.json") or "").splitlines() if line.strip()]
        last = json.loads(lines[-1]) if lines else {}
        trials.append({"trial_id": last.get("trial_id", name.removeprefix("trial_")), "params": params,
                       "evaluations": len(lines), **{k: last[k] for k in kept if k in last}})
    return sorted(trials, key=lambda t: t["trial_id"])


def configuration(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's hyperparameters without its seed: what the protocol retrains."""
    return {k: v for k, v in params.items() if k not in (SEED_KEY, TRIAL_INDEX)}


def outcome(run_path: str) -> dict[str, Any]:
    record = json.loads(read_text(f"{run_path}/{RUN_RECORD}") or "{}")
    if not record.get("outcome", {}).get("champion"):
        raise SystemExit(f"{run_path}: the run record names no champion (did the run finish?)")
    metric = record["metric"]
    trials = trial_outcomes(run_path, (*KEPT, metric))
    champion_id = record["outcome"]["champion"]["trial_id"]
    champion = next(t for t in trials if t["trial_id"] == champion_id)
    # The trials of the champion's configuration: one per search seed, or the champion alone in a search without them.
    same = [t for t in trials if configuration(t["params"]) == configuration(champion["params"])]
    values = [t[metric] for t in same if metric in t]
    return {
        "job_yaml": record["job_yaml"], "overrides": record.get("overrides", []), "data": record["data"],
        "metric": metric, "mode": record["mode"], "git_commit": record.get("git_commit"),
        "champion": {"trial_id": champion_id, "value": record["outcome"]["champion"]["value"],
                     "configuration": configuration(champion["params"]),
                     "median_over_seeds": statistics.median(values) if values else None,
                     "seeds": {str(t["params"][SEED_KEY]): t.get(metric) for t in same if SEED_KEY in t["params"]}},
        "registered": record["outcome"].get("registered"),
        "trials": trials,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_path")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    data = outcome(args.run_path.rstrip("/"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    c = data["champion"]
    print(f"{args.out}: champion {c['trial_id']} ({data['metric']} median {c['median_over_seeds']} over "
          f"{len(c['seeds'])} search seeds), {len(data['trials'])} trials")
    return 0


if __name__ == "__main__":
    sys.exit(main())
