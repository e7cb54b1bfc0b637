"""What a model needs to know about a data set, read from its manifest."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

DataKind = Literal["image", "points", "paired", "unpaired"]
# Kinds whose samples are images. "paired"/"unpaired": two-domain translation data, each row one A|B image side by
# side (aligned pairs, or an independent draw from each domain); manifest extra["translation"] says how.
IMAGE_KINDS = frozenset({"image", "paired", "unpaired"})


@dataclass(frozen=True)
class DataInfo:
    """Shape and meaning of one data set's samples.

    Samples reach models as float32 tensors in the *model range*: images NCHW in [-1, 1], points N x D as stored.
    """

    name: str
    kind: DataKind
    shape: tuple[int, ...]  # image: (H, W, C) as stored; points: (D,)
    num_rows: int
    num_classes: int = 0  # 0 = unlabelled
    checksum: str = ""  # manifest checksum: lineage for registered models
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. {"mixture": {"means": [[x, y], ...], "sigma": s}}

    @property
    def is_image(self) -> bool:
        return self.kind in IMAGE_KINDS

    @property
    def channels(self) -> int:
        return self.shape[2] if self.is_image else 0

    @property
    def image_size(self) -> int:
        return self.shape[0] if self.is_image else 0

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "DataInfo":
        return cls(**{**d, "shape": tuple(d["shape"])})
