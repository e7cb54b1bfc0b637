"""Built-in data sets (builtin:NAME) as import sources: generated in memory, identical on every machine.

`trainers.data.builtins` materialises them as ordinary Parquet + manifest under the cache on first use, so training
always goes through the same Arrow reading path.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from trainers.data.errors import DataError
from trainers.data.sources.base import SourceData, array_source
from trainers.registry import Registry, UnknownComponentError

BUILTIN_SCHEME = "builtin:"
MIXTURE_ROWS = 100_000
MIXTURE_SEED = 20180601  # fixed: every machine materialises identical points (same manifest checksum)
TRANSLATION_SEED = 20161121  # pix2pix's arXiv date: fixes the digit translation sets' held-out rows
TRANSLATION_HELDOUT = 297  # of 1,797 digits: 1,500 train

BUILTINS: Registry[Callable[[], SourceData]] = Registry("built-in data set")


@BUILTINS.register("digits")
def digits() -> SourceData:
    """scikit-learn's 1,797 8x8 handwritten digits; values 0..16 scaled to 0..255."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return array_source(
        "digits",
        images,
        bunch.target.astype(np.int64),
        where=f"{BUILTIN_SCHEME}digits",
        label_names=[str(i) for i in range(10)],
        provenance={"importer": "builtin", "source": f"{BUILTIN_SCHEME}digits", "origin": "sklearn.datasets.load_digits"},
        fingerprint="builtin:digits:v1",
    )



def _digit_images() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8), bunch.target.astype(np.int64)


def _translation_split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed train / held-out row indices of the digit translation sets."""
    order = np.random.default_rng(TRANSLATION_SEED).permutation(n)
    return np.sort(order[TRANSLATION_HELDOUT:]), np.sort(order[:TRANSLATION_HELDOUT])


def _edges(images: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of 8x8 digits, scaled so the strongest edge in the data set is 255."""
    from scipy import ndimage

    x = images.astype(np.float64)
    magnitude = np.hypot(ndimage.sobel(x, axis=1, mode="constant"), ndimage.sobel(x, axis=2, mode="constant"))
    return np.round(magnitude * (255.0 / magnitude.max())).astype(np.uint8)


@BUILTINS.register("digits-edges")
def digits_edges() -> SourceData:
    """Paired translation (pix2pix): A = a digit's edge map, B = the digit; 297 pairs held out."""
    from trainers.data.sources.two_domain import two_domain_arrays

    images, labels = _digit_images()
    train, held = _translation_split(len(images))
    edges = _edges(images)
    where = f"{BUILTIN_SCHEME}digits-edges"
    names = [str(i) for i in range(10)]
    heldout = two_domain_arrays("digits-edges-heldout", edges[held], images[held], paired=True, where=where,
                                labels=labels[held], label_names=names)
    return two_domain_arrays("digits-edges", edges[train], images[train], paired=True, where=where,
                             labels=labels[train], label_names=names, heldout=heldout,
                             provenance={"importer": "builtin", "source": where, "origin": "sklearn.datasets.load_digits",
                                         "A": "Sobel edge magnitude", "B": "digit"},
                             fingerprint=f"{where}:v1")


@BUILTINS.register("digits-inverted")
def digits_inverted() -> SourceData:
    """Unpaired translation (CycleGAN): A = digits, B = other digits colour-inverted (255 - x). The held-out rows
    are aligned (a digit | its inversion), so a translation's error against the known mapping is measured."""
    from trainers.data.sources.two_domain import two_domain_arrays

    images, _ = _digit_images()
    train, held = _translation_split(len(images))
    half = len(train) // 2  # A and B come from different digits: nothing in training pairs them
    where = f"{BUILTIN_SCHEME}digits-inverted"
    heldout = two_domain_arrays("digits-inverted-heldout", images[held], 255 - images[held], paired=True, where=where)
    return two_domain_arrays("digits-inverted", images[train[:half]], 255 - images[train[half:]], paired=False,
                             where=where, heldout=heldout,
                             provenance={"importer": "builtin", "source": where, "origin": "sklearn.datasets.load_digits",
                                         "A": "digit", "B": "255 - digit (other digits)"},
                             fingerprint=f"{where}:v1")

def mixture(name: str, means: np.ndarray, sigma: float) -> SourceData:
    """MIXTURE_ROWS points from equally weighted isotropic Gaussians; the label is the mode index."""
    rng = np.random.default_rng(MIXTURE_SEED)
    modes = rng.integers(0, len(means), size=MIXTURE_ROWS)
    points = (means[modes] + sigma * rng.standard_normal((MIXTURE_ROWS, 2))).astype(np.float32)
    return array_source(
        name,
        points,
        modes.astype(np.int64),
        where=f"{BUILTIN_SCHEME}{name}",
        label_names=[f"mode {i}" for i in range(len(means))],
        extra={"mixture": {"means": means.tolist(), "sigma": sigma}},
        provenance={"importer": "builtin", "source": f"{BUILTIN_SCHEME}{name}", "seed": MIXTURE_SEED},
        fingerprint=f"builtin:{name}:v1",
    )


@BUILTINS.register("ring8")
def ring8() -> SourceData:
    # 2*pi*i/8 for i in 0..7: linspace(0, 2*pi, 8) would repeat the endpoint and leave 7 modes.
    angles = [2 * math.pi * i / 8 for i in range(8)]
    return mixture("ring8", np.array([[math.cos(a), math.sin(a)] for a in angles]), 0.01)


@BUILTINS.register("grid25")
def grid25() -> SourceData:
    coords = (-4.0, -2.0, 0.0, 2.0, 4.0)
    return mixture("grid25", np.array([[x, y] for x in coords for y in coords]), 0.05)


def builtin_factory(name: str) -> Callable[[], SourceData]:
    try:
        return BUILTINS.get(name)
    except UnknownComponentError as exc:
        raise DataError(f"{BUILTIN_SCHEME}{name}: {exc}") from None


def open_builtin(name: str) -> SourceData:
    return builtin_factory(name)()
