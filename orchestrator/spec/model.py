"""The job spec: `GANConfig` (data, model, train) plus the sections that say how to search, where to run and where
results and the winning generator go. Every field has a default and a one-line description; `ganforge schema`
prints this as JSON Schema and the README's YAML reference is generated from it.
"""
from __future__ import annotations

import re
from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from trainers.config import GANConfig, Section

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
DISTRIBUTIONS = ("choice", "grid", "uniform", "loguniform", "randint")


class Distribution(Section):
    """One searched dimension. Exactly one of the fields is set."""

    choice: Optional[list[Any]] = Field(None, description="Sample uniformly from these values.")
    grid: Optional[list[Any]] = Field(None, description="Try every value (multiplies the trials by its length).")
    uniform: Optional[tuple[float, float]] = Field(None, description="Uniform float in [low, high].")
    loguniform: Optional[tuple[float, float]] = Field(None, description="Log-uniform float in [low, high], low > 0.")
    randint: Optional[tuple[int, int]] = Field(None, description="Integer in [low, high) like Python's range.")

    @model_validator(mode="after")
    def _exactly_one(self) -> "Distribution":
        set_fields = [k for k in DISTRIBUTIONS if getattr(self, k) is not None]
        if len(set_fields) != 1:
            raise ValueError(f"give exactly one of {', '.join(DISTRIBUTIONS)} (got {', '.join(set_fields) or 'none'})")
        kind = set_fields[0]
        value = getattr(self, kind)
        if kind in ("choice", "grid") and not value:
            raise ValueError(f"{kind} needs at least one value")
        if kind in ("uniform", "loguniform", "randint") and not value[0] < value[1]:
            raise ValueError(f"{kind} needs low < high, got {list(value)}")
        if kind == "loguniform" and value[0] <= 0:
            raise ValueError(f"loguniform needs low > 0, got {value[0]}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in DISTRIBUTIONS if getattr(self, k) is not None)

    @property
    def values(self) -> Any:
        return getattr(self, self.kind)


class AshaConfig(Section):
    grace_period: int = Field(1, ge=1, description="Evaluations every trial gets before ASHA may stop it.")
    reduction_factor: float = Field(3.0, gt=1, description="ASHA keeps the top 1/reduction_factor at each rung.")


class MedianConfig(Section):
    grace_period: int = Field(1, ge=1, description="Evaluations before the median rule may stop a trial.")
    min_samples_required: int = Field(3, ge=1, description="Trials that must have reported before the rule applies.")


class PBTConfig(Section):
    perturbation_interval: int = Field(1, ge=1, description="Evaluations between exploit/explore steps.")
    quantile_fraction: float = Field(0.25, gt=0, le=0.5, description="Bottom fraction that copies from the top fraction.")
    resample_probability: float = Field(0.25, ge=0, le=1, description="Chance a mutated value is resampled instead of scaled.")
    synch: bool = Field(False, description="Synchronous PBT: members wait at each perturbation point until the whole population reaches it (exploits no longer depend on timing; slots idle while they wait).")


# Fields PBT may change mid-trial: they live in the optimizers and EMA, which a restore re-applies.
PBT_MUTABLE = frozenset({"train.lr_g", "train.lr_d", "train.beta1", "train.beta2", "train.n_critic",
                         "train.penalty_weight", "train.ema_decay",
                         "train.lambda_l1", "train.lambda_cycle", "train.lambda_identity"})  # translation loss weights


class SearchConfig(Section):
    algorithm: Literal["random", "grid", "optuna"] = Field("random", description="How configurations are proposed: random, grid (every choice) or optuna (multivariate TPE, learning from the reports so far).")
    scheduler: Literal["fifo", "asha", "median", "pbt"] = Field("asha", description="Trial scheduler: fifo runs all to the end, asha/median stop poor trials early, pbt mutates and copies winners.")
    num_samples: int = Field(8, ge=1, description="Configurations to try (each grid point is repeated this many times).")
    seeds: int = Field(1, ge=1, description="Seeds per configuration; configurations rank by their median score, diverged seeds counting as worst.")
    random_seed: int = Field(0, ge=0, description="Seed of the search itself (which configurations are sampled).")
    metric: str = Field("auto", description="Metric the search optimises: auto = the data kind's default (images: fd_own, or fid with metrics.features inception; points: reverse_kl). The old fid/kid of the own network are read as fd_own/kd_own, with a warning.")
    mode: Optional[Literal["min", "max"]] = Field(None, description="Whether lower or higher is better; null = the metric's natural direction.")
    score: Literal["best", "last"] = Field("best", description="Which evaluation stands for a trial (its score, and the checkpoint registered): best = its best evaluation, last = its final one, which ranks configurations that stay good above ones that peak and fall apart.")
    space: dict[str, Distribution] = Field(
        default_factory=dict,
        description="Searched fields: dotted spec path (e.g. train.lr_g) -> distribution. Join paths with ',' to search them together as tuples.",
    )
    max_concurrent: Optional[int] = Field(None, ge=1, description="Cap on trials running at once; null = as many as resources allow. PBT ignores it: its whole population stays live, resources bound how many train at once.")
    asha: AshaConfig = Field(default_factory=AshaConfig, description="ASHA parameters (scheduler: asha).")
    median: MedianConfig = Field(default_factory=MedianConfig, description="Median stopping rule parameters (scheduler: median).")
    pbt: PBTConfig = Field(default_factory=PBTConfig, description="Population based training parameters (scheduler: pbt).")

    @field_validator("space")
    @classmethod
    def _no_search_of_search(cls, space: dict[str, Distribution]) -> dict[str, Distribution]:
        for key in space:
            for path in key.split(","):
                if path.strip().split(".")[0] not in ("data", "model", "train"):
                    raise ValueError(f"{key!r}: only data.*, model.* and train.* fields can be searched")
        return space

    @model_validator(mode="after")
    def _pbt_mutates_only_optimizer_state(self) -> "SearchConfig":
        if self.scheduler == "pbt":
            fixed = [k for k in self.space for p in k.split(",") if p.strip() not in PBT_MUTABLE]
            if fixed:
                raise ValueError(f"scheduler pbt can only mutate {', '.join(sorted(PBT_MUTABLE))}; "
                                 f"move {fixed[0]!r} out of search.space or use another scheduler")
        if self.algorithm == "optuna" and any(d.kind == "grid" for d in self.space.values()):
            raise ValueError("algorithm optuna samples its own values; use choice instead of grid")
        return self


class ResourcesConfig(Section):
    cpus_per_trial: float = Field(1.0, gt=0, description="CPUs reserved for each trial (fractions allowed).")
    gpus_per_trial: float = Field(0.0, ge=0, description="GPUs reserved for each trial (fractions pack trials onto one GPU).")
    workers_per_trial: int = Field(1, ge=1, description="Training processes per trial; >1 runs DDP through a Ray TorchTrainer.")
    max_failures: int = Field(1, ge=0, description="Times a failed trial (or one of its workers) is retried from its last checkpoint.")
    allow_cpu_fallback: bool = Field(False, description="If the cluster has no GPUs, run GPU trials on CPU with a warning instead of failing.")


class StorageConfig(Section):
    uri: Optional[str] = Field(None, description="Where results and checkpoints go (local path or s3://); null = ./ganforge-results/<name>.")
    checkpoints_to_keep: int = Field(2, ge=1, description="Checkpoints kept per trial (the best by the metric and the latest). Ignored by scheduler pbt, which keeps them all: a recipient copies a donor's checkpoint some reports after it was written.")


class RegistryConfig(Section):
    enabled: bool = Field(True, description="Register the best generator in the MLflow Model Registry.")
    model_name: Optional[str] = Field(None, description="Registered model name; null = the job name.")
    alias: str = Field("champion", description="Alias that moves to the new version only if it beats the current holder.")
    margin: float = Field(0.0, ge=0, description="How much better (in metric units) a new version must be to take the alias.")
    tracking_uri: Optional[str] = Field(None, description="MLflow tracking URI; MLFLOW_TRACKING_URI wins; null = sqlite:///./mlflow.db.")
    experiment: Optional[str] = Field(None, description="MLflow experiment; null = ganforge/<name>.")


class ClusterConfig(Section):
    address: Optional[str] = Field(None, description="Ray address to join (ray://, host:port or auto); RAY_ADDRESS wins; null = embedded Ray.")
    dashboard: Optional[str] = Field(None, description="Ray dashboard URL used by `ganforge submit`; --address wins.")


class ReportConfig(Section):
    enabled: bool = Field(True, description="Write the search report, one self-contained HTML page (report/report.html in the run's results, and an artifact of the job's MLflow run), when the search ends; sample grids are stored at each evaluation for it. `ganforge report` builds it at any time.")
    every_s: float = Field(0.0, ge=0, description="Also rebuild the report every this many seconds while the search runs; 0 = only at the end.")


class JobSpec(GANConfig):
    name: str = Field("ganforge-job", description="Job name: lowercase letters, digits and '-' (used in paths and MLflow names).")
    search: SearchConfig = Field(default_factory=SearchConfig, description="What to search and how.")
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig, description="Resources per trial and retries.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Where results and checkpoints are kept.")
    registry: RegistryConfig = Field(default_factory=RegistryConfig, description="MLflow tracking and model registration.")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="Which Ray cluster runs the search.")
    report: ReportConfig = Field(default_factory=ReportConfig, description="The HTML search report.")

    @field_validator("name")
    @classmethod
    def _slug(cls, name: str) -> str:
        if not SLUG.match(name):
            raise ValueError(f"{name!r} is not a safe name: use 1-63 lowercase letters, digits and '-', starting with a letter or digit")
        return name

    @property
    def model_name(self) -> str:
        return self.registry.model_name or self.name

    @property
    def experiment(self) -> str:
        return self.registry.experiment or f"ganforge/{self.name}"

    def gan_config(self) -> GANConfig:
        return GANConfig(data=self.data, model=self.model, train=self.train, metrics=self.metrics)
