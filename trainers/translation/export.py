"""Applying an exported translator: read images, translate them, write them, with no pickle anywhere.

A translator is saved like every ganforge generator (trainers/export.py: safetensors weights + a JSON record naming
the registered `Translator` class) with `meta.task = "translation"`, so the registry stores and serves it
unchanged. Inputs are PNG/JPEG files, folders of them or .npy arrays (N x H x W [x C], uint8 or floats in [0, 1]),
at the size of one domain of the data set it was trained on.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from trainers.data.sources.folder import IMAGE_SUFFIXES
from trainers.export import SAMPLE_BLOCK, _pad_rows, load_generator_dir, to_uint8_images


class TranslatorInputError(ValueError):
    """An input file, folder or direction that the translator cannot take (the message names it)."""


def is_translator(module: torch.nn.Module) -> bool:
    return getattr(module, "task", "generation") == "translation"


def load_translator_dir(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The translator saved in `path` (eval mode); refuses a sampling generator."""
    module = load_generator_dir(path, device=device)
    if not is_translator(module):
        raise TranslatorInputError(f"{path}: holds a generator that samples from noise, not a translator "
                                   "(use `ganforge sample`)")
    return module


def domain_shape(translator: torch.nn.Module) -> tuple[int, int, int]:
    """(H, W, C) of one domain's images: half the width of the A|B rows it was trained on."""
    height, width, channels = translator.data_info.shape
    return height, width // 2, channels


@torch.no_grad()
def translate(translator: torch.nn.Module, x: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
    """N x C x H x W model-range images translated in `direction`, on fixed blocks of SAMPLE_BLOCK rows (an
    image's result never depends on what it was batched with), as a float32 CPU tensor."""
    if direction not in translator.directions:
        raise TranslatorInputError(f"--direction {direction}: this translator maps {' and '.join(translator.directions)}")
    device = next(translator.parameters()).device
    out = [translator(_pad_rows(block).to(device), direction)[: len(block)].float().cpu()
           for block in x.split(SAMPLE_BLOCK)]
    return torch.cat(out)


def read_inputs(path: str | os.PathLike, shape: tuple[int, int, int]) -> tuple[torch.Tensor, list[str]]:
    """Images at `path` (a PNG/JPEG, a folder of them, or a .npy) as model-range N x C x H x W, and their names."""
    from trainers.data.layout import DecodeError, decode_image

    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise TranslatorInputError(f"{path}: no PNG/JPEG images in this folder")
    elif path.suffix.lower() == ".npy" and path.is_file():
        x = _from_array(path, shape)
        return x, [f"{i:05d}" for i in range(len(x))]
    elif path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
        files = [path]
    else:
        raise TranslatorInputError(f"{path}: not a .png/.jpg image, a folder of them or a .npy array")
    images = []
    for f in files:
        try:
            images.append(decode_image(f.read_bytes(), shape))
        except DecodeError as exc:
            raise TranslatorInputError(f"{f}: {exc} (the model translates {shape[1]}x{shape[0]} images)") from None
    return _model_range(np.stack(images)), [f.stem for f in files]


def _from_array(path: Path, shape: tuple[int, int, int]) -> torch.Tensor:
    from trainers.data.sources.base import normalise_samples

    try:
        array = np.load(path, allow_pickle=False)  # never unpickle user files
        images, kind = normalise_samples(array, str(path))
    except ValueError as exc:
        raise TranslatorInputError(f"{path}: {exc}") from None
    if kind != "image" or images.shape[1:] != shape:
        raise TranslatorInputError(f"{path}: holds {tuple(array.shape)}; the model translates N x {shape[0]} x {shape[1]}"
                                   f" x {shape[2]} images")
    return _model_range(images)


def _model_range(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0)


def write_outputs(images: torch.Tensor, names: list[str], out: str | os.PathLike, inputs: torch.Tensor) -> Path:
    """.npy: uint8 N x H x W x C; .png: one image, or a grid of input | output pairs; else a folder of PNGs."""
    from PIL import Image

    from trainers.metrics.grid import save_grid

    out = Path(out)
    pixels = to_uint8_images(images)
    if out.suffix.lower() == ".npy":
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, pixels)
    elif out.suffix.lower() == ".png":
        if len(images) == 1:
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels[0, ..., 0] if pixels.shape[-1] == 1 else pixels[0]).save(out)
        else:
            save_grid(torch.cat([inputs, images.clamp(-1, 1)], dim=-1), "image", out)
    else:
        out.mkdir(parents=True, exist_ok=True)
        for name, image in zip(names, pixels):
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(out / f"{name}.png")
    return out
