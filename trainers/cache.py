"""The one cache root of ganforge: data sets (datasets/), the metrics' feature networks and pulled model versions
(models/) live under it. `cache_dir` when given, else $GANFORGE_CACHE, else ~/.cache/ganforge."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    return Path(cache_dir or os.environ.get("GANFORGE_CACHE") or Path.home() / ".cache" / "ganforge").expanduser()
