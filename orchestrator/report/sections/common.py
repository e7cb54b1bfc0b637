"""Small HTML helpers the sections share."""
from __future__ import annotations

import math
from typing import Any, Optional

from orchestrator.report.svg import esc, fmt

STATUS_WORDS = {"done": "finished", "stopped": "stopped early", "diverged": "diverged", "error": "errored",
                "running": "running"}


def value(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return fmt(v) if math.isfinite(v) else "–"
    if isinstance(v, (list, tuple)):
        return ", ".join(value(x) for x in v)
    return "–" if v is None else esc(v)


def param_label(key: str) -> str:
    """train.lr_g -> lr_g; joint keys 'train.loss,train.n_critic' -> 'loss, n_critic'."""
    return ", ".join(p.strip().split(".")[-1] for p in key.split(","))


def caption(text: str) -> str:
    return f'<p class="caption">{text}</p>'


def with_floor(metric: str, floors: dict[str, float]) -> str:
    floor = floors.get(f"{metric}_floor")
    return f"{esc(metric)} (real-vs-real floor {fmt(floor)})" if floor is not None else esc(metric)


def duration(seconds: Optional[float]) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s" if m else f"{s} s"
