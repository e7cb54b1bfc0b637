"""Layout and import: built-ins, every source format, the manifest, resume after an interruption, atomic caching."""
from __future__ import annotations

import gzip
import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from trainers.data import DataError, import_dataset, open_dataset

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ built-ins


def test_builtin_digits_matches_sklearn_scaled_to_uint8(tmp_path):
    from sklearn.datasets import load_digits

    ds = open_dataset("builtin:digits", cache_dir=tmp_path)
    info = ds.info
    assert (info.name, info.kind, info.shape, info.num_rows, info.num_classes) == ("digits", "image", (8, 8, 1), 1797, 10)
    assert info.checksum == ds.manifest.checksum and info.checksum.startswith("sha256:")
    x, y = ds.real_samples(1797, seed=0)
    order = torch.argsort(y * 10_000 + torch.arange(1797))  # any fixed order would do; compare as multisets
    expected = np.round(load_digits().images * 255 / 16).astype(np.uint8)
    got = ((x + 1) * 127.5).round().to(torch.uint8)[:, 0].numpy()
    assert sorted(map(bytes, got)) == sorted(map(bytes, expected))
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert torch.bincount(y).tolist() == np.bincount(load_digits().target).tolist()
    del order


@pytest.mark.parametrize(
    "name, modes, sigma, radius",
    [("ring8", 8, 0.01, 1.0), ("grid25", 25, 0.05, None)],
)
def test_builtin_mixtures_carry_their_means_and_labelled_points(tmp_path, name, modes, sigma, radius):
    ds = open_dataset(f"builtin:{name}", cache_dir=tmp_path)
    mixture = ds.info.extra["mixture"]
    means = np.array(mixture["means"])
    assert mixture["sigma"] == sigma and means.shape == (modes, 2)
    assert len({tuple(np.round(m, 6)) for m in means}) == modes  # no repeated endpoint
    if radius:
        assert np.allclose(np.hypot(means[:, 0], means[:, 1]), radius)
        assert np.allclose(means[1], [math.cos(2 * math.pi / 8), math.sin(2 * math.pi / 8)])
    else:
        assert sorted({v for m in means for v in m}) == [-4, -2, 0, 2, 4]
    assert ds.info.kind == "points" and ds.info.shape == (2,) and ds.info.num_rows == 100_000
    x, y = ds.real_samples(2000, seed=0)
    assert x.dtype == torch.float32 and x.shape == (2000, 2)
    assert np.all(np.linalg.norm(x.numpy() - means[y.numpy()], axis=1) < 6 * sigma)  # each point near its mode


OPEN_DIGITS = "import sys; from trainers.data import open_dataset; print(open_dataset('builtin:digits', cache_dir=sys.argv[1]).info.checksum)"


def test_concurrent_processes_materialise_a_builtin_once_atomically(tmp_path):
    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN_DIGITS, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=REPO)
        for _ in range(2)
    ]
    checksums = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert len(set(checksums)) == 1 and checksums[0].startswith("sha256:")
    assert sorted(p.name for p in (tmp_path / "datasets").iterdir()) == ["digits"]  # no temp folders left
    assert open_dataset("builtin:digits", cache_dir=tmp_path).info.checksum == checksums[0]


def test_cache_dir_defaults_to_ganforge_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path))
    open_dataset("builtin:ring8")
    assert (tmp_path / "datasets" / "ring8" / "manifest.json").is_file()


def test_unknown_builtin_suggests_the_right_name(tmp_path):
    with pytest.raises(DataError, match="did you mean 'digits'"):
        open_dataset("builtin:digit", cache_dir=tmp_path)


# ------------------------------------------------------------------------------------------------ layout


def test_layout_is_parquet_shards_plus_a_manifest(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (250, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=images, y=np.arange(250) % 5)
    import_dataset(str(tmp_path / "a.npz"), str(tmp_path / "ds"), shard_rows=100)
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["num_rows"] == 250 and manifest["shape"] == [16, 16, 3]
    assert [s["rows"] for s in manifest["shards"]] == [100, 100, 50]
    assert manifest["labels"] == ["0", "1", "2", "3", "4"]
    assert manifest["source"]["importer"] == "npz" and manifest["source"]["shard_rows"] == 100
    assert [c["name"] for c in manifest["schema"]] == ["image", "label"]
    table = pq.read_table(tmp_path / "ds" / manifest["shards"][1]["path"])
    assert table.schema.field("image").type == pa.fixed_shape_tensor(pa.uint8(), (16, 16, 3))
    assert np.array_equal(table.column("image").combine_chunks().to_numpy_ndarray(), images[100:200])
    import hashlib

    for shard in manifest["shards"]:
        assert hashlib.sha256((tmp_path / "ds" / shard["path"]).read_bytes()).hexdigest() == shard["sha256"]


def _png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array).save(path)


def test_image_folder_class_subfolders_become_labels(tmp_path):
    rng = np.random.default_rng(1)
    for label, cls in enumerate(["cat", "dog"]):
        (tmp_path / "src" / cls).mkdir(parents=True)
        for i in range(3):
            _png(tmp_path / "src" / cls / f"{i}.png", np.full((12, 10, 3), 40 * (label + 1) + i, dtype=np.uint8))
    from PIL import Image

    Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(tmp_path / "src" / "dog" / "x.jpg", quality=95)
    manifest = import_dataset(str(tmp_path / "src"), str(tmp_path / "ds"))
    assert manifest.labels == ["cat", "dog"] and manifest.num_rows == 7 and manifest.shape == (12, 10, 3)
    ds = open_dataset(str(tmp_path / "ds"))
    x, y = ds.real_samples(7, seed=0)
    first_cat = x[(y == 0)][:, 0, 0, 0]
    assert set(((first_cat + 1) * 127.5).round().tolist()) == {40.0, 41.0, 42.0}


def test_large_images_are_stored_as_encoded_bytes_and_decoded_in_threads(tmp_path):
    rng = np.random.default_rng(2)
    for i in range(5):
        _png(tmp_path / f"{i}.png", rng.integers(0, 256, (130, 140), dtype=np.uint8))
    src = tmp_path / "big"
    src.mkdir()
    for p in tmp_path.glob("*.png"):
        p.rename(src / p.name)
    import_dataset(str(src), str(tmp_path / "ds"))
    ds = open_dataset(str(tmp_path / "ds"))
    assert ds.manifest.encoding == "encoded" and ds.info.shape == (130, 140, 1)
    assert pq.read_schema(tmp_path / "ds" / "shard-00000.parquet").field("image").type == pa.binary()
    with ds.stream(batch_size=5, seed=0) as stream:
        x, y = stream.next_batch()
    assert x.shape == (5, 1, 130, 140) and y is None
    from PIL import Image

    originals = sorted(np.asarray(Image.open(src / f"{i}.png")).tobytes() for i in range(5))
    assert sorted(((x[:, 0] + 1) * 127.5).round().to(torch.uint8).numpy()[i].tobytes() for i in range(5)) == originals


def test_npy_points_import(tmp_path):
    np.save(tmp_path / "p.npy", np.random.default_rng(0).normal(size=(300, 2)))
    m = import_dataset(str(tmp_path / "p.npy"), str(tmp_path / "ds"))
    assert (m.kind, m.shape, m.labels) == ("points", (2,), None)


def _idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_with_labels_beside_it(tmp_path, gz):
    images = np.random.default_rng(3).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    labels = np.arange(50) % 10
    suffix = ".gz" if gz else ""
    _idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, gz)
    _idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, gz)
    m = import_dataset(str(tmp_path / f"train-images-idx3-ubyte{suffix}"), str(tmp_path / "ds"))
    assert (m.shape, m.num_rows, m.num_classes, m.source["importer"]) == ((28, 28, 1), 50, 10, "mnist-idx")
    x, y = open_dataset(str(tmp_path / "ds")).real_samples(50, seed=0)
    by_label = {int(label): img for img, label in zip(((x[:, 0] + 1) * 127.5).round().to(torch.uint8).numpy(), y)}
    assert np.array_equal(by_label[3], images[3]) or any(np.array_equal(by_label[3], images[i]) for i in range(3, 50, 10))


def test_cifar10_binary_batches(tmp_path):
    rng = np.random.default_rng(4)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    chw = rng.integers(0, 256, (2, 20, 3, 32, 32), dtype=np.uint8)
    for b in range(2):
        records = np.concatenate([np.full((20, 1), b * 5 + 1, dtype=np.uint8), chw[b].reshape(20, -1)], axis=1)
        (folder / f"data_batch_{b + 1}.bin").write_bytes(records.tobytes())
    m = import_dataset(str(folder), str(tmp_path / "ds"))
    assert (m.shape, m.num_rows, m.labels[1]) == ((32, 32, 3), 40, "automobile")
    x, y = open_dataset(str(tmp_path / "ds")).real_samples(40, seed=0)
    want = chw.reshape(40, 3, 32, 32)[np.flatnonzero(np.repeat([1, 6], 20) == 6)[0]]
    got = ((x[y == 6] + 1) * 127.5).round().to(torch.uint8).numpy()
    assert any(np.array_equal(g, want) for g in got)


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: None, "no such file or folder"),
        (lambda p: (p / "missing").write_text("hello"), "not a recognised source"),
        (lambda p: np.save(p / "missing", np.zeros((3, 4, 4, 7))), "1 or 3 channels"),
        (lambda p: np.save(p / "missing", np.full((3, 4, 4), 3.0)), r"\[0, 1\] or \[-1, 1\]"),
    ],
)
def test_bad_sources_are_one_line_errors(tmp_path, setup, message):
    setup(tmp_path)
    source = next(iter(tmp_path.glob("missing*")), tmp_path / "missing")
    with pytest.raises(DataError, match=message) as err:
        import_dataset(str(source), str(tmp_path / "ds"))
    assert "\n" not in str(err.value) and str(source.name) in str(err.value)


def test_images_of_different_sizes_name_the_odd_file(tmp_path):
    _png(tmp_path / "a.png", np.zeros((8, 8), dtype=np.uint8))
    _png(tmp_path / "b.png", np.zeros((9, 8), dtype=np.uint8))
    with pytest.raises(DataError, match=r"b\.png: image is 8x9, but a\.png is 8x8"):
        import_dataset(str(tmp_path), str(tmp_path / "ds"))


# ------------------------------------------------------------------------------------------------ resume and overwrite


class Interrupt(Exception):
    pass


def test_rerun_after_interruption_keeps_shards_that_verify(tmp_path):
    np.save(tmp_path / "p.npy", np.random.default_rng(0).normal(size=(1000, 2)).astype(np.float32))
    dest = tmp_path / "ds"

    def stop_after_three_shards(done, total):
        if done >= 300:
            raise Interrupt

    with pytest.raises(Interrupt):
        import_dataset(str(tmp_path / "p.npy"), str(dest), shard_rows=100, progress=stop_after_three_shards)
    assert not (dest / "manifest.json").exists()
    with pytest.raises(DataError, match="no manifest.json"):
        open_dataset(str(dest))
    _truncate_file(dest / "shard-00001.parquet")  # damaged while the import was down
    before = {p.name: p.stat().st_mtime_ns for p in dest.glob("shard-*.parquet")}
    assert sorted(before) == ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]

    import_dataset(str(tmp_path / "p.npy"), str(dest), shard_rows=100)
    after = {p.name: p.stat().st_mtime_ns for p in dest.glob("shard-*.parquet")}
    assert len(after) == 10
    assert after["shard-00000.parquet"] == before["shard-00000.parquet"]  # verified, not rewritten
    assert after["shard-00002.parquet"] == before["shard-00002.parquet"]
    assert after["shard-00001.parquet"] != before["shard-00001.parquet"]  # failed its checksum: rewritten
    assert not (dest / "_import_journal.json").exists()
    fresh = import_dataset(str(tmp_path / "p.npy"), str(tmp_path / "fresh"), shard_rows=100)
    assert open_dataset(str(dest)).info.checksum == fresh.checksum


def _truncate_file(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def test_existing_data_set_needs_overwrite(tmp_path):
    np.save(tmp_path / "p.npy", np.zeros((500, 2), dtype=np.float32))
    np.save(tmp_path / "q.npy", np.ones((150, 2), dtype=np.float32))
    import_dataset(str(tmp_path / "p.npy"), str(tmp_path / "ds"), shard_rows=100)
    with pytest.raises(DataError, match="already holds a data set.*--overwrite"):
        import_dataset(str(tmp_path / "q.npy"), str(tmp_path / "ds"), shard_rows=100)
    m = import_dataset(str(tmp_path / "q.npy"), str(tmp_path / "ds"), shard_rows=100, overwrite=True)
    assert m.num_rows == 150
    assert sorted(p.name for p in (tmp_path / "ds").glob("shard-*")) == ["shard-00000.parquet", "shard-00001.parquet"]
    assert open_dataset(str(tmp_path / "ds")).real_samples(150, seed=0)[0].eq(1).all()


def test_missing_and_foreign_locations_explain_themselves(tmp_path):
    with pytest.raises(DataError, match="no data set here"):
        open_dataset(str(tmp_path / "nothing"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.parquet").write_bytes(b"")
    with pytest.raises(DataError, match=r"other: no manifest\.json"):
        open_dataset(f"file://{tmp_path / 'other'}")
    (tmp_path / "other" / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="manifest is not valid JSON"):
        open_dataset(str(tmp_path / "other"))
    with pytest.raises(DataError, match="unknown data URI scheme 'gs'"):
        open_dataset("gs://bucket/x")
