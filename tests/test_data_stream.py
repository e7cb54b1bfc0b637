"""The reader: seeded two-level shuffle, DDP shares, exact resume, model range, corrupt shards."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from tests.fixtures.ids_data import IDS_ROWS
from trainers.data import DataError, import_dataset, open_dataset

ROWS = IDS_ROWS


def row_ids(stream, batches: int) -> list[int]:
    return [int(v) for _ in range(batches) for v in stream.next_batch()[0][:, 0].tolist()]


def test_each_epoch_serves_every_row_once_in_a_new_seeded_order(ids_uri):
    ds = open_dataset(ids_uri)
    with ds.stream(batch_size=100, seed=7, shuffle_buffer=256) as stream:
        epoch0, epoch1 = row_ids(stream, 20), row_ids(stream, 20)
    assert sorted(epoch0) == sorted(epoch1) == list(range(ROWS))
    assert epoch0 != epoch1
    assert epoch0 != sorted(epoch0)  # shuffled, not file order
    with ds.stream(batch_size=100, seed=7, shuffle_buffer=256) as same_seed:
        assert row_ids(same_seed, 20) == epoch0
    with ds.stream(batch_size=100, seed=8, shuffle_buffer=256) as other_seed:
        assert row_ids(other_seed, 20) != epoch0


def test_shuffle_reaches_across_shards(ids_uri):
    """Rows of one window come from the whole permuted shard sequence, not one shard at a time."""
    with open_dataset(ids_uri).stream(batch_size=500, seed=0, shuffle_buffer=1000) as stream:
        first = row_ids(stream, 1)
    shards_seen = {i // 300 for i in first}
    assert len(shards_seen) >= 3


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_get_equal_disjoint_shares_that_move_each_epoch(ids_uri, world_size):
    ds = open_dataset(ids_uri)
    share = ROWS // world_size
    per_epoch = []
    for epoch in range(2):
        shares = []
        for rank in range(world_size):
            with ds.stream(batch_size=share, seed=3, shuffle_buffer=128, rank=rank, world_size=world_size) as s:
                shares.append(row_ids(s, epoch + 1)[epoch * share :])
        assert all(len(s) == share == len(set(s)) for s in shares)
        union = set().union(*map(set, shares))
        assert len(union) == share * world_size  # disjoint
        per_epoch.append(shares)
    assert set(per_epoch[0][0]) != set(per_epoch[1][0])


@pytest.mark.parametrize("readahead", [0, 2])
@pytest.mark.parametrize("consumed", [1, 7, 23, 40])  # start, mid-window, across an epoch, epoch boundary
def test_resume_continues_exactly_where_the_state_was_taken(ids_uri, readahead, consumed):
    ds = open_dataset(ids_uri)
    with ds.stream(batch_size=50, seed=11, shuffle_buffer=192, readahead=readahead) as reference:
        expected = row_ids(reference, consumed + 15)
    with ds.stream(batch_size=50, seed=11, shuffle_buffer=192, readahead=readahead) as interrupted:
        row_ids(interrupted, consumed)
        state = json.loads(json.dumps(interrupted.state_dict()))  # lives in a JSON-able checkpoint
    assert set(state) >= {"epoch", "position"}
    # A fresh process would build the stream with its own settings; the state carries what fixes the order.
    with ds.stream(batch_size=50, seed=999, shuffle_buffer=64, readahead=readahead) as resumed:
        resumed.load_state_dict(state)
        assert row_ids(resumed, 15) == expected[consumed * 50 :]


def test_resume_with_another_batch_size_keeps_the_sample_order(ids_uri):
    ds = open_dataset(ids_uri)
    with ds.stream(batch_size=64, seed=5) as reference:
        expected = row_ids(reference, 10)
    with ds.stream(batch_size=64, seed=5) as first:
        row_ids(first, 3)
        state = first.state_dict()
    with ds.stream(batch_size=32, seed=5) as second:
        second.load_state_dict(state)
        assert row_ids(second, 8) == expected[3 * 64 : 7 * 64]


def test_stats_report_epoch_progress(ids_uri):
    with open_dataset(ids_uri).stream(batch_size=500, seed=0) as stream:
        row_ids(stream, 5)
        stats = stream.stats
    assert stats["data_epoch"] == pytest.approx(1.25)
    assert stats["data_corrupt_shards"] == 0
    assert all(isinstance(v, float) for v in stats.values())


def test_images_reach_the_model_as_nchw_floats_in_minus_one_to_one(tmp_path):
    images = np.zeros((10, 4, 5, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = 255  # one white pixel in the red channel, top-left
    np.savez(tmp_path / "img.npz", images=images, labels=np.arange(10) % 2)
    import_dataset(str(tmp_path / "img.npz"), str(tmp_path / "ds"))
    ds = open_dataset(str(tmp_path / "ds"))
    assert (ds.info.kind, ds.info.shape, ds.info.num_classes, ds.info.channels) == ("image", (4, 5, 3), 2, 3)
    with ds.stream(batch_size=4, seed=0) as stream:
        x, y = stream.next_batch()
    assert x.shape == (4, 3, 4, 5) and x.dtype == torch.float32
    assert y.dtype == torch.int64
    assert torch.all(x[:, 0, 0, 0] == 1.0) and torch.all(x[:, 1:] == -1.0) and torch.all(x[:, 0, 1:] == -1.0)
    real, labels = ds.real_samples(25, seed=1)  # more than the data set: drawn with replacement
    assert real.shape == (25, 3, 4, 5) and labels.shape == (25,)


def test_real_samples_are_distinct_seeded_rows(ids_uri):
    ds = open_dataset(ids_uri)
    x, y = ds.real_samples(500, seed=4)
    ids = x[:, 0].long().tolist()
    assert len(set(ids)) == 500 and y is None
    assert torch.equal(ds.real_samples(500, seed=4)[0], x)
    assert not torch.equal(ds.real_samples(500, seed=5)[0], x)


def test_bad_stream_arguments_are_one_line_errors(ids_uri):
    ds = open_dataset(ids_uri)
    with pytest.raises(DataError, match="on_corrupt"):
        ds.stream(batch_size=8, seed=0, on_corrupt="ignore")
    with pytest.raises(DataError, match="rank 2 is not within world_size 2"):
        ds.stream(batch_size=8, seed=0, rank=2, world_size=2)


# ------------------------------------------------------------------------------------------------ corrupt shards


@pytest.fixture
def four_shards(tmp_path) -> str:
    np.save(tmp_path / "ids.npy", np.stack([np.arange(400), np.zeros(400)], axis=1).astype(np.float32))
    import_dataset(str(tmp_path / "ids.npy"), str(tmp_path / "ds"), shard_rows=100)
    return str(tmp_path / "ds")


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_shard_fails_the_stream_naming_the_shard(four_shards):
    from pathlib import Path

    _truncate(Path(four_shards) / "shard-00002.parquet")
    with open_dataset(four_shards).stream(batch_size=400, seed=0) as stream:
        with pytest.raises(DataError, match=r"shard-00002\.parquet: truncated") as err:
            stream.next_batch()
    assert "\n" not in str(err.value)


def test_on_corrupt_skip_skips_the_shard_warns_and_counts_it(four_shards, caplog):
    from pathlib import Path

    _truncate(Path(four_shards) / "shard-00001.parquet")
    with caplog.at_level(logging.WARNING, logger="ganforge.data"):
        with open_dataset(four_shards).stream(batch_size=100, seed=0, on_corrupt="skip") as stream:
            ids = row_ids(stream, 6)  # two epochs of the 300 good rows
            stats = stream.stats
    assert sorted(ids[:300]) == sorted(ids[300:]) == [i for i in range(400) if not 100 <= i < 200]
    assert stats["data_corrupt_shards"] == 1
    assert "shard-00001.parquet" in caplog.text


@pytest.mark.parametrize("resident_bytes", [0, 2**30], ids=["streamed", "held"])
def test_skipping_when_every_shard_is_corrupt_fails_instead_of_spinning(four_shards, resident_bytes):
    from pathlib import Path

    for shard in Path(four_shards).glob("shard-*.parquet"):
        _truncate(shard)
    with open_dataset(four_shards).stream(batch_size=10, seed=0, on_corrupt="skip", resident_bytes=resident_bytes) as s:
        with pytest.raises(DataError, match="no readable rows left.*4 corrupt shards"):
            s.next_batch()


def test_corrupt_page_is_caught_by_its_checksum(four_shards):
    from pathlib import Path

    import pyarrow.parquet as pq

    path = Path(four_shards) / "shard-00003.parquet"
    data = bytearray(path.read_bytes())
    offset = pq.ParquetFile(path).metadata.row_group(0).column(0).data_page_offset
    data[offset + 40] ^= 0xFF  # same size, one flipped byte inside the first data page
    path.write_bytes(bytes(data))
    with open_dataset(four_shards).stream(batch_size=400, seed=0) as stream:
        with pytest.raises(DataError, match=r"shard-00003\.parquet: row group 0 is corrupt"):
            stream.next_batch()


def test_shape_mismatch_between_shard_and_manifest_is_named(tmp_path):
    from trainers.data.fs import resolve
    from trainers.data.manifest import read_manifest, write_manifest

    for name, side in (("small", 4), ("big", 6)):
        np.save(tmp_path / f"{name}.npy", np.zeros((20, side, side), dtype=np.uint8))
        import_dataset(str(tmp_path / f"{name}.npy"), str(tmp_path / name))
    # Put the 6x6 shard where the 4x4 manifest expects its own, and make the manifest vouch for its bytes.
    small, big = resolve(str(tmp_path / "small")), resolve(str(tmp_path / "big"))
    (tmp_path / "small" / "shard-00000.parquet").write_bytes((tmp_path / "big" / "shard-00000.parquet").read_bytes())
    manifest = read_manifest(small)
    manifest.shards = read_manifest(big).shards
    write_manifest(small, manifest)
    with open_dataset(str(tmp_path / "small")).stream(batch_size=4, seed=0) as stream:
        with pytest.raises(DataError, match=r"column 'image' is .*shape=\[6,6,1\].*manifest says .*shape=\[4,4,1\]"):
            stream.next_batch()


# ------------------------------------------------------------------------------------------------ parallel row groups


@pytest.fixture
def many_row_groups(tmp_path) -> str:
    """1,200 32x32 RGB images whose first two pixels encode the row id: 2 shards of 2 row groups each."""
    ids = np.arange(1200)
    images = np.zeros((1200, 32, 32, 3), dtype=np.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = ids % 256, ids // 256
    np.save(tmp_path / "img.npy", images)
    import_dataset(str(tmp_path / "img.npy"), str(tmp_path / "ds"), shard_rows=600)
    return str(tmp_path / "ds")


def image_ids(stream, batches: int) -> list[int]:
    out = []
    for _ in range(batches):
        pixels = ((stream.next_batch()[0][:, :2, 0, 0] + 1) * 127.5).round().long()
        out += (pixels[:, 0] + 256 * pixels[:, 1]).tolist()
    return out


def serve(uri: str, threads: int, monkeypatch, **kw) -> list[int]:
    import trainers.data.producer as producer_module

    monkeypatch.setattr(producer_module, "read_threads", lambda: threads)
    with open_dataset(uri).stream(batch_size=100, seed=4, shuffle_buffer=500, **kw) as stream:
        return image_ids(stream, 36)  # three epochs


def test_row_groups_read_on_several_threads_serve_what_one_thread_serves(many_row_groups, monkeypatch):
    from trainers.data.shards import ShardReader

    parallel_reads = []
    alone = ShardReader.read_row_group_alone
    monkeypatch.setattr(ShardReader, "read_row_group_alone", lambda self, i: parallel_reads.append(i) or alone(self, i))
    sequential = serve(many_row_groups, 1, monkeypatch)
    assert not parallel_reads and sorted(sequential[:1200]) == list(range(1200))
    assert serve(many_row_groups, 4, monkeypatch) == sequential
    assert parallel_reads  # the threads did read


def test_a_parallel_read_failing_transiently_is_read_again_in_order(many_row_groups, monkeypatch):
    from trainers.data.shards import ShardReader

    expected = serve(many_row_groups, 1, monkeypatch)
    failures = iter([True, False, True])  # some reads break like a reset connection; the reader's retries take over
    alone = ShardReader.read_row_group_alone

    def flaky(self, i):
        if next(failures, False):
            raise OSError("connection reset by peer")
        return alone(self, i)

    monkeypatch.setattr(ShardReader, "read_row_group_alone", flaky)
    assert serve(many_row_groups, 4, monkeypatch) == expected


def test_a_corrupt_row_group_read_in_parallel_is_skipped_or_named_as_in_sequence(many_row_groups, monkeypatch):
    from pathlib import Path

    import pyarrow.parquet as pq

    path = Path(many_row_groups) / "shard-00001.parquet"
    data = bytearray(path.read_bytes())
    offset = pq.ParquetFile(path).metadata.row_group(1).column(0).data_page_offset
    data[offset + 40] ^= 0xFF  # the second row group's first page no longer matches its checksum
    path.write_bytes(bytes(data))
    skipped = serve(many_row_groups, 1, monkeypatch, on_corrupt="skip")
    assert len(set(skipped)) < 1200 and serve(many_row_groups, 4, monkeypatch, on_corrupt="skip") == skipped
    for threads in (1, 4):
        with pytest.raises(DataError, match=r"shard-00001\.parquet: row group 1 is corrupt"):
            serve(many_row_groups, threads, monkeypatch)
