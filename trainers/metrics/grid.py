"""Pictures a person can look at, drawn with PIL alone: a sample grid (images) or scatter plot (2-D points), and
labelled pictures side by side (`ganforge models compare`)."""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from trainers.registry import Registry

GRID_PADDING = 2  # pixels between tiles and around the grid
PADDING_GREY = 128  # mid grey separates tiles whether their background is black or white
MIN_TILE = 32  # tiny images (8x8 digits) are upscaled by a whole factor, nearest neighbour, to at least this size
SCATTER_SIZE = 512
SCATTER_MARGIN = 0.15  # share of the data extent left blank around it
DOT_TRANSMITTANCE = 0.7  # light a single dot lets through; overlapping dots darken

Painter = Callable[..., Image.Image]
GRID_PAINTERS: Registry[Painter] = Registry("sample grid kind")


def grid_size(num: int, height: int, width: int, nrow: int | None = None) -> tuple[int, int]:
    """(width, height) in pixels of the grid `save_grid` draws for `num` images of height x width."""
    cols = nrow or math.ceil(math.sqrt(num))
    rows = math.ceil(num / cols)
    scale = max(1, MIN_TILE // max(height, width))
    return (cols * (width * scale + GRID_PADDING) + GRID_PADDING, rows * (height * scale + GRID_PADDING) + GRID_PADDING)


@GRID_PAINTERS.register("paired")  # two-domain rows are A|B images side by side: shown as they are
@GRID_PAINTERS.register("unpaired")
@GRID_PAINTERS.register("image")
def paint_image_grid(samples: torch.Tensor, nrow: int | None = None, **_: Any) -> Image.Image:
    """Images N x C x H x W in [-1, 1] (C = 1 or 3) as one grid, row by row."""
    if samples.ndim != 4 or samples.shape[1] not in (1, 3) or len(samples) == 0:
        raise ValueError(f"image samples must be N x C x H x W with N >= 1, C = 1 or 3; got shape {tuple(samples.shape)}")
    if nrow is not None and nrow < 1:
        raise ValueError(f"nrow must be at least 1, got {nrow}")
    n, c, h, w = samples.shape
    scale = max(1, MIN_TILE // max(h, w))
    pixels = ((samples.detach().float().cpu().nan_to_num(0.0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    pixels = pixels.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3).permute(0, 2, 3, 1).numpy()
    cols = nrow or math.ceil(math.sqrt(n))
    width, height = grid_size(n, h, w, cols)
    canvas = np.full((height, width, c), PADDING_GREY, dtype=np.uint8)
    th, tw = h * scale, w * scale
    for i in range(n):
        top = GRID_PADDING + (i // cols) * (th + GRID_PADDING)
        left = GRID_PADDING + (i % cols) * (tw + GRID_PADDING)
        canvas[top : top + th, left : left + tw] = pixels[i]
    return Image.fromarray(canvas[..., 0] if c == 1 else canvas)  # uint8 H x W -> "L", H x W x 3 -> "RGB"


@GRID_PAINTERS.register("points")
def paint_scatter(
    samples: torch.Tensor, means: Sequence[Sequence[float]] | None = None, **_: Any
) -> Image.Image:
    """2-D points as grey dots on white, darker where they pile up; mixture means, when given, as red crosses.

    The view fits the means when given (so a collapsed or drifting sampler shows as such), else the samples."""
    if samples.ndim != 2 or samples.shape[1] != 2:
        raise ValueError(f"point samples must be N x 2, got shape {tuple(samples.shape)}")
    pts = samples.detach().double().cpu()
    pts = pts[torch.isfinite(pts).all(dim=1)]
    centres = torch.tensor(means, dtype=torch.float64).reshape(-1, 2) if means is not None else torch.empty(0, 2)
    view = centres if len(centres) else pts if len(pts) else torch.zeros(1, 2, dtype=torch.float64)
    lo, hi = view.min(dim=0).values, view.max(dim=0).values
    middle, half = (lo + hi) / 2, ((hi - lo).max() / 2).clamp_min(1e-3) * (1 + 2 * SCATTER_MARGIN)

    def to_pixels(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xy = ((p - middle + half) / (2 * half) * (SCATTER_SIZE - 1)).round().long()
        return SCATTER_SIZE - 1 - xy[:, 1], xy[:, 0]  # (row, column): image rows grow downwards

    # Count the dots (3x3 px each) covering each pixel; each one lets DOT_TRANSMITTANCE of the light through.
    rows, cols = to_pixels(pts)
    inside = (rows >= 0) & (rows < SCATTER_SIZE) & (cols >= 0) & (cols < SCATTER_SIZE)
    hits = torch.zeros(SCATTER_SIZE + 2, SCATTER_SIZE + 2, dtype=torch.float64)
    hits.index_put_((rows[inside] + 1, cols[inside] + 1), torch.ones(int(inside.sum()), dtype=torch.float64), accumulate=True)
    cover = sum(hits[1 + dy : 1 + dy + SCATTER_SIZE, 1 + dx : 1 + dx + SCATTER_SIZE] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    shade = (255 * DOT_TRANSMITTANCE**cover).round().to(torch.uint8).numpy()
    image = Image.fromarray(np.repeat(shade[..., None], 3, axis=2))  # uint8 H x W x 3 -> "RGB"

    marks = ImageDraw.Draw(image)
    for row, col in zip(*(t.tolist() for t in to_pixels(centres))):
        marks.line((col - 5, row, col + 5, row), fill=(220, 0, 0), width=1)
        marks.line((col, row - 5, col, row + 5), fill=(220, 0, 0), width=1)
    return image


def save_grid(samples: torch.Tensor, kind: str, path: str | os.PathLike, nrow: int | None = None, **options: Any) -> Path:
    """Draw samples of data kind `kind` ("image" or "points") to the PNG file `path`, written atomically.

    Images: a grid of `nrow` columns (default: square-ish). Points: a scatter plot; pass `means=[[x, y], ...]` to mark
    the mixture means.
    """
    image = GRID_PAINTERS.get(kind)(samples, nrow=nrow, **options)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        image.save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def side_by_side(grids: list[tuple[str, Path | None]], out: Path) -> None:
    """Labelled pictures in one row, left to right (`ganforge models compare`); a missing one is a blank panel."""
    panels = []
    for label, path in grids:
        img = Image.open(path).convert("RGB") if path else Image.new("RGB", (128, 128), "white")
        panels.append((label if path else f"{label} (no grid)", img))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widths = [max(img.width, int(measure.textlength(label)) + 4) for label, img in panels]
    header, gap = 16, 8
    canvas = Image.new("RGB", (sum(widths) + gap * (len(panels) - 1), max(img.height for _, img in panels) + header), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for (label, img), width in zip(panels, widths):
        draw.text((x + 2, 2), label, fill="black")
        canvas.paste(img, (x, header))
        x += width + gap
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
