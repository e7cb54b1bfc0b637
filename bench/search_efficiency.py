"""Search efficiency: training iterations that ASHA, PBT and random search (FIFO) spend before any trial first
reaches a target score, on ring-8 and on digits.

Each search is a real `run_job` on one embedded Ray (2 trials at a time on 2 cores). All three share the job, the
search space (lr_g, lr_d log-uniform over 3.5 decades and beta1 in {0, 0.5, 0.9}: a stability search where most
samples train badly, slowly or diverge) and the search seed, so they start from the same sampled configurations. The count comes from the trials' MLflow runs, where every
report is logged with the time it was made: sort all reports of the search by time, and count those up to and
including the first one at or better than the target (a PBT recipient re-training from a donor's checkpoint counts
again: that is compute spent). A search that never reaches the target is charged everything it spent (">="), and no
less than the most any search of that seed spent (random search's whole budget): failing cheaply is not efficiency.

Targets come from a calibration that never sees the compared searches: random search on held-out search seeds
(`--calibration-seeds`, default 100,101), run first. The strict target is the median over those seeds of random
search's best score, the loose one the median of the best it reached within its first quarter of reports; both
are printed (`calibration ...`) before any compared search runs. `--targets` fixes them by hand instead (to repeat
an earlier run).

Which configurations a seed happens to sample first decides much of one search's count (random search is as quick as
any when its first trial is a good one), so each comparison is repeated for several search seeds and summed.

    .venv/bin/python bench/search_efficiency.py [--datasets ring8,digits] [--seeds 0,1] [--samples 24]
                                                [--calibration-seeds 100,101] [--targets ring8=25:15]
                                                [--pbt-population 4] [--pbt-length N] [--pbt-resample 1.0]

PBT gets the same total training budget as random search: a population of 4 (on 2 slots it time-shares them)
whose lineages each train `--pbt-length` times a random trial's steps, by default samples / population (24 / 4 = 6),
so that population x length = the configurations random search trains (a PBT member is one long training whose
hyperparameters change), exploring by fresh draws from the space (`--pbt-resample 1.0`); random search and ASHA
sample 24 configurations, the first 4 of which are PBT's population.
`--schedulers …,asha_tpe` adds ASHA over the configurations Optuna's TPE suggests (`search.algorithm: optuna`,
BOHB's idea): TPE samples its first 10 at random, then where the reports so far were good (its draws are its own, not
the ones the random searches share).

The last line is `asha_vs_random=… pbt_vs_random=…`: iterations to each data set's first (strict) target, summed
over data sets and seeds, divided by random search's sum. The line before gives the same per data set and target. A
seed where no search reached a target is left out of that target's sums (reported as skipped_seeds).
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import math
import os
import re
import statistics
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
  algorithm: {algorithm}
  scheduler: {scheduler}
  num_samples: {samples}
  random_seed: {seed}
  metric: {metric}
  mode: {mode}
  max_concurrent: 2
  space:
    train.lr_g: {{loguniform: [1.0e-5, 3.0e-2]}}
    train.lr_d: {{loguniform: [1.0e-5, 3.0e-2]}}
    train.beta1: {{choice: [0.0, 0.5, 0.9]}}
  asha: {{grace_period: {grace}, reduction_factor: 3}}
  pbt: {{perturbation_interval: 2, quantile_fraction: 0.25, resample_probability: {resample}}}
resources: {{cpus_per_trial: 1}}
storage: {{uri: "{tmp}/{name}"}}
registry: {{enabled: false, tracking_uri: "{tracking_uri}"}}
"""


@dataclass(frozen=True)
class Benchmark:
    """A data set, a small GAN that learns it in a few hundred to a few thousand steps, and its targets.

    `targets` are set by the calibration (or `--targets`), strict first: the first is the one compared on the last
    line, a looser one is reported beside it. No search's decisions depend on the target, so every target is read
    off the same searches.
    """

    name: str
    job: str
    metric: str
    mode: str  # "min": reach metric <= target; "max": metric >= target
    targets: tuple[float, ...] = ()

    def reached(self, value: float, target: float) -> bool:
        return value <= target if self.mode == "min" else value >= target

    def best(self, values: list[float]) -> float:
        return min(values) if self.mode == "min" else max(values)


BENCHMARKS = {
    # PacGAN's ring, scored by mode_hq = modes/8 x HQ %: a generator must cover every mode AND put its samples
    # within 3 sigma of one.
    "ring8": Benchmark("ring8", """\
data: {uri: "builtin:ring8", batch_size: 128}
model: {family: gan, latent_dim: 2, width: 64, depth: 2}
train: {steps: 2000, eval_every: 200, eval_samples: 2500, ema_decay: 0.0}
""", "mode_hq", "max"),
    # 8x8 digits, FD in the data set's own feature network's space (fit on a split the scores never see).
    "digits": Benchmark("digits", """\
data: {uri: "builtin:digits", batch_size: 64}
model: {family: dcgan, latent_dim: 16, width: 16}
train: {steps: 600, eval_every: 100, eval_samples: 1000, ema_decay: 0.0}
""", "fd_own", "min"),
}


@dataclass
class SearchCost:
    scheduler: str
    reports: list[float]  # the metric of every report of the search, in the order they were made
    wall_s: float
    bench: Benchmark

    def to_target(self, target: float) -> Optional[int]:
        """Reports up to and including the first that reaches target; None if none did."""
        return next((i for i, value in enumerate(self.reports, 1) if self.bench.reached(value, target)), None)

    def charged(self, target: float, budget: int = 0) -> int:
        """What the comparison uses: iterations to target; a search that never reached it is charged what it spent,
        but no less than `budget` (the most any search of that seed spent): a small PBT population that fails
        cheaply must not look more efficient than a random search that succeeds."""
        hit = self.to_target(target)
        return hit if hit is not None else max(len(self.reports), budget)

    def shown(self, target: float) -> str:
        hit = self.to_target(target)
        return str(hit) if hit is not None else f">={len(self.reports)}"


def reports_in_time_order(tracking_uri: str, experiment: str, metric: str) -> list[float]:
    """The metric of every report of every trial of the job's one parent run, sorted by when it was logged."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    logged = sorted((m.timestamp, m.value) for r in children for m in client.get_metric_history(r.info.run_id, metric))
    return [value for _, value in logged]


def run_search(bench: Benchmark, search: str, samples: int, seed: int, tmp: str, tracking_uri: str,
               grace: int = 1, resample: float = 1.0, pbt_length: int = 1, name_prefix: str = "eff") -> SearchCost:
    from orchestrator.runner import run_job

    name = f"{name_prefix}-{bench.name}-{search.replace('_', '-')}-{seed}"
    algorithm, scheduler = SEARCHES[search]
    text = COMMON.format(name=name, algorithm=algorithm, scheduler=scheduler, samples=samples, seed=seed, tmp=tmp, metric=bench.metric, grace=grace,
                         resample=resample,
                         mode=bench.mode, tracking_uri=tracking_uri) + bench.job
    if search == "pbt" and pbt_length > 1:  # a population trains its lineages longer than one random trial
        steps = int(re.search(r"steps: (\d+)", bench.job)[1])
        text = text.replace(f"steps: {steps},", f"steps: {steps * pbt_length},")
    started = time.perf_counter()
    run_job(load_job_text(text), stream=io.StringIO())
    wall = time.perf_counter() - started
    return SearchCost(search, reports_in_time_order(tracking_uri, f"ganforge/{name}", bench.metric), wall, bench)


def warm(job) -> None:
    from orchestrator.runner import prepare_data
    from trainers.loop import GANTrainer

    prepare_data(job, None)
    trainer = GANTrainer(job.spec.gan_config())
    try:
        trainer.evaluate()
    finally:
        trainer.close()


# Each search: (search.algorithm, search.scheduler). fifo over randomly sampled configurations is "random search";
# asha_tpe is ASHA stopping the configurations Optuna's TPE suggests (BOHB's idea), not run unless asked for.
SEARCHES = {"fifo": ("random", "fifo"), "asha": ("random", "asha"), "pbt": ("random", "pbt"),
            "asha_tpe": ("optuna", "asha")}


def ratio(cost: int, baseline: int) -> str:
    return f"{cost / baseline:.2f}" if baseline else "nan"


def calibrate(bench: Benchmark, calibrations: list[SearchCost]) -> Benchmark:
    """Targets from random searches on held-out seeds: strict = the median of their best scores, loose = the median
    of the best each reached within its first quarter of reports. Rounded to 3 significant digits."""
    best = [bench.best(c.reports) for c in calibrations]
    early = [bench.best(c.reports[:max(1, len(c.reports) // 4)]) for c in calibrations]
    return dataclasses.replace(bench, targets=(float(f"{statistics.median(best):.3g}"),
                                               float(f"{statistics.median(early):.3g}")))


def fixed_targets(spec: str) -> dict[str, tuple[float, ...]]:
    """`ring8=25:15,digits=2:5` -> {"ring8": (25.0, 15.0), "digits": (2.0, 5.0)}."""
    return {name: tuple(float(t) for t in targets.split(":"))
            for name, targets in (item.split("=", 1) for item in spec.split(",") if item)}


def print_search(bench: Benchmark, seed: int, cost: SearchCost, samples: int, label: str = "") -> None:
    op = "<=" if bench.mode == "min" else ">="
    hits = " ".join(f"to_{bench.metric}{op}{t:g}={cost.shown(t):>5s}" for t in bench.targets)
    print(f"{label}{bench.name:7s} seed={seed} {cost.scheduler:5s} samples={samples:3d} {hits} "
          f"spent={len(cost.reports):4d} best={bench.best(cost.reports):.3g} wall_s={cost.wall_s:.0f}",
          file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default="ring8,digits")
    parser.add_argument("--samples", type=int, default=24, help="configurations per random/ASHA search")
    parser.add_argument("--pbt-population", type=int, default=4,
                        help="PBT population: a few per slot (a population of 12 on 2 slots time-shares in lockstep "
                             "and spends ~4x random search's iterations before any trial gets deep)")
    parser.add_argument("--seeds", default="0,1", help="search seeds; each is shared by the compared searches")
    parser.add_argument("--calibration-seeds", default="100,101",
                        help="held-out search seeds whose random searches set the targets (never compared)")
    parser.add_argument("--targets", default="", help="fixed targets instead of a calibration, strict first: "
                        "ring8=25:15,digits=2:5")
    parser.add_argument("--from-log", help="recompute the summary from the per-search lines an earlier run printed")
    parser.add_argument("--schedulers", default="fifo,asha,pbt", help="which searches to run, of "
                        f"{','.join(SEARCHES)} (with --from-log over several logs, searches of other runs can "
                        "complete the comparison)")
    parser.add_argument("--pbt-resample", type=float, default=1.0,
                        help="PBT's resample_probability: how often explore draws a fresh value from the space "
                             "instead of perturbing the donor's by x0.8/x1.2")
    parser.add_argument("--pbt-length", type=int, default=None,
                        help="PBT's lineages train this many times a random trial's steps (default: samples / "
                             "population, random search's total budget)")
    parser.add_argument("--asha-grace", type=int, default=1, help="ASHA's grace period in evaluations")
    args = parser.parse_args()
    if args.from_log:
        for line in summary(*results_from_log(args.from_log.split(","))):
            print(line)
        return
    datasets = [BENCHMARKS[d] for d in args.datasets.split(",")]
    seeds = [int(seed) for seed in args.seeds.split(",")]
    calibration_seeds = [int(seed) for seed in args.calibration_seeds.split(",") if seed]
    if set(seeds) & set(calibration_seeds):
        parser.error("--calibration-seeds must not overlap --seeds: a target must not come from the searches compared")
    population = args.pbt_population
    pbt_length = args.pbt_length or max(1, args.samples // population)
    fixed = fixed_targets(args.targets)

    from orchestrator.runner import init_ray
    from orchestrator.spec import load_job_text as load

    with tempfile.TemporaryDirectory(prefix="ganforge-eff-") as tmp:
        tracking_uri = f"sqlite:///{tmp}/mlflow.db"
        for bench in datasets:  # materialise data and the feature net (digits) before any search is timed
            warm(load(f"name: warm\n{bench.job}"))
        init_ray(None)
        calibrated = []
        for bench in datasets:
            if bench.name in fixed:
                bench = dataclasses.replace(bench, targets=fixed[bench.name])
            else:
                runs = [run_search(bench, "fifo", args.samples, seed, tmp, tracking_uri, name_prefix="cal")
                        for seed in calibration_seeds]
                bench = calibrate(bench, runs)
                for seed, cost in zip(calibration_seeds, runs):
                    print_search(bench, seed, cost, args.samples, label="calibration ")
            print(f"targets {bench.name} {bench.metric} {':'.join(f'{t:g}' for t in bench.targets)} "
                  f"({'fixed by --targets' if bench.name in fixed else 'calibrated on seeds ' + args.calibration_seeds})",
                  file=sys.stderr, flush=True)
            calibrated.append(bench)
        results: dict[tuple[str, int], dict[str, SearchCost]] = {}  # (data set, seed) -> scheduler -> cost
        for bench in calibrated:
            for seed in seeds:
                for search in args.schedulers.split(","):
                    samples = population if search == "pbt" else args.samples
                    cost = run_search(bench, search, samples, seed, tmp, tracking_uri, grace=args.asha_grace,
                                      resample=args.pbt_resample, pbt_length=pbt_length)
                    results.setdefault((bench.name, seed), {})[search] = cost
                    print_search(bench, seed, cost, samples)
    for line in summary(calibrated, results):
        print(line)


def results_from_log(paths: list[str]) -> tuple[list[Benchmark], dict[tuple[str, int], dict[str, SearchCost]]]:
    """Rebuild each search's cost from its printed line (`... to_METRIC<=T=HIT ... spent=N ...`): a report sequence
    with the same first hit of every target and the same length, which is all `charged` reads."""

    results: dict[tuple[str, int], dict[str, SearchCost]] = {}
    targets: dict[str, list[float]] = {}  # per data set, in the order the lines name them (strict first)
    for line in (line for path in paths for line in open(path)):
        m = re.match(r"(\w+)\s+seed=(\d+) (\w+)\s+samples=\s*\d+ (.*) spent=\s*(\d+) ", line)
        if not m:  # calibration lines start with "calibration": they are not compared
            continue
        bench, seed, scheduler, hits, spent = BENCHMARKS[m[1]], int(m[2]), m[3], m[4], int(m[5])
        named = targets.setdefault(bench.name, [])
        named += [float(t) for t in re.findall(r"to_\w+[<>]=([\d.]+)=", hits) if float(t) not in named]
        bad = math.inf if bench.mode == "min" else -math.inf
        reports = [bad] * spent
        for target, hit in re.findall(r"to_\w+[<>]=([\d.]+)=\s*(>?=?\d+)", hits):
            if not hit.startswith(">"):
                i = int(hit) - 1
                # One report that reached two targets reached the stricter one: keep that.
                stricter = max if bench.mode == "max" else min
                reports[i] = float(target) if reports[i] == bad else stricter(reports[i], float(target))
        results.setdefault((bench.name, seed), {})[scheduler] = SearchCost(scheduler, reports, 0.0, bench)
    return [dataclasses.replace(BENCHMARKS[name], targets=tuple(ts)) for name, ts in targets.items()], results


def summary(datasets: list[Benchmark], results: dict[tuple[str, int], dict[str, SearchCost]]) -> list[str]:
    """Ratios to random search per data set and target, then the last line (first target, data sets summed).

    Only searches that ran on every (data set, seed) are compared. A seed where none of them reached a target says
    nothing about it and is left out of that target's sums (counted in `skipped`); where only some did, the others
    are charged all they spent, and no less than the most any of them spent.
    """
    searches = [name for name in SEARCHES if all(name in costs for costs in results.values())]
    if "fifo" not in searches:
        return ["no random (fifo) search on every seed to compare with: combine logs with --from-log"]
    others = [name for name in searches if name != "fifo"]
    sums = {(b.name, t): dict.fromkeys(searches, 0) for b in datasets for t in b.targets}
    skipped = dict.fromkeys(sums, 0)
    for bench in datasets:
        for (name, _), all_costs in results.items():
            if name != bench.name:
                continue
            costs = {search: all_costs[search] for search in searches}
            for target in bench.targets:
                if all(c.to_target(target) is None for c in costs.values()):
                    skipped[(name, target)] += 1
                    continue
                budget = max(len(c.reports) for c in costs.values())
                for search, cost in costs.items():
                    sums[(name, target)][search] += cost.charged(target, budget)
    fields = [f"{name}_{search}_vs_random@{target:g}={ratio(costs[search], costs['fifo'])}"
              for (name, target), costs in sums.items() for search in others]
    fields += [f"skipped_seeds@{name}:{target:g}={n}" for (name, target), n in skipped.items() if n]
    first = [sums[(b.name, b.targets[0])] for b in datasets]
    total = {search: sum(costs[search] for costs in first) for search in searches}
    return [" ".join(fields), " ".join(f"{search}_vs_random={ratio(total[search], total['fifo'])}" for search in others)]


if __name__ == "__main__":
    main()
