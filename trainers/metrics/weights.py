"""Where the Inception weights file is: found locally, or downloaded once into the cache. No torch needed.

Looked for, in order, at `metrics.weights` (a file, or a folder holding it), `$GANFORGE_WEIGHTS` (likewise) and the
cache's `weights/` folder; when none of them was configured and the cache lacks it, downloaded from pytorch-fid's
release into the cache (checked against the digest in its name) when the network allows. Preflight calls this too,
so a missing file fails a job before any trial starts.
"""
from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path
from typing import Optional

from trainers.metrics.declared import INCEPTION_WEIGHTS

WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{INCEPTION_WEIGHTS}"
WEIGHTS_ENV = "GANFORGE_WEIGHTS"
TTUR_SHA256_PREFIX = INCEPTION_WEIGHTS.rsplit("-", 1)[1].split(".")[0]  # torch.hub's convention: the file's digest
DOWNLOAD_TIMEOUT_S = 20


class InceptionWeightsMissing(FileNotFoundError):
    """No usable weights file: the message names the file expected and where it was looked for."""


def _candidates(configured: Optional[str], cache_dir: Optional[Path]) -> list[tuple[str, Path]]:
    """(what named it, file path) in the order they are tried."""
    found = []
    for source, value in (("metrics.weights", configured), (f"${WEIGHTS_ENV}", os.environ.get(WEIGHTS_ENV))):
        if value:
            path = Path(value).expanduser()
            found.append((source, path / INCEPTION_WEIGHTS if path.is_dir() else path))
    if cache_dir is not None:
        found.append(("the cache", cache_dir / "weights" / INCEPTION_WEIGHTS))
    return found


def find_weights(configured: Optional[str], cache_dir: Optional[Path], download: bool = True) -> Path:
    """The weights file to use; downloads into the cache only when nothing was configured and the network allows."""
    candidates = _candidates(configured, cache_dir)
    for _, path in candidates:
        if path.is_file():
            return path
    explicit = [c for c in candidates if c[0] != "the cache"]
    if download and not explicit and cache_dir is not None:
        target = cache_dir / "weights" / INCEPTION_WEIGHTS
        try:
            return _download(target)
        except OSError as exc:
            reason = f"; download from {WEIGHTS_URL} failed: {exc}"
    else:
        reason = ""
    looked = ", ".join(f"{source} ({path})" for source, path in candidates) or "nowhere (no cache folder)"
    raise InceptionWeightsMissing(
        f"metrics.features inception needs the Inception weights file {INCEPTION_WEIGHTS} (pytorch-fid's port of "
        f"TTUR's graph, {WEIGHTS_URL}); not found at {looked}{reason}. Put the file there, or set metrics.weights "
        f"or ${WEIGHTS_ENV} to the file or its folder"
    )


def _download(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with urllib.request.urlopen(WEIGHTS_URL, timeout=DOWNLOAD_TIMEOUT_S) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        if not sha256_of(tmp).startswith(TTUR_SHA256_PREFIX):
            raise OSError(f"the downloaded file's SHA-256 does not start with {TTUR_SHA256_PREFIX}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
