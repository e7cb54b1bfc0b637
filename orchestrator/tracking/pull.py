"""Pull a registered generator back: into a folder (`pull_model`, also a complete MLflow model) or as an eval-mode
`nn.Module` (`load_generator`, downloads cached per version). Every artifact path is listed and checked before
anything is downloaded, downloads land atomically, and loading reads tensors only: nothing on this path unpickles.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from orchestrator.errors import RegistryError, RegistryUsageError
from orchestrator.tracking.client import call, client_for, fs_name, resolve_tracking_uri
from orchestrator.tracking.versions import (GENERATOR_ARTIFACT, GRID_FILE, JOB_FILE, LINEAGE_FILE,
                                            check_artifact_paths, list_files, parse_model_uri, resolve_version,
                                            version_artifact_repo)
from trainers.cache import cache_root


def pull_model(uri: str, out_dir, tracking_uri: str | None = None) -> Path:
    """Download a registered version into `out_dir` and return it.

    `out_dir` holds generator.safetensors, generator.json, grid.png, job.yaml and lineage.json at its top, and is
    also the complete MLflow model (MLmodel, pyfunc code, artifacts/). It must be absent, empty, or a previous
    pull (which is replaced).
    """
    tracking_uri = tracking_uri or resolve_tracking_uri(None)
    ref = parse_model_uri(uri)
    client = client_for(tracking_uri)
    mv = resolve_version(client, ref, tracking_uri)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / "MLmodel").is_file():
        raise RegistryUsageError(f"{out} exists and is not a pulled model; choose another --out or empty it")
    _download_version(client, tracking_uri, mv, out)
    return out


def load_generator(uri: str, device: str = "cpu", tracking_uri: str | None = None):
    """An eval-mode generator `nn.Module` from a registry URI (or a pulled directory). Downloads are cached.

    The cache holds one folder per model version under $GANFORGE_CACHE/models (default ~/.cache/ganforge/models);
    an alias is resolved on every call, so a moved alias is followed, and a version is downloaded once.
    """
    from trainers.export import load_generator_dir

    local = Path(uri)
    if "://" not in uri and local.is_dir():
        return _load_local(local, device)
    tracking_uri = tracking_uri or resolve_tracking_uri(None)
    ref = parse_model_uri(uri)
    client = client_for(tracking_uri)
    mv = resolve_version(client, ref, tracking_uri)
    key = hashlib.sha256(f"{tracking_uri}\n{mv.name}\n{mv.version}\n{mv.source}".encode()).hexdigest()[:16]
    cached = cache_root() / "models" / fs_name(mv.name) / f"v{mv.version}-{key}"
    if not (cached / "artifacts" / GENERATOR_ARTIFACT / "generator.json").is_file():
        _download_version(client, tracking_uri, mv, cached, keep_existing=True)
    try:
        return load_generator_dir(generator_dir(cached), device=device)
    except ValueError as exc:
        raise RegistryError(f"{ref}: {exc}") from None


def _load_local(path: Path, device: str):
    from trainers.export import load_generator_dir

    try:
        return load_generator_dir(generator_dir(path), device=device)
    except ValueError as exc:
        raise RegistryError(str(exc)) from None


def generator_dir(model_dir) -> Path:
    """Where the generator files of a pulled model (or a plain generator directory) are."""
    path = Path(model_dir)
    for candidate in (path, path / "artifacts" / GENERATOR_ARTIFACT):
        if (candidate / "generator.json").is_file():
            return candidate
    raise RegistryError(f"{path}: no generator found (expected artifacts/{GENERATOR_ARTIFACT}/generator.json)")


def _download_version(client, tracking_uri: str, mv, out: Path, keep_existing: bool = False) -> None:
    """Download every artifact of `mv` into `out`, atomically: a staging folder beside it is renamed at the end.

    With `keep_existing` (the cache), a copy that another process finished first wins and ours is discarded.
    """
    what = f"{mv.name}/{mv.version}"
    repo = version_artifact_repo(client, tracking_uri, mv)
    files = call(tracking_uri, f"listing {what}", lambda: list_files(repo))
    check_artifact_paths(files, what)
    if f"artifacts/{GENERATOR_ARTIFACT}/generator.json" not in files:
        raise RegistryError(f"{what} is not a ganforge generator (no artifacts/{GENERATOR_ARTIFACT}/generator.json)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.pull-", dir=out.parent))
    try:
        for rel in files:
            call(tracking_uri, f"downloading {what}", lambda rel=rel: repo.download_artifacts(rel, dst_path=str(staging)))
        for path in staging.rglob("*"):
            if path.is_symlink():
                raise RegistryError(f"{what}: refusing symbolic link {path.relative_to(staging)}")
        _expose_at_top(staging)
        if keep_existing:
            try:
                os.rename(staging, out)
            except OSError:
                if not (out / "MLmodel").is_file():
                    raise
                shutil.rmtree(staging, ignore_errors=True)
        else:
            _replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _expose_at_top(model_dir: Path) -> None:
    """Hard-link the generator, grid, job YAML and lineage to the top of a pulled model.

    `load_generator_dir(out)` and people then find them at `out/generator.safetensors` etc., while `out` stays a
    complete MLflow model (`mlflow.pyfunc.load_model(out)`); links cost no space (copies where links fail).
    """
    artifacts = model_dir / "artifacts"
    sources = [*sorted((artifacts / GENERATOR_ARTIFACT).iterdir()), *(artifacts / n for n in (GRID_FILE, JOB_FILE, LINEAGE_FILE))]
    for source in sources:
        target = model_dir / source.name
        if not source.is_file() or target.exists():
            continue
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)


def _replace_dir(new: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
