"""Spec -> Ray Tune: param space, scheduler, tune/run configs. Pure translation, no Ray cluster needed.

Search spaces are data: each `search.space` entry becomes one Tune distribution under its dotted key, and a
trial's config is a flat {dotted path: value} mapping applied on top of the job's own data/model/train sections.
"""
from __future__ import annotations

import itertools
import json
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ray import tune
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
    TrialScheduler,
)
from ray.tune.search import ConcurrencyLimiter, Repeater, SearchAlgorithm, Searcher
from ray.tune.search.basic_variant import BasicVariantGenerator

from orchestrator.spec.model import Distribution, JobSpec
from trainers.catalog import BUILTIN_KINDS
from trainers.metrics.declared import METRIC_MODES, RENAMED_METRICS, resolve_metric
from trainers.registry import Registry

# Distribution kind -> Tune sampler. `grid` is exhaustive; the others are sampled num_samples times.
DISTRIBUTIONS: Registry[Callable[[Any], Any]] = Registry("search distribution")
DISTRIBUTIONS.register("choice")(lambda values: tune.choice(list(values)))
DISTRIBUTIONS.register("grid")(lambda values: tune.grid_search(list(values)))
DISTRIBUTIONS.register("uniform")(lambda v: tune.uniform(v[0], v[1]))
DISTRIBUTIONS.register("loguniform")(lambda v: tune.loguniform(v[0], v[1]))
DISTRIBUTIONS.register("randint")(lambda v: tune.randint(v[0], v[1]))

SCHEDULERS: Registry[Callable[["SearchPlan"], TrialScheduler]] = Registry("search.scheduler")


@SCHEDULERS.register("fifo")
def _fifo(plan: "SearchPlan") -> TrialScheduler:
    return FIFOScheduler()


@SCHEDULERS.register("asha")
def _asha(plan: "SearchPlan") -> TrialScheduler:
    asha = plan.spec.search.asha
    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=plan.evaluations_per_trial,
        grace_period=min(asha.grace_period, plan.evaluations_per_trial),
        reduction_factor=asha.reduction_factor,
    )


@SCHEDULERS.register("median")
def _median(plan: "SearchPlan") -> TrialScheduler:
    median = plan.spec.search.median
    return MedianStoppingRule(time_attr="training_iteration", grace_period=median.grace_period,
                              min_samples_required=median.min_samples_required)


@SCHEDULERS.register("pbt")
def _pbt(plan: "SearchPlan") -> TrialScheduler:
    pbt = plan.spec.search.pbt
    space = plan.spec.search.space
    mutations = {key: (list(d.values) if d.kind in ("choice", "grid") else DISTRIBUTIONS.get(d.kind)(d.values))
                 for key, d in space.items()}
    return GanforgePBT(
        last_iteration=plan.evaluations_per_trial,
        time_attr="training_iteration",
        perturbation_interval=pbt.perturbation_interval,
        hyperparam_mutations=mutations,
        quantile_fraction=pbt.quantile_fraction,
        resample_probability=pbt.resample_probability,
        synch=pbt.synch,
        # Ray scales continuous values by 0.8/1.2 without looking at the declared range: clip back into it.
        custom_explore_fn=lambda config: clip_to_space(config, space),
        log_config=True,
    )


class GanforgePBT(PopulationBasedTraining):
    """Ray's asynchronous PBT with two fixes found by tests/test_search.py.

    1. Each trial's last evaluation is left alone. Exploiting there (or saving a donor checkpoint there) restarts a
       recipient from a finished state with nothing left to train: it reports nothing more, and Tune keeps the
       donor's result, config and trial id as the recipient's outcome.
    2. Fair turns when the population outnumbers the running slots. Ray resumes the paused trial with the least
       training time; a recipient takes its donor's time, so on a tie (collapsed GANs often score exactly the same)
       it was picked again and again, re-copied the still-paused donor each time, and the donor never ran.
       Ties now go to the trial that has waited longest.
    """

    def __init__(self, *, last_iteration: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._last_iteration = last_iteration
        self._turns = itertools.count()
        self._last_turn: dict[Any, int] = {}

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get(self._time_attr, 0) >= self._last_iteration:
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def choose_trial_to_run(self, tune_controller):
        from ray.tune.experiment import Trial

        if self._synch:
            return super().choose_trial_to_run(tune_controller)
        waiting = [t for t in tune_controller.get_trials() if t.status in (Trial.PENDING, Trial.PAUSED)]
        if not waiting:
            return None
        chosen = min(waiting, key=lambda t: (self._trial_state[t].last_train_time, self._last_turn.get(t, -1)))
        self._last_turn[chosen] = next(self._turns)
        return chosen


def clip_to_space(config: dict[str, Any], space: dict[str, Distribution]) -> dict[str, Any]:
    for key, dist in space.items():
        if key in config and dist.kind in ("uniform", "loguniform", "randint"):
            low, high = dist.values
            value = min(max(config[key], low), high if dist.kind != "randint" else high - 1)
            config[key] = int(value) if dist.kind == "randint" else float(value)
    return config


# (plan, max_concurrent or None) -> what Tune's `search_alg` takes. Each algorithm enforces the concurrency cap
# itself: Tune ignores `max_concurrent_trials` for a search-algorithm instance such as the variant generator.
ALGORITHMS: Registry[Callable[["SearchPlan", Optional[int]], "SearchAlgorithm | Searcher"]] = Registry("search.algorithm")


class ResumableVariantGenerator(BasicVariantGenerator):
    """Tune's variant generator, restored in step with the experiment's trial table.

    Tune saves the generator's position and the trial table as two files in one folder and uploads the folder while
    it keeps rewriting them; the generator's file is listed first, so a driver killed mid-upload (likely when S3 is
    slow) leaves a generator older than the table. Restored as is, it would create again trials the table already
    holds (same ids) and count finished ones against max_concurrent forever. Here the table wins: generated trials
    it already holds are skipped, and the live trials are the ones it has not seen finish.
    """

    def restore_from_dir(self, dirpath: str):
        super().restore_from_dir(dirpath)
        table = _trial_table(dirpath)
        self._live_trials = {trial_id for trial_id, status in table.items() if status != "TERMINATED"}
        self._next = None
        while not self.is_finished():
            trial = self._generate()
            if trial is None or trial.trial_id not in table:
                self._next = trial  # the first trial the table does not hold yet
                break

    def get_state(self):
        state = super().get_state()
        if state:
            state.pop("_next", None)  # a Trial: the table holds it once it runs
        return state

    def _generate(self):
        """The generator's next trial, whatever max_concurrent says."""
        cap, self.max_concurrent = self.max_concurrent, 0
        try:
            trial = super().next_trial()
        finally:
            self.max_concurrent = cap
        if trial is not None:
            self._live_trials.discard(trial.trial_id)
        return trial

    def next_trial(self):
        trial = getattr(self, "_next", None)
        if trial is None:
            return super().next_trial()
        if self.max_concurrent > 0 and len(self._live_trials) >= self.max_concurrent:
            return None
        self._next = None
        self._live_trials.add(trial.trial_id)
        return trial


def _trial_table(dirpath: str) -> dict[str, str]:
    """{trial id: status} from the newest experiment state in a Tune experiment folder (what Tune restores)."""
    import json
    from pathlib import Path

    states = sorted(Path(dirpath).glob("experiment_state-*.json"))
    if not states:
        return {}
    entries = json.loads(states[-1].read_text())["trial_data"]
    trials = [json.loads(entry[0]) for entry in entries]
    return {t["trial_id"]: t["status"] for t in trials}


@ALGORITHMS.register("random")
@ALGORITHMS.register("grid")
def _variants(plan: "SearchPlan", max_concurrent: Optional[int]) -> SearchAlgorithm:
    # constant_grid_search: random values are drawn once per sample and held across grid points, so the seeds of
    # one configuration (a grid over train.seed) share every other hyperparameter.
    return ResumableVariantGenerator(constant_grid_search=True, random_state=plan.spec.search.random_seed,
                                     max_concurrent=max_concurrent or 0)


@ALGORITHMS.register("optuna")
def _optuna(plan: "SearchPlan", max_concurrent: Optional[int]) -> Searcher:
    try:
        from ray.tune.search.optuna import OptunaSearch
    except ImportError as exc:  # optuna is an extra: pip install 'ganforge[search]'
        from orchestrator.errors import SpecError

        raise SpecError(f"search.algorithm optuna needs the optuna package ({exc}); pip install 'ganforge[search]'")
    import warnings

    import optuna

    with warnings.catch_warnings():  # multivariate and constant_liar are "experimental" in Optuna since 2.x
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # multivariate: one joint density over the space, so TPE learns lr_g and lr_d together (a GAN's stability
        # depends on their balance, not on each alone); constant_liar: trials still running count as bad guesses, so
        # concurrent suggestions spread out instead of repeating one another.
        sampler = optuna.samplers.TPESampler(seed=plan.spec.search.random_seed, multivariate=True, constant_liar=True)
    searcher = OptunaSearch(sampler=sampler)
    seeds = plan.spec.search.seeds
    # Repeater runs each suggestion `seeds` times (config gets __trial_index__) and reports their mean to Optuna.
    if seeds > 1:
        searcher = Repeater(searcher, repeat=seeds, set_index=True)
    return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent) if max_concurrent else searcher


def natural_mode(metric: str) -> str:
    return METRIC_MODES.get(metric, "min")


def data_kind(uri: str) -> str:
    """Whether a data set holds images or points, reading at most its manifest."""
    if uri in BUILTIN_KINDS:
        return BUILTIN_KINDS[uri]
    from trainers.data import open_dataset

    return open_dataset(uri).info.kind


@dataclass
class SearchPlan:
    """Everything the Tune run needs, resolved from a spec (printed by --dry-run)."""

    spec: JobSpec
    metric: str
    mode: str

    @classmethod
    def from_spec(cls, spec: JobSpec) -> "SearchPlan":
        metric = spec.search.metric
        if metric == "auto" or metric in RENAMED_METRICS:  # the data kind's suite says what it means
            metric, note = resolve_metric(metric, data_kind(spec.data.uri), spec.metrics.features)
            if note:
                logging.getLogger(__name__).warning(note)
        return cls(spec=spec, metric=metric, mode=spec.search.mode or natural_mode(metric))

    @property
    def evaluations_per_trial(self) -> int:
        return math.ceil(self.spec.train.steps / self.spec.train.eval_every)

    @property
    def grid_size(self) -> int:
        return math.prod(len(d.values) for d in self._space_for_algorithm().values() if d.kind == "grid")

    @property
    def total_trials(self) -> int:
        return self.spec.search.num_samples * self.grid_size * self.spec.search.seeds

    def _space_for_algorithm(self) -> dict[str, Distribution]:
        space = dict(self.spec.search.space)
        if self.spec.search.algorithm == "grid":
            # Grid search enumerates every listed value; ranges have no finite grid.
            for key, dist in space.items():
                if dist.kind in ("uniform", "loguniform", "randint"):
                    from orchestrator.errors import SpecError

                    raise SpecError(f"search.space.{key}: algorithm grid needs choice or grid values, not {dist.kind}")
                space[key] = Distribution(grid=list(dist.values))
        return space

    def param_space(self) -> dict[str, Any]:
        space = {}
        for key, d in self._space_for_algorithm().items():
            values = d.values
            if self.spec.search.algorithm == "optuna" and "," in key:
                values = [json.dumps(v) for v in values]  # Optuna's categoricals hold scalars, not tuples
            space[key] = DISTRIBUTIONS.get(d.kind)(values)
        seeds = self.spec.search.seeds
        if seeds > 1 and self.spec.search.algorithm != "optuna":
            base = self.spec.train.seed
            space[SEED_KEY] = tune.grid_search([base + i for i in range(seeds)])
        return space

    def search_algorithm(self, max_concurrent: Optional[int] = None):
        return ALGORITHMS.get(self.spec.search.algorithm)(self, max_concurrent)

    def scheduler(self) -> TrialScheduler:
        return SCHEDULERS.get(self.spec.search.scheduler)(self)

    @property
    def distributed(self) -> bool:
        return self.spec.resources.workers_per_trial > 1

    def resources(self, gpus_per_trial: Optional[float] = None) -> dict[str, float]:
        """What each Tune trial reserves; `gpus_per_trial` replaces the spec's (0 after a CPU fallback)."""
        r = self.spec.resources
        gpus = r.gpus_per_trial if gpus_per_trial is None else gpus_per_trial
        if self.distributed:
            # The Tune function only coordinates; its TorchTrainer reserves CPUs/GPUs for the workers itself. Tune
            # refuses an all-zero request, and any CPU sliver would leave a cluster of exactly workers x cpus short
            # (2 workers x 1 CPU never started on 2 CPUs), so it holds a token byte of memory instead.
            return {"cpu": 0, "memory": 1}
        return {"cpu": r.cpus_per_trial, "gpu": gpus}

    def concurrency(self, cluster_cpus: float) -> int | None:
        """Trials that fit at once: explicit max_concurrent, or for DDP the worker groups the cluster holds.

        None for PBT: a cap counts paused trials as live, so a population larger than the cap would never meet
        (later members start only when earlier ones finish); resources bound how many members train at once."""
        if self.spec.search.scheduler == "pbt":
            return None
        if self.spec.search.max_concurrent:
            return self.spec.search.max_concurrent
        if self.distributed:
            r = self.spec.resources
            return max(1, int(cluster_cpus // (r.workers_per_trial * r.cpus_per_trial)))
        return None

    def trial_slots(self, cluster_cpus: float) -> int:
        """Single-worker trials that can run at once on `cluster_cpus`: the trial processes worth starting early."""
        if self.distributed:
            return 0
        cap = self.concurrency(cluster_cpus) or self.total_trials
        return max(0, min(self.total_trials, cap, int(cluster_cpus // self.spec.resources.cpus_per_trial)))

    def tune_config(self, cluster_cpus: float = 0.0) -> tune.TuneConfig:
        return tune.TuneConfig(
            metric=self.metric,
            mode=self.mode,
            scheduler=self.scheduler(),
            search_alg=self.search_algorithm(self.concurrency(cluster_cpus)),
            # Optuna's Repeater counts each repeat as a sample; the variant generator multiplies by the seed grid.
            num_samples=self.spec.search.num_samples * (self.spec.search.seeds if self.spec.search.algorithm == "optuna" else 1),
            # Reusing trial processes skips a worker start and `import torch` per trial (GUIDE: 4.6 s -> 1.1 s).
            # Not for DDP trials: killing a stopped trial's process is what tears its worker group down.
            reuse_actors=not self.distributed,
            trial_name_creator=lambda t: f"trial_{t.trial_id}",
            trial_dirname_creator=lambda t: f"trial_{t.trial_id}",
        )

    def describe(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "job": spec.name,
            "trials": self.total_trials,
            "algorithm": spec.search.algorithm,
            "scheduler": spec.search.scheduler,
            "seeds_per_configuration": spec.search.seeds,
            "metric": f"{self.metric} ({self.mode})",
            "evaluations_per_trial": self.evaluations_per_trial,
            "resources_per_trial": {"workers": spec.resources.workers_per_trial,
                                    "cpus_per_worker": spec.resources.cpus_per_trial,
                                    "gpus_per_worker": spec.resources.gpus_per_trial},
            "max_concurrent": spec.search.max_concurrent or "as resources allow",
            "search_space": {k: {d.kind: d.values} for k, d in spec.search.space.items()},
        }


SEED_KEY = "train.seed"
TRIAL_INDEX = "__trial_index__"  # set by Optuna's Repeater: which repeat (seed) of a suggestion this is


def expand_trial_config(config: dict[str, Any], base_seed: int = 0) -> dict[tuple[str, ...], Any]:
    """Tune's sampled config -> {spec path: value}; 'a.b,c.d' keys hold tuples searched together."""
    out: dict[tuple[str, ...], Any] = {}
    for key, value in config.items():
        if key == TRIAL_INDEX:
            out[("train", "seed")] = base_seed + int(value)
            continue
        paths = [tuple(p.strip().split(".")) for p in key.split(",")]
        if len(paths) > 1 and isinstance(value, str):
            value = json.loads(value)
        values = value if len(paths) > 1 else [value]
        out.update(zip(paths, values))
    return out
