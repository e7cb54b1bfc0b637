"""A folder of PNG/JPEG images; class sub-folders become labels (sorted by name).

All images must share one size. They are stored grey (1 channel) when every image is greyscale, else RGB.
Images larger than the tensor limit keep their original PNG/JPEG bytes.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from trainers.data.errors import DataError
from trainers.data.layout import MAX_TENSOR_SIDE, DecodeError, decode_image
from trainers.data.sources.base import SOURCE_FORMATS, SourceData, file_fingerprint

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _classes(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".") and _images_in(d, True))


@SOURCE_FORMATS.register("image-folder")
class ImageFolderFormat:
    description = "folder of PNG/JPEG images; class sub-folders become labels"

    def sniff(self, path: Path) -> bool:
        return path.is_dir() and bool(_images_in(path, recursive=True))

    def open(self, path: Path) -> SourceData:
        classes = _classes(path)
        loose = _images_in(path, recursive=False)
        if classes and loose:
            raise DataError(f"{loose[0]}: image outside the class sub-folders of {path} (move it into a class folder)")
        if classes:
            per_class = [_images_in(d, True) for d in classes]
            files = [f for members in per_class for f in members]
            labels = np.concatenate([np.full(len(members), i, dtype=np.int64) for i, members in enumerate(per_class)])
            names: list[str] | None = [d.name for d in classes]
        else:
            files, labels, names = loose, None, None
        if not files:
            raise DataError(f"{path}: no PNG/JPEG images found")
        shape = _common_shape(files)
        encoded = max(shape[0], shape[1]) > MAX_TENSOR_SIDE
        pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="ganforge-import")

        def read(start: int, stop: int):
            chunk = files[start:stop]
            y = labels[start:stop] if labels is not None else None
            if encoded:
                return [f.read_bytes() for f in chunk], y
            try:
                return np.stack(list(pool.map(lambda f: decode_image(f.read_bytes(), shape), chunk))), y
            except DecodeError as exc:
                raise DataError(f"{path}: {exc}") from None

        return SourceData(
            name=path.name,
            kind="image",
            shape=shape,
            num_rows=len(files),
            read=read,
            labels=names,
            encoded=encoded,
            provenance={"importer": "image-folder", "source": str(path.absolute()), "classes": names},
            fingerprint=file_fingerprint(files),
        )


def _common_shape(files: list[Path]) -> tuple[int, int, int]:
    """(H, W, C) shared by all images, reading headers only."""
    from PIL import Image, UnidentifiedImageError

    first_size, grey, first = None, True, files[0]
    for f in files:
        try:
            with Image.open(f) as im:
                size, mode = im.size, im.mode
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"{f}: not a readable image ({exc})") from None
        if first_size is None:
            first_size = size
        elif size != first_size:
            raise DataError(f"{f}: image is {size[0]}x{size[1]}, but {first.name} is {first_size[0]}x{first_size[1]} (all images must share one size)")
        grey = grey and mode in GREY_MODES
    w, h = first_size
    return (h, w, 1 if grey else 3)
