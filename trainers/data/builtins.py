"""Built-in data sets (builtin:NAME, trainers/data/sources/builtin.py) materialised as ordinary Parquet + manifest
under the cache on first use, so training always goes through the same Arrow reading path.

Materialisation is atomic (import into a temp folder, then rename), because concurrent trials in separate processes
may ask for the same data set at the same moment.
"""
from __future__ import annotations

import os
import shutil
import uuid

from trainers.cache import cache_root
from trainers.data.errors import DataError
from trainers.data.importer import import_dataset
from trainers.data.manifest import MANIFEST_NAME
from trainers.data.sources.builtin import BUILTIN_SCHEME, builtin_factory


def materialise_builtin(name: str, cache_dir: str | os.PathLike | None = None) -> str:
    """Path of the built-in data set's Parquet copy under the cache, creating it (atomically) if needed."""
    builtin_factory(name)  # an unknown name fails here, with a "did you mean"
    final = cache_root(cache_dir) / "datasets" / name
    if (final / MANIFEST_NAME).is_file():
        return str(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.parent / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        import_dataset(f"{BUILTIN_SCHEME}{name}", str(temp))
        try:
            os.rename(temp, final)  # atomic; fails if another process got there first
        except OSError:
            if not (final / MANIFEST_NAME).is_file():
                raise DataError(f"{final}: exists but holds no {MANIFEST_NAME}; remove it to rebuild {BUILTIN_SCHEME}{name}") from None
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return str(final)
