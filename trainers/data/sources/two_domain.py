"""Two-domain (image-to-image translation) sources: pix2pix's A|B folders and CycleGAN's trainA/trainB folders.

Both are stored in the ordinary layout, one image per row: domain A on the left, domain B on the right (pix2pix's
own side-by-side format), so they stream, shuffle, shard and resume like every data set. The manifest's kind says
whether a row's halves are an aligned pair ("paired") or independent draws from each domain ("unpaired", row i =
A[i mod nA] | B[perm(i) mod nB]: CycleGAN's losses never relate a row's two halves, so a fixed random pairing is
as good as a fresh one each epoch). `extra["translation"]` names the domains and the held-out sub-data set
(test/val pairs, imported beside it) that translation metrics score on.

    ganforge data import edges2shoes/ DEST --format pix2pix     # train/ (val/ or test/ held out), A|B images
    ganforge data import horse2zebra/ DEST --format cyclegan    # trainA/ trainB/ (testA/ testB/ held out)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from trainers.data.errors import DataError
from trainers.data.layout import MAX_TENSOR_SIDE, DecodeError, decode_image
from trainers.data.sources.base import SOURCE_FORMATS, SourceData, file_fingerprint, normalise_samples
from trainers.data.sources.folder import IMAGE_SUFFIXES, _common_shape

HELDOUT = "heldout"  # sub-folder of a translation data set holding its held-out rows
PAIRING_SEED = 20170330  # CycleGAN's arXiv date: fixes the B half of each unpaired row


def translation_extra(heldout: bool) -> dict[str, Any]:
    return {"translation": {"domains": ["A", "B"], "layout": "side-by-side", "heldout": HELDOUT if heldout else None}}


def split_halves(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, 2W, C) side-by-side rows -> the A and B halves, each (N, H, W, C)."""
    width = rows.shape[2] // 2
    return rows[:, :, :width], rows[:, :, width:]


def two_domain_arrays(
    name: str,
    a: np.ndarray,
    b: np.ndarray,
    *,
    paired: bool,
    where: str,
    labels: np.ndarray | None = None,
    label_names: list[str] | None = None,
    heldout: SourceData | None = None,
    provenance: dict[str, Any] | None = None,
    fingerprint: str = "",
) -> SourceData:
    """A translation source over in-memory images of domains A and B (N, H, W[, C]), same size and channels."""
    a, kind_a = normalise_samples(a, f"{where} (domain A)")
    b, kind_b = normalise_samples(b, f"{where} (domain B)")
    if kind_a != "image" or kind_b != "image":
        raise DataError(f"{where}: both domains must hold images")
    if a.shape[1:3] != b.shape[1:3]:
        raise DataError(f"{where}: domain A images are {a.shape[2]}x{a.shape[1]}, domain B {b.shape[2]}x{b.shape[1]}; both must share one size")
    channels = max(a.shape[3], b.shape[3])
    a, b = _with_channels(a, channels), _with_channels(b, channels)
    if paired and len(a) != len(b):
        raise DataError(f"{where}: {len(a)} A images but {len(b)} B images; aligned pairs need as many of each")
    rows = len(a) if paired else max(len(a), len(b))
    b_of_row = np.arange(rows) if paired else np.random.default_rng(PAIRING_SEED).permutation(rows) % len(b)
    shape = (a.shape[1], 2 * a.shape[2], channels)
    if max(shape[:2]) > MAX_TENSOR_SIDE:
        raise DataError(f"{where}: side-by-side rows of {shape[1]}x{shape[0]} exceed {MAX_TENSOR_SIDE} px; resize the images first")

    def read(start: int, stop: int):
        index = np.arange(start, stop)
        row = np.concatenate([a[index % len(a)], b[b_of_row[index]]], axis=2)
        return row, (labels[start:stop] if labels is not None and paired else None)

    return SourceData(
        name=name,
        kind="paired" if paired else "unpaired",
        shape=shape,
        num_rows=rows,
        read=read,
        labels=label_names if paired and labels is not None else None,
        extra=translation_extra(heldout is not None),
        provenance=provenance or {},
        fingerprint=fingerprint,
        heldout=heldout,
    )


def _with_channels(images: np.ndarray, channels: int) -> np.ndarray:
    return np.repeat(images, channels, axis=3) if images.shape[3] != channels else images


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _load(files: Sequence[Path], where: Path) -> np.ndarray:
    if not files:
        raise DataError(f"{where}: no PNG/JPEG images found")
    shape = _common_shape(list(files))
    try:
        return np.stack([decode_image(f.read_bytes(), shape) for f in files])
    except DecodeError as exc:
        raise DataError(f"{where}: {exc}") from None


def _first_dir(root: Path, names: Sequence[str]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


@SOURCE_FORMATS.register("pix2pix")
class Pix2PixFormat:
    description = "pix2pix folder: A|B side-by-side images in train/ (val/ or test/ held out), or in the folder itself"

    def sniff(self, path: Path) -> bool:
        return False  # a folder of images is an image-folder unless --format pix2pix says otherwise

    def open(self, path: Path) -> SourceData:
        if not path.is_dir():
            raise DataError(f"{path}: --format pix2pix needs a folder of A|B images")
        train = _first_dir(path, ("train",)) or path
        held = _first_dir(path, ("test", "val")) if train != path else None
        a, b = _halves(train)
        heldout = None
        if held is not None:
            ha, hb = _halves(held)
            heldout = two_domain_arrays(f"{path.name}-{held.name}", ha, hb, paired=True, where=str(held),
                                        provenance={"importer": "pix2pix", "source": str(held.absolute())})
        files = _images(train) + (_images(held) if held else [])
        return two_domain_arrays(path.name, a, b, paired=True, where=str(train), heldout=heldout,
                                 provenance={"importer": "pix2pix", "source": str(path.absolute()),
                                             "train": train.name, "heldout": held.name if held else None},
                                 fingerprint=file_fingerprint(files))


def _halves(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    rows = _load(_images(folder), folder)
    if rows.shape[2] % 2:
        raise DataError(f"{folder}: images are {rows.shape[2]} px wide; pix2pix A|B images have an even width (A left, B right)")
    return split_halves(rows)


@SOURCE_FORMATS.register("cyclegan")
class CycleGANFormat:
    description = "CycleGAN folder: trainA/ and trainB/ (testA/ and testB/ held out), unpaired"

    def sniff(self, path: Path) -> bool:
        return False  # image-folder would read trainA/trainB as classes; --format cyclegan says otherwise

    def open(self, path: Path) -> SourceData:
        for needed in ("trainA", "trainB"):
            if not (path / needed).is_dir():
                raise DataError(f"{path}: --format cyclegan needs sub-folders trainA/ and trainB/ (missing {needed}/)")
        a, b = _load(_images(path / "trainA"), path / "trainA"), _load(_images(path / "trainB"), path / "trainB")
        heldout = None
        if (path / "testA").is_dir() and (path / "testB").is_dir():
            ta, tb = _load(_images(path / "testA"), path / "testA"), _load(_images(path / "testB"), path / "testB")
            heldout = two_domain_arrays(f"{path.name}-test", ta, tb, paired=False, where=str(path),
                                        provenance={"importer": "cyclegan", "source": str(path.absolute())})
        files = [f for d in ("trainA", "trainB", "testA", "testB") if (path / d).is_dir() for f in _images(path / d)]
        return two_domain_arrays(path.name, a, b, paired=False, where=str(path), heldout=heldout,
                                 provenance={"importer": "cyclegan", "source": str(path.absolute())},
                                 fingerprint=file_fingerprint(files))
