"""Every search algorithm, trial scheduler and search distribution a job may name, with everything the rest of the
code asks of each, and no Ray or torch in sight.

The one list of names: orchestrator/search.py registers how each is built against it (a `Registry` built with
`declared=` refuses a name this file does not list; tests/test_search.py checks that each one listed is built), the
spec checks a job's names against it (orchestrator/spec/checks.py), and the runner, the trial and the report read
its facts instead of comparing names. A new scheduler is its builder in search.py plus one entry here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from trainers.registry import Registry

@dataclass(frozen=True)
class DistributionInfo:
    bounds: bool  # a [low, high] range sampled within, rather than a list of values
    exhaustive: bool = False  # every value is tried: multiplies the trials by its length
    integer: bool = False  # a range of integers, [low, high) like Python's range


_DISTRIBUTIONS = {
    "choice": DistributionInfo(bounds=False),
    "grid": DistributionInfo(bounds=False, exhaustive=True),
    "uniform": DistributionInfo(bounds=True),
    "loguniform": DistributionInfo(bounds=True),
    "randint": DistributionInfo(bounds=True, integer=True),
}
DISTRIBUTION_INFO: Registry[DistributionInfo] = Registry("search distribution")
for _name, _info in _DISTRIBUTIONS.items():
    DISTRIBUTION_INFO.register(_name)(_info)
DISTRIBUTION_NAMES = tuple(_DISTRIBUTIONS)  # in declaration order: how errors list them
RANGES = frozenset(name for name in DISTRIBUTION_NAMES if DISTRIBUTION_INFO.get(name).bounds)


@dataclass(frozen=True)
class AlgorithmInfo:
    accepts: frozenset[str]  # the distributions it can draw from
    refusal: str = ""  # what a job hears for another distribution ({kind} is replaced by its name)
    enumerates: bool = False  # lists every combination of the listed values (a choice becomes a grid)
    # Each suggestion is repeated `search.seeds` times by the algorithm itself (Optuna's Repeater, which numbers the
    # repeats), instead of a grid over train.seed that multiplies the samples.
    repeats_seeds: bool = False
    scalar_categoricals: bool = False  # its categoricals hold scalars only: tuples of joint keys travel as JSON
    package: Optional[str] = None  # the extra it needs: pip install 'ganforge[search]'

    def refuses(self, kind: str) -> Optional[str]:
        return None if kind in self.accepts else self.refusal.format(kind=kind)


ALGORITHM_INFO: Registry[AlgorithmInfo] = Registry("search.algorithm")
ALGORITHM_INFO.register("random")(AlgorithmInfo(accepts=frozenset(DISTRIBUTION_NAMES)))
ALGORITHM_INFO.register("grid")(AlgorithmInfo(
    accepts=frozenset(DISTRIBUTION_NAMES) - RANGES, enumerates=True,
    refusal="needs choice or grid values, not a {kind} range; list the values, or use algorithm random or optuna"))
ALGORITHM_INFO.register("optuna")(AlgorithmInfo(
    accepts=frozenset(DISTRIBUTION_NAMES) - {"grid"}, repeats_seeds=True, scalar_categoricals=True, package="optuna",
    refusal="samples its own values; use choice instead of {kind}"))


def asha_rung(iterations: int, grace_period: int, reduction_factor: float) -> int:
    """The ASHA rung (0 = the first, at grace_period evaluations) a trial stopped at `iterations` was judged at."""
    rung, milestone = 0, float(grace_period)
    while milestone * reduction_factor <= iterations + 1e-9:
        milestone *= reduction_factor
        rung += 1
    return rung


def _asha_stop(search: Any, iterations: int, at: str) -> str:
    asha = search.asha
    return (f"stopped early by ASHA at rung {asha_rung(iterations, asha.grace_period, asha.reduction_factor)} {at}: "
            f"not in the top 1/{asha.reduction_factor:g} of the trials that reached it")


# Fields PBT may change mid-trial: they live in the optimizers and EMA, which a restore re-applies.
PBT_MUTABLE = frozenset({"train.lr_g", "train.lr_d", "train.beta1", "train.beta2", "train.n_critic",
                         "train.penalty_weight", "train.ema_decay",
                         "train.lambda_l1", "train.lambda_cycle", "train.lambda_identity"})  # translation loss weights


@dataclass(frozen=True)
class SchedulerInfo:
    # Its parameters (the search.<name> section) that the report's summary shows.
    shown_params: tuple[str, ...] = ()
    # Why a trial it stopped early stopped: (search section, evaluations run, "after n of m evaluations ...").
    stop_reason: Optional[Callable[[Any, int, str], str]] = None
    # Keeps every checkpoint of every trial: a PBT recipient copies a donor's checkpoint some reports after it was
    # written, and Tune prunes by score, so a bounded number kept often lost the donor's copy by then.
    keeps_all_checkpoints: bool = False
    # Honours search.max_concurrent. PBT does not: a cap counts paused members as live, so a population larger than
    # the cap would never meet; resources bound how many members train at once.
    caps_concurrency: bool = True
    mutates: Optional[frozenset[str]] = None  # the only fields it may search, changed mid-trial (None: any field)
    exploit_log: bool = False  # its runs leave a log of which trial copied which (orchestrator/pbt_lineage.py)


SCHEDULER_INFO: Registry[SchedulerInfo] = Registry("search.scheduler")
SCHEDULER_INFO.register("fifo")(SchedulerInfo())
SCHEDULER_INFO.register("asha")(SchedulerInfo(shown_params=("grace_period", "reduction_factor"), stop_reason=_asha_stop))
SCHEDULER_INFO.register("median")(SchedulerInfo(
    shown_params=("grace_period", "min_samples_required"),
    stop_reason=lambda search, iterations, at: f"stopped early by the median stopping rule {at}: "
                                               "below the median of the other trials"))
SCHEDULER_INFO.register("pbt")(SchedulerInfo(
    shown_params=("perturbation_interval", "quantile_fraction", "resample_probability"),
    keeps_all_checkpoints=True, caps_concurrency=False, mutates=PBT_MUTABLE, exploit_log=True))


def scheduler_info(name: str) -> SchedulerInfo:
    """A scheduler's facts; an unknown name (a report of an old run) gets a plain scheduler's."""
    return SCHEDULER_INFO.get(name) if name in SCHEDULER_INFO else SchedulerInfo()
