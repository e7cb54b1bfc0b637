"""Sample-quality metrics: one suite per data kind, each scoring a generator from a fixed number of samples.

    ev = build_evaluator(info, (x, y), num_samples=2500, cache_dir=storage / "cache")
    scores = ev.evaluate(lambda n: generator(generator.sample_latents(n)))   # {"fid": ..., "kid": ..., ...}
    ev.floors                 # {"fid_floor": ..., ...}: the same scores for real samples
    ev.default_metric         # "fid" (images) or "reverse_kl" (points)
    METRIC_MODES["fid"]       # "min"

Suites register in METRIC_SUITES by data kind: "image" (image.py), "points" (mixture.py), and the translation
suites "paired" and "unpaired" (translation.py), which score a translator on held-out rows instead of samples.
"""
from trainers.metrics import image as _image  # noqa: F401  (registers the "image" suite)
from trainers.metrics import mixture as _mixture  # noqa: F401  (registers the "points" suite)
from trainers.metrics import translation as _translation  # noqa: F401  (registers "paired" and "unpaired")
from trainers.metrics.base import METRIC_MODES, METRIC_SUITES, Evaluator, build_evaluator
from trainers.metrics.grid import save_grid

__all__ = ["METRIC_MODES", "METRIC_SUITES", "Evaluator", "build_evaluator", "save_grid"]
