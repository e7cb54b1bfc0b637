"""What each metric suite and feature space declares, with no torch in sight: the one place metric names live.

A suite declares, for its data kind, every metric it reports with its natural direction, the metric `search.metric:
auto` means, and the module that implements it (imported only when a suite is built). Image metrics computed in a
feature space carry that space in their name: the suite writes `{fd}` / `{kd}` and each feature space fills them in
(`fid`/`kid` for Inception only, `fd_own`/`kd_own` for the data set's own network), so a score can never pass for
another space's. `ganforge validate` and the search read this module alone; the suite modules register their
evaluators against it (`METRIC_SUITES` refuses a kind not declared here).

A new suite is one `declare_suite(...)` call below and its module; a new feature space is one `declare_features`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

from trainers.registry import Registry


@dataclass(frozen=True)
class FeatureSpaceInfo:
    """A feature extractor image metrics may be computed in (`metrics.features`)."""

    names: Mapping[str, str]  # the suite's placeholders -> this space's metric names: {"fd": "fid", "kd": "kid"}
    resize: str  # how samples reach the network: recorded beside every score
    description: str
    weights_file: Optional[str] = None  # the pretrained weights it needs (None: trained on the data set itself)

    @property
    def fitted_on_data(self) -> bool:
        """Whether its network learns from the data set, so scores must use rows it never saw (split.py)."""
        return self.weights_file is None


@dataclass(frozen=True)
class MetricSuiteInfo:
    module: str  # the module whose import registers the evaluator in METRIC_SUITES
    default: str  # what `search.metric: auto` means for this kind of data (may hold a placeholder)
    modes: Mapping[str, str]  # every metric it reports (placeholders allowed) -> "min" or "max"
    uses_features: bool = False  # whether `metrics.features` applies
    # Names earlier versions reported, still accepted in job files: old name -> the metric it meant.
    renamed: Mapping[str, str] = field(default_factory=dict)

    def metric_modes(self, features: str) -> dict[str, str]:
        """{metric: direction} as reported with feature space `features`."""
        return {_fill(name, features): mode for name, mode in self.modes.items()}

    def default_metric(self, features: str) -> str:
        return _fill(self.default, features)

    def all_modes(self) -> dict[str, str]:
        """Every name the suite may report, in any feature space."""
        spaces = FEATURE_SPACES if self.uses_features else ["own"]
        return {name: mode for space in spaces for name, mode in self.metric_modes(space).items()}


FEATURE_SPACES: Registry[FeatureSpaceInfo] = Registry("metrics.features")
METRIC_SUITE_INFO: Registry[MetricSuiteInfo] = Registry("metric suite for data kind")


def declare_features(name: str, info: FeatureSpaceInfo) -> None:
    FEATURE_SPACES.register(name)(info)


def declare_suite(kind: str, info: MetricSuiteInfo) -> None:
    METRIC_SUITE_INFO.register(kind)(info)


def _fill(name: str, features: str) -> str:
    return name.format_map(FEATURE_SPACES.get(features).names) if "{" in name else name


INCEPTION_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"  # the TTUR graph as ported by pytorch-fid

declare_features("own", FeatureSpaceInfo(
    names={"fd": "fd_own", "kd": "kd_own"},
    resize="none (native resolution)",
    description="a small network trained on a fixed, seeded split of the data set itself (classifier when labelled, "
                "autoencoder otherwise); its scores compare runs on this data set, not with papers",
))
declare_features("inception", FeatureSpaceInfo(
    names={"fd": "fid", "kd": "kid"},
    resize="clean-fid legacy_pytorch: [0,255] floats, torch bilinear (align_corners=False) to 299x299, no quantisation",
    description="InceptionV3 pool3 (2048-d) with the TTUR/pytorch-fid weights: the FID papers report",
    weights_file=INCEPTION_WEIGHTS,
))

declare_suite("image", MetricSuiteInfo(
    module="trainers.metrics.image",
    default="{fd}",
    modes={"{fd}": "min", "{kd}": "min", "precision": "max", "recall": "max", "density": "max", "coverage": "max",
           "class_coverage": "max", "class_kl": "min"},
    uses_features=True,
    renamed={"fid": "{fd}", "kid": "{kd}"},  # before feature spaces, `fid`/`kid` were the own network's
))
declare_suite("points", MetricSuiteInfo(
    module="trainers.metrics.mixture",
    default="reverse_kl",
    modes={"modes": "max", "hq": "max", "reverse_kl": "min", "mode_hq": "max", "balanced_mode_hq": "max",
           "spread_mode_hq": "max"},  # mode_spread is reported too, but best at 1.0: not a search metric
))
# Translation suites (translation.py) score a translator on held-out rows: paired data by the error against the
# aligned target, unpaired data by the Frechet distance in each target domain's feature space (both ways). Those
# feature spaces are own networks fitted on the domain's training rows, hence `fd_own` (no other space applies).
declare_suite("paired", MetricSuiteInfo(
    module="trainers.metrics.translation",
    default="fd_own",
    modes={"fd_own": "min", "l1": "min", "psnr": "max", "ssim": "max"},
))
declare_suite("unpaired", MetricSuiteInfo(
    module="trainers.metrics.translation",
    default="fd_own",
    modes={"fd_own": "min", "fd_own_ab": "min", "fd_own_ba": "min", "cycle_error": "min", "truth_l1": "min"},
))

RENAMED_METRICS = {old for kind in METRIC_SUITE_INFO for old in METRIC_SUITE_INFO.get(kind).renamed}

# Direction of every metric any suite reports in any feature space: what a search passes as `mode`.
METRIC_MODES: dict[str, str] = {
    name: mode for kind in METRIC_SUITE_INFO for name, mode in METRIC_SUITE_INFO.get(kind).all_modes().items()
}


def resolve_metric(metric: str, kind: str, features: str = "own") -> tuple[str, Optional[str]]:
    """The metric a search ranks by on `kind` data, and a note when an old name was mapped to its new one."""
    suite = METRIC_SUITE_INFO.get(kind)
    space = features if suite.uses_features else "own"
    if metric == "auto":
        return suite.default_metric(space), None
    if metric in suite.renamed:
        meant = _fill(suite.renamed[metric], space)
        if meant != metric:
            return meant, (f"search.metric: {metric!r} now names the Inception score only; with metrics.features "
                           f"{space} it is {meant!r}, which this job ranks by (rename it in the job file)")
    return metric, None


def scoring_plan(kind: str, features: str, weights: Optional[str], eval_samples: int, num_rows: int) -> dict:
    """How a job's samples will be scored, known before any trial runs (the run record and the report show it)."""
    from trainers.metrics.split import fit_size, reference_size

    suite = METRIC_SUITE_INFO.get(kind)
    space = FEATURE_SPACES.get(features) if suite.uses_features else None
    held_out = space is not None and space.fitted_on_data
    plan = {"suite": kind, "n_fake": eval_samples, "n_real": reference_size(num_rows, eval_samples, held_out)}
    if space is not None:
        plan.update(features=features, resize=space.resize, description=space.description)
        if space.weights_file:
            plan.update(weights_file=space.weights_file, weights=weights or "$GANFORGE_WEIGHTS or the cache")
        else:
            plan["fit_rows"] = fit_size(num_rows)
    return plan
