"""How samples are laid out in Parquet, and the conversions between numpy arrays and Arrow tables.

Images up to MAX_TENSOR_SIDE px are a `fixed_shape_tensor` uint8 (H, W, C) column; larger ones are PNG/JPEG bytes
(decoded in worker threads); 2-D points are a fixed-size list of float32. An optional int64 label column follows.
Readers convert whole record batches at once: per-row Python work would dominate the trainer's hot loop.
"""
from __future__ import annotations

import io
from concurrent.futures import Executor
from typing import Sequence

import numpy as np
import pyarrow as pa

from trainers.data.manifest import Encoding, Manifest

MAX_TENSOR_SIDE = 128
LABEL_COLUMN = "label"
SAMPLE_COLUMN: dict[str, str] = {"tensor": "image", "encoded": "image", "points": "point"}
STORED_DTYPE: dict[str, str] = {"tensor": "uint8", "encoded": "uint8", "points": "float32"}


def choose_encoding(kind: str, shape: Sequence[int]) -> Encoding:
    if kind == "points":
        return "points"
    return "tensor" if max(shape[0], shape[1]) <= MAX_TENSOR_SIDE else "encoded"


def sample_type(encoding: str, shape: Sequence[int]) -> pa.DataType:
    if encoding == "tensor":
        return pa.fixed_shape_tensor(pa.uint8(), tuple(shape))
    if encoding == "encoded":
        return pa.binary()
    return pa.list_(pa.float32(), int(shape[0]))


def arrow_schema(encoding: str, shape: Sequence[int], labelled: bool) -> pa.Schema:
    fields = [pa.field(SAMPLE_COLUMN[encoding], sample_type(encoding, shape), nullable=False)]
    if labelled:
        fields.append(pa.field(LABEL_COLUMN, pa.int64(), nullable=False))
    return pa.schema(fields)


def schema_record(schema: pa.Schema) -> list[dict[str, str]]:
    return [{"name": f.name, "type": str(f.type)} for f in schema]


def stored_row_bytes(encoding: str, shape: Sequence[int]) -> int:
    """Approximate bytes per row on disk, to size shards and row groups."""
    if encoding == "points":
        return 4 * int(np.prod(shape)) + 8
    raw = int(np.prod(shape)) + 8
    return raw if encoding == "tensor" else max(1, raw // 2)  # PNG/JPEG roughly halve raw pixels


# ---------------------------------------------------------------------------------------------------- writing


def to_table(
    encoding: str,
    shape: Sequence[int],
    samples: np.ndarray | Sequence[bytes],
    labels: np.ndarray | None,
    pool: Executor | None = None,
) -> pa.Table:
    """Samples (N,H,W,C uint8 images, N,D float32 points, or already-encoded image bytes) -> an Arrow table."""
    columns = {SAMPLE_COLUMN[encoding]: _sample_array(encoding, shape, samples, pool)}
    if labels is not None:
        columns[LABEL_COLUMN] = pa.array(np.asarray(labels, dtype=np.int64))
    return pa.table(columns, schema=arrow_schema(encoding, shape, labels is not None))


def _sample_array(encoding: str, shape: Sequence[int], samples, pool: Executor | None) -> pa.Array:
    if encoding == "tensor":
        return pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(samples, dtype=np.uint8))
    if encoding == "points":
        flat = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
        return pa.FixedSizeListArray.from_arrays(pa.array(flat), int(shape[0]))
    if isinstance(samples, np.ndarray):  # raw pixels of large images: encode as PNG
        images = list(samples)
        samples = list(pool.map(encode_png, images)) if pool else [encode_png(im) for im in images]
    return pa.array(samples, type=pa.binary())


def encode_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------- reading


class DecodeError(ValueError):
    """A record batch's content does not match the manifest (shape, dtype or undecodable image bytes)."""


def decode(table: pa.Table | pa.RecordBatch, manifest: Manifest, pool: Executor | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """A record batch -> (samples in model layout, labels). Images come back NCHW uint8, points N x D float32."""
    column = table.column(SAMPLE_COLUMN[manifest.encoding])
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    samples = _DECODERS[manifest.encoding](column, manifest, pool)
    labels = None
    if manifest.labels is not None:
        labels = table.column(LABEL_COLUMN)
        labels = _primitive_values(labels.combine_chunks() if isinstance(labels, pa.ChunkedArray) else labels, np.int64).copy()
    return samples, labels


def _primitive_values(array: pa.Array, dtype: type) -> np.ndarray:
    """A non-null primitive Arrow array as a zero-copy numpy view, read straight from its data buffer
    (`Array.to_numpy` would import pandas on first use: a 0.15 s stall before the first batch)."""
    if array.null_count:
        raise DecodeError(f"{array.null_count} null values where none are allowed")
    data = np.frombuffer(array.buffers()[1], dtype=dtype)
    return data[array.offset : array.offset + len(array)]


def _list_values(column: pa.Array, dtype: type) -> np.ndarray:
    """The values of a fixed-size-list array (offset-aware), flat."""
    size = column.type.list_size
    values = _primitive_values(column.values, dtype)
    return values[column.offset * size : (column.offset + len(column)) * size]


def _decode_tensor(column: pa.Array, manifest: Manifest, pool: Executor | None) -> np.ndarray:
    h, w, c = manifest.shape
    values = _list_values(column.storage, np.uint8)
    if values.size != len(column) * h * w * c:
        raise DecodeError(f"holds {values.size} pixel values for {len(column)} rows of shape {(h, w, c)}")
    # One transposing copy per record batch puts images in NCHW, the layout models take.
    return np.ascontiguousarray(values.reshape(len(column), h, w, c).transpose(0, 3, 1, 2))


def _decode_points(column: pa.Array, manifest: Manifest, pool: Executor | None) -> np.ndarray:
    (d,) = manifest.shape
    return _list_values(column, np.float32).reshape(len(column), d).copy()


def _decode_encoded(column: pa.Array, manifest: Manifest, pool: Executor | None) -> np.ndarray:
    h, w, c = manifest.shape
    out = np.empty((len(column), c, h, w), dtype=np.uint8)
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[column.offset : column.offset + len(column) + 1]
    data = memoryview(column.buffers()[2])

    def decode_one(i: int) -> None:
        out[i] = decode_image(data[offsets[i] : offsets[i + 1]], (h, w, c)).transpose(2, 0, 1)

    list(pool.map(decode_one, range(len(column)))) if pool else [decode_one(i) for i in range(len(column))]
    return out


def decode_image(data: bytes | memoryview, shape: Sequence[int]) -> np.ndarray:
    """PNG/JPEG bytes -> (H, W, C) uint8, converted to the data set's channel count."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("L" if shape[2] == 1 else "RGB")
            array = np.asarray(im, dtype=np.uint8)
    except Exception as exc:  # PIL raises many types for bad bytes
        raise DecodeError(f"undecodable image bytes ({type(exc).__name__}: {exc})") from None
    array = array.reshape(array.shape[0], array.shape[1], -1)
    if tuple(array.shape) != tuple(shape):
        raise DecodeError(f"image is {tuple(array.shape)}, manifest says {tuple(shape)}")
    return array


_DECODERS = {"tensor": _decode_tensor, "points": _decode_points, "encoded": _decode_encoded}
