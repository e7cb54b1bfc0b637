"""Search efficiency: training iterations that ASHA, PBT and random search (FIFO) spend before any trial first
reaches a target score, on ring-8 and on digits.

Each search is a real `run_job` on one embedded Ray (2 trials at a time on 2 cores). All three share the job, the
search space (lr_g, lr_d log-uniform over three decades, where most samples train badly or slowly) and the search
seed, so they start from the same sampled configurations. The count comes from the trials' MLflow runs, where every
report is logged with the time it was made: sort all reports of the search by time, and count those up to and
including the first one at or better than the target (a PBT recipient re-training from a donor's checkpoint counts
again: that is compute spent). A search that never reaches the target is charged everything it spent (">=").

Which configurations a seed happens to sample first decides much of one search's count (random search is as quick as
any when its first trial is a good one), so each comparison is repeated for several search seeds and summed.

    .venv/bin/python bench/search_efficiency.py [--datasets ring8,digits] [--seeds 0,1] [--samples 12]
                                                [--pbt-population 4]

The last line is `asha_vs_random=… pbt_vs_random=…`: iterations to target summed over data sets and seeds, divided
by random search's sum (the line before it gives the same per data set).
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Optional

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from orchestrator.spec import load_job_text  # noqa: E402

COMMON = """\
name: {name}
search:
  scheduler: {scheduler}
  num_samples: {samples}
  random_seed: {seed}
  max_concurrent: 2
  space:
    train.lr_g: {{loguniform: [1.0e-5, 1.0e-2]}}
    train.lr_d: {{loguniform: [1.0e-5, 1.0e-2]}}
  asha: {{grace_period: 1, reduction_factor: 3}}
  pbt: {{perturbation_interval: 2, quantile_fraction: 0.25, resample_probability: 0.25}}
resources: {{cpus_per_trial: 1}}
storage: {{uri: "{tmp}/{name}"}}
registry: {{enabled: false, tracking_uri: "{tracking_uri}"}}
"""


@dataclass(frozen=True)
class Benchmark:
    """A data set, a small GAN that learns it in a few hundred to a few thousand steps, and a target score."""

    name: str
    job: str
    metric: str
    target: float  # reached when the metric is <= target


BENCHMARKS = {
    # PacGAN's ring: reverse KL of the mode histogram; ~0.3 needs most of the 8 modes with real mass on each.
    "ring8": Benchmark("ring8", """\
data: {uri: "builtin:ring8", batch_size: 128}
model: {family: gan, latent_dim: 2, width: 64, depth: 2}
train: {steps: 2000, eval_every: 200, eval_samples: 2500, ema_decay: 0.0}
""", "reverse_kl", 0.3),
    # 8x8 digits, FID in the domain feature net's space; the real-vs-real floor is ~0.5, a barely trained G ~40.
    "digits": Benchmark("digits", """\
data: {uri: "builtin:digits", batch_size: 64}
model: {family: dcgan, latent_dim: 16, width: 16}
train: {steps: 600, eval_every: 100, eval_samples: 1000, ema_decay: 0.0}
""", "fid", 5.0),
}


@dataclass
class SearchCost:
    scheduler: str
    to_target: Optional[int]  # reports up to the first at or below target; None if never reached
    spent: int  # all reports of the search
    best: float
    wall_s: float

    @property
    def charged(self) -> int:
        """What the comparison uses: iterations to target, or everything spent when it was never reached."""
        return self.to_target if self.to_target is not None else self.spent

    def shown(self) -> str:
        return str(self.to_target) if self.to_target is not None else f">={self.spent}"


def reports_in_time_order(tracking_uri: str, experiment: str, metric: str) -> list[tuple[int, float]]:
    """(timestamp ms, metric) of every report of every trial of the job's one parent run."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return sorted((m.timestamp, m.value) for r in children for m in client.get_metric_history(r.info.run_id, metric))


def run_search(bench: Benchmark, scheduler: str, samples: int, seed: int, tmp: str, tracking_uri: str) -> SearchCost:
    from orchestrator.runner import run_job

    name = f"eff-{bench.name}-{scheduler}-{seed}"
    text = COMMON.format(name=name, scheduler=scheduler, samples=samples, seed=seed, tmp=tmp,
                         tracking_uri=tracking_uri) + bench.job
    started = time.perf_counter()
    run_job(load_job_text(text), stream=io.StringIO())
    wall = time.perf_counter() - started
    reports = reports_in_time_order(tracking_uri, f"ganforge/{name}", bench.metric)
    hit = next((i for i, (_, value) in enumerate(reports, 1) if value <= bench.target), None)
    return SearchCost(scheduler, hit, len(reports), min(v for _, v in reports), wall)


def warm(job) -> None:
    from orchestrator.runner import prepare_data
    from trainers.loop import GANTrainer

    prepare_data(job, None)
    trainer = GANTrainer(job.spec.gan_config())
    try:
        trainer.evaluate()
    finally:
        trainer.close()


def ratio(cost: int, baseline: int) -> str:
    return f"{cost / baseline:.2f}" if baseline else "nan"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default="ring8,digits")
    parser.add_argument("--samples", type=int, default=12, help="configurations per random/ASHA search")
    parser.add_argument("--pbt-population", type=int, default=4,
                        help="PBT population: a few per slot (a population of 12 on 2 slots time-shares in lockstep "
                             "and spends ~4x random search's iterations before any trial gets deep)")
    parser.add_argument("--seeds", default="0,1", help="search seeds; each is shared by the three searches")
    args = parser.parse_args()
    datasets = [BENCHMARKS[d] for d in args.datasets.split(",")]
    seeds = [int(seed) for seed in args.seeds.split(",")]
    population = args.pbt_population

    from orchestrator.runner import init_ray
    from orchestrator.spec import load_job_text as load

    with tempfile.TemporaryDirectory(prefix="ganforge-eff-") as tmp:
        tracking_uri = f"sqlite:///{tmp}/mlflow.db"
        for bench in datasets:  # materialise data and the feature net (digits) before any search is timed
            warm(load(f"name: warm\n{bench.job}"))
        init_ray(None)
        charged: dict[str, dict[str, int]] = {}  # data set -> scheduler -> iterations summed over seeds
        for bench in datasets:
            charged[bench.name] = {"fifo": 0, "asha": 0, "pbt": 0}
            for seed in seeds:
                for scheduler, samples in (("fifo", args.samples), ("asha", args.samples), ("pbt", population)):
                    cost = run_search(bench, scheduler, samples, seed, tmp, tracking_uri)
                    charged[bench.name][scheduler] += cost.charged
                    print(f"{bench.name:7s} seed={seed} {scheduler:5s} samples={samples:3d} "
                          f"{bench.metric}<={bench.target:g}: iterations_to_target={cost.shown():>6s} "
                          f"spent={cost.spent:4d} best={cost.best:.3g} wall_s={cost.wall_s:.0f}",
                          file=sys.stderr, flush=True)

    fields = [f"{name}_{scheduler}_vs_random={ratio(costs[scheduler], costs['fifo'])}"
              for name, costs in charged.items() for scheduler in ("asha", "pbt")]
    print(" ".join(fields))
    total = {s: sum(costs[s] for costs in charged.values()) for s in ("fifo", "asha", "pbt")}
    print(f"asha_vs_random={ratio(total['asha'], total['fifo'])} pbt_vs_random={ratio(total['pbt'], total['fifo'])}")


if __name__ == "__main__":
    main()
