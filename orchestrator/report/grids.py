"""Sample grids over time: every evaluation of every trial draws the same latents (seed FIXED_Z_SEED) and stores a
small picture beside the run, so the report can show how samples of one z change across steps and trials."""
from __future__ import annotations

import io
import logging
from typing import Any

from orchestrator.storage import list_names, read_bytes, write_bytes

log = logging.getLogger(__name__)

GRIDS_FOLDER = "grids"  # under the run's report folder: grids/<trial id>/<step>.png
FIXED_Z_SEED = 0  # the checkpoints' grid.png uses the same seed: one z for every trial and step
SAMPLES_BY_KIND = {"image": 16, "paired": 16, "unpaired": 16, "points": 1000}  # a 4x4 grid of images; a scatter needs many points to show modes
THUMBNAIL_PX = 160  # scatter plots are drawn at 512 px; a report shows many of them side by side


def grid_uri(report_storage: str, trial_id: str, step: int) -> str:
    return f"{report_storage}/{GRIDS_FOLDER}/{trial_id}/{step:07d}.png"


def grid_png(trainer: Any) -> bytes:
    """The trainer's best generator on the fixed latents, as PNG bytes."""
    from PIL import Image, ImageFilter

    from trainers.metrics.grid import GRID_PAINTERS

    kind = trainer.info.kind
    samples = trainer.best_samples(SAMPLES_BY_KIND[kind], seed=FIXED_Z_SEED)
    means = (trainer.info.extra.get("mixture") or {}).get("means")
    image = GRID_PAINTERS.get(kind)(samples, means=means)
    if max(image.size) > THUMBNAIL_PX and kind == "points":
        # Thicken the dots first: a plain downscale would average 3 px dots away into a faint haze.
        image = image.filter(ImageFilter.MinFilter(5)).resize((THUMBNAIL_PX, THUMBNAIL_PX), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def record_grid(trainer: Any, report_storage: str, trial_id: str) -> None:
    """Store this evaluation's grid; a storage hiccup costs a picture, never the trial."""
    try:
        write_bytes(grid_uri(report_storage, trial_id, trainer.step), grid_png(trainer))
    except Exception as exc:  # noqa: BLE001 - the report is optional, training is not
        log.warning("trial %s: sample grid for the report not stored: %s", trial_id, exc)


def stored_grids(report_storage: str, trial_id: str) -> list[tuple[int, bytes]]:
    """(step, PNG bytes) of a trial's stored grids, in step order."""
    folder = f"{report_storage}/{GRIDS_FOLDER}/{trial_id}"
    out = []
    for name in list_names(folder):
        stem = name.removesuffix(".png")
        if stem.isdigit() and (data := read_bytes(f"{folder}/{name}")) is not None:
            out.append((int(stem), data))
    return out
