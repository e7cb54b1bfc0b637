"""A trained generator on disk, with no pickle: safetensors weights plus a JSON record of how to rebuild it.

The JSON names a generator class registered in `trainers.families.base.GENERATORS` and its constructor kwargs, so
loading builds the module from code we ship and only reads tensors from the weights file. Nothing here imports
MLflow or the orchestrator: the registry wraps these files in an MLflow model, and anyone can load them directly.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from trainers.data.info import DataInfo
from trainers.families.base import Generator, build_generator
from trainers.registry import UnknownComponentError

GENERATOR_WEIGHTS = "generator.safetensors"
# generate() always runs the generator on batches of exactly this many rows (the last one padded): CPU kernels
# (MKL, oneDNN) pick their blocking by batch size, so a sample's bits would otherwise depend on how many samples
# were asked for with it.
SAMPLE_BLOCK = 32
GENERATOR_CONFIG = "generator.json"
FORMAT = "ganforge-generator/1"


class GeneratorFormatError(ValueError):
    """A generator directory is missing, incomplete, from another format version, or does not match its code."""


def save_generator(
    generator: Generator, arch: dict, info: DataInfo, out_dir: str | os.PathLike, meta: dict | None = None
) -> Path:
    """Write `generator.safetensors` and `generator.json` into `out_dir` (created if needed) and return the dir.

    Each file is written under a temporary name and renamed, weights first, so a reader that sees the JSON sees
    complete weights (a crash mid-save never leaves a loadable-looking half model).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not isinstance(arch.get("generator"), str) or not isinstance(arch.get("kwargs"), dict):
        raise GeneratorFormatError(f"arch must be {{'generator': class name, 'kwargs': {{...}}}}, got {arch!r}")
    # Clone so tensors that share storage (tied weights, views) serialise; safetensors refuses shared memory.
    tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in generator.state_dict().items()}
    weights = out / GENERATOR_WEIGHTS
    _atomic_write(weights, lambda tmp: save_file(tensors, str(tmp)))
    record = {
        "format": FORMAT,
        "arch": arch,
        "data": info.to_json(),
        "meta": meta or {},
        "weights_sha256": _sha256(weights),
    }
    text = json.dumps(record, indent=2, sort_keys=True, default=str)
    _atomic_write(out / GENERATOR_CONFIG, lambda tmp: tmp.write_text(text))
    return out


def read_generator_config(path: str | os.PathLike) -> dict[str, Any]:
    """The validated JSON record of a generator directory (no weights loaded)."""
    config_path = Path(path) / GENERATOR_CONFIG
    if not config_path.is_file():
        raise GeneratorFormatError(f"{config_path}: not found; a generator directory holds {GENERATOR_CONFIG} and {GENERATOR_WEIGHTS}")
    try:
        record = json.loads(config_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GeneratorFormatError(f"{config_path}: not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise GeneratorFormatError(f"{config_path}: expected a JSON object")
    if record.get("format") != FORMAT:
        raise GeneratorFormatError(f"{config_path}: format {record.get('format')!r} is not supported (expected {FORMAT!r})")
    arch = record.get("arch")
    if not isinstance(arch, dict) or not isinstance(arch.get("generator"), str) or not isinstance(arch.get("kwargs"), dict):
        raise GeneratorFormatError(f"{config_path}: 'arch' must be {{'generator': class name, 'kwargs': {{...}}}}")
    if not isinstance(record.get("data"), dict):
        raise GeneratorFormatError(f"{config_path}: 'data' must be a data set description")
    return record


def load_generator_dir(path: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """Rebuild the generator saved in `path` and load its weights, in eval mode on `device`. Never unpickles.

    The returned module also carries `data_info` (a DataInfo: image or points, shape) and `meta` from the record.
    """
    import trainers.families  # noqa: F401  (registers the shipped generator classes)

    path = Path(path)
    record = read_generator_config(path)
    weights = path / GENERATOR_WEIGHTS
    if not weights.is_file():
        raise GeneratorFormatError(f"{weights}: not found")
    expected = record.get("weights_sha256")
    if expected and _sha256(weights) != expected:
        raise GeneratorFormatError(f"{weights}: checksum does not match {GENERATOR_CONFIG} (corrupt or replaced)")
    try:
        generator = build_generator(record["arch"])
    except UnknownComponentError as exc:
        raise GeneratorFormatError(f"{path / GENERATOR_CONFIG}: {exc}") from None
    except TypeError as exc:  # kwargs that the class does not take
        raise GeneratorFormatError(f"{path / GENERATOR_CONFIG}: arch.kwargs do not fit {record['arch']['generator']}: {exc}") from None
    try:
        generator.load_state_dict(load_file(str(weights), device="cpu"), strict=True)
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise GeneratorFormatError(f"{weights}: weights do not fit {record['arch']['generator']}: {first_line}") from None
    generator.data_info = DataInfo.from_json(record["data"])
    generator.meta = record.get("meta") or {}
    return generator.to(device).eval()


@torch.no_grad()
def generate(
    generator: Generator,
    n: int,
    seed: int = 0,
    class_label: int | None = None,
    truncation: float | None = None,
) -> torch.Tensor:
    """`n` samples in model range (images NCHW in [-1, 1], points N x D) as a float32 CPU tensor.

    Latents are drawn on the CPU from one seeded stream, a whole block of SAMPLE_BLOCK at a time, and the generator
    runs on those fixed blocks, so on one machine a seed gives bit-identical samples whatever `n`: the first 64 of
    `n=1000` are the 64 of `n=64`. Another device draws the same latents; its arithmetic may differ in the last
    bits. Conditional models get `class_label` for every sample, or the
    classes in turn when it is None. `truncation` is passed to generators whose forward takes it (StyleGAN's psi);
    for the others it is the truncation trick on z: latent entries beyond +-truncation are redrawn.
    """
    if getattr(generator, "task", "generation") == "translation":
        raise ValueError("this model is an image-to-image translator: apply it with `ganforge translate MODEL INPUT`")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if truncation is not None and truncation <= 0:
        raise ValueError(f"truncation must be > 0, got {truncation}")
    num_classes = int(getattr(generator, "num_classes", 0) or 0)
    if class_label is not None and num_classes == 0:
        raise ValueError(f"class label {class_label} given, but the model is unconditional")
    if class_label is not None and not 0 <= class_label < num_classes:
        raise ValueError(f"class label {class_label} is out of range: the model has classes 0..{num_classes - 1}")

    rng = torch.Generator().manual_seed(int(seed))
    forward_takes_truncation = "truncation" in inspect.signature(generator.forward).parameters
    kwargs = {"truncation": truncation} if forward_takes_truncation and truncation is not None else {}
    labels = None
    if num_classes:
        labels = torch.full((n,), class_label, dtype=torch.long) if class_label is not None else torch.arange(n) % num_classes

    device = next(iter(generator.parameters()), torch.empty(0)).device
    was_training = generator.training
    generator.eval()
    try:
        chunks = []
        for start in range(0, n, SAMPLE_BLOCK):
            # Every block draws a full block of latents, so block k's draws never depend on n.
            z = generator.sample_latents(SAMPLE_BLOCK, generator=rng, device="cpu")
            if truncation is not None and not forward_takes_truncation:
                z = _truncate_latents(z, truncation, rng)
            y = _pad_rows(labels[start : start + SAMPLE_BLOCK]).to(device) if labels is not None else None
            chunks.append(generator(z.to(device), y, **kwargs).float().cpu())
    finally:
        generator.train(was_training)
    return torch.cat(chunks)[:n]


def _pad_rows(block: torch.Tensor) -> torch.Tensor:
    """`block` padded to SAMPLE_BLOCK rows by repeating its first row (the generator sees a full, valid batch)."""
    missing = SAMPLE_BLOCK - block.shape[0]
    return torch.cat([block, block[:1].expand(missing, *block.shape[1:])]) if missing else block


def to_uint8_images(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Model-range images (NCHW in [-1, 1]) as uint8 N x H x W x C in 0..255."""
    arr = x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    if arr.ndim != 4:
        raise ValueError(f"expected images shaped N x C x H x W, got shape {tuple(arr.shape)}")
    scaled = np.clip(np.rint((arr + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(scaled.transpose(0, 2, 3, 1))


def _truncate_latents(z: torch.Tensor, threshold: float, rng: torch.Generator) -> torch.Tensor:
    z = z.clone()
    for _ in range(100):  # each pass redraws ~P(|z|>t) of the entries; 100 passes leave none for any sane t
        outside = z.abs() > threshold
        if not outside.any():
            break
        z[outside] = torch.randn(int(outside.sum()), generator=rng)
    return z.clamp(-threshold, threshold)


def _atomic_write(target: Path, write) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
