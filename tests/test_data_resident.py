"""ResidentStream: a small data set held on the training device serves exactly what streaming would."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.fixtures.ids_data import IDS_ROWS
from trainers.config import GANConfig
from trainers.data import DataError, import_dataset, open_dataset
from trainers.data.resident import ResidentStream
from trainers.data.stream import BatchStream

ROWS = IDS_ROWS
HELD = 2**30  # resident_bytes that holds any data set of these tests


@pytest.fixture(scope="module")
def images_uri(tmp_path_factory) -> str:
    """300 labelled 5x4 RGB images whose pixels encode the row id, in 3 shards."""
    folder = tmp_path_factory.mktemp("img")
    ids = np.arange(300)
    images = np.zeros((300, 5, 4, 3), dtype=np.uint8)
    images[..., 0], images[..., 1] = (ids % 256)[:, None, None], (ids // 256)[:, None, None]
    images[..., 2] = np.arange(20, dtype=np.uint8).reshape(5, 4) * 13  # values across 0..247
    np.savez(folder / "img.npz", images=images, labels=ids % 7)
    import_dataset(str(folder / "img.npz"), str(folder / "ds"), shard_rows=100)
    return str(folder / "ds")


def batches(stream, n: int) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    return [stream.next_batch() for _ in range(n)]


def assert_same(a, b) -> None:
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb)
        assert (ya is None and yb is None) or torch.equal(ya, yb)


def test_a_data_set_that_fits_is_held_and_one_that_does_not_is_streamed(ids_uri):
    ds = open_dataset(ids_uri)
    assert ds.decoded_bytes == ROWS * 2 * 4  # float32 points
    with ds.stream(batch_size=8, seed=0, resident_bytes=ds.decoded_bytes) as held:
        assert isinstance(held, ResidentStream)
    for budget in (0, ds.decoded_bytes - 1):
        with ds.stream(batch_size=8, seed=0, resident_bytes=budget) as streamed:
            assert type(streamed) is BatchStream


@pytest.mark.parametrize("rank,world_size", [(0, 1), (1, 3)])
def test_held_and_streamed_serve_identical_batches_across_windows_and_epochs(ids_uri, rank, world_size):
    ds = open_dataset(ids_uri)
    kw = dict(batch_size=70, seed=5, shuffle_buffer=256, rank=rank, world_size=world_size)  # batches straddle windows
    with ds.stream(**kw) as streamed, ds.stream(**kw, resident_bytes=HELD) as held:
        assert isinstance(held, ResidentStream)
        n = 3 * (ROWS // world_size) // 70  # three epochs
        assert_same(batches(held, n), batches(streamed, n))
        assert held.stats["data_epoch"] == pytest.approx(streamed.stats["data_epoch"])


def test_images_and_labels_are_held_in_model_range_identically(images_uri):
    ds = open_dataset(images_uri)
    kw = dict(batch_size=64, seed=2, shuffle_buffer=50)
    with ds.stream(**kw) as streamed, ds.stream(**kw, resident_bytes=HELD) as held:
        got, want = batches(held, 12), batches(streamed, 12)
    assert_same(got, want)
    x, y = got[0]
    assert x.dtype == torch.float32 and x.shape == (64, 3, 5, 4) and float(x.min()) == -1.0 and y.dtype == torch.int64


@pytest.mark.parametrize("consumed", [1, 9, 30])
def test_a_checkpoint_of_either_resumes_the_other(ids_uri, consumed):
    ds = open_dataset(ids_uri)
    kw = dict(batch_size=50, seed=11, shuffle_buffer=192)
    with ds.stream(**kw) as reference:
        expected = batches(reference, consumed + 15)[consumed:]
    for first, second in ((0, HELD), (HELD, 0)):
        with ds.stream(**kw, resident_bytes=first) as interrupted:
            batches(interrupted, consumed)
            state = json.loads(json.dumps(interrupted.state_dict()))
        with ds.stream(batch_size=50, seed=999, shuffle_buffer=64, resident_bytes=second) as resumed:
            resumed.load_state_dict(state)
            assert_same(batches(resumed, 15), expected)


def test_a_skipped_corrupt_shard_leaves_the_same_holes(tmp_path):
    np.save(tmp_path / "ids.npy", np.stack([np.arange(400), np.zeros(400)], axis=1).astype(np.float32))
    import_dataset(str(tmp_path / "ids.npy"), str(tmp_path / "ds"), shard_rows=100)
    shard = tmp_path / "ds" / "shard-00001.parquet"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    ds = open_dataset(str(tmp_path / "ds"))
    kw = dict(batch_size=100, seed=0, shuffle_buffer=128, on_corrupt="skip")
    with ds.stream(**kw) as streamed, ds.stream(**kw, resident_bytes=HELD) as held:
        assert_same(batches(held, 6), batches(streamed, 6))
        assert held.stats["data_corrupt_shards"] == 1
    with ds.stream(batch_size=100, seed=0, resident_bytes=HELD) as strict:  # on_corrupt=error fails like streaming
        with pytest.raises(DataError, match=r"shard-00001\.parquet: truncated"):
            strict.next_batch()


def test_the_trainer_holds_a_small_data_set_unless_resident_mb_is_zero(tmp_path):
    from trainers.loop import GANTrainer

    def trainer(resident_mb: float) -> GANTrainer:
        cfg = GANConfig.model_validate({
            "data": {"uri": "builtin:ring8", "batch_size": 32, "resident_mb": resident_mb},
            "model": {"family": "gan", "width": 16, "latent_dim": 4},
            "train": {"steps": 4, "seed": 3},
        })
        return GANTrainer(cfg, cache_dir=tmp_path)

    held, streamed = trainer(512), trainer(0)
    assert isinstance(held.stream, ResidentStream) and type(streamed.stream) is BatchStream
    held.train_steps(4), streamed.train_steps(4)
    for a, b in zip(held.G.parameters(), streamed.G.parameters()):  # same batches, so the same training
        assert torch.equal(a, b)
    held.close(), streamed.close()
