"""S3: import and stream through moto's real S3 server, faults injected by a proxy, AWS configuration, bad URIs."""
from __future__ import annotations

import numpy as np
import pytest

from orchestrator.cli import main
from trainers.data import DataError, import_dataset, open_dataset

ROWS = 3_000


@pytest.fixture
def ids_on_s3(s3_prefix, tmp_path) -> str:
    """3,000 points whose x coordinate is the row id, in 12 shards on S3."""
    np.save(tmp_path / "ids.npy", np.stack([np.arange(ROWS), np.zeros(ROWS)], axis=1).astype(np.float32))
    import_dataset(str(tmp_path / "ids.npy"), s3_prefix, shard_rows=250)
    return s3_prefix


def epoch_ids(uri: str, **stream_args) -> list[int]:
    with open_dataset(uri).stream(batch_size=250, seed=1, shuffle_buffer=512, **stream_args) as stream:
        ids = [int(v) for _ in range(ROWS // 250) for v in stream.next_batch()[0][:, 0].tolist()]
        assert stream.stats["data_epoch"] == 1.0
    return ids


def test_cli_imports_digits_to_s3_and_the_stream_matches_the_local_copy(s3_prefix, tmp_path, capsys):
    assert main(["data", "import", "builtin:digits", s3_prefix]) == 0
    assert main(["data", "inspect", s3_prefix, "--verify"]) == 0
    out = capsys.readouterr().out
    assert "1,797 in 1 shard(s)" in out and "10 classes" in out and "verified 1 shard(s)" in out
    remote, local = open_dataset(s3_prefix), open_dataset("builtin:digits", cache_dir=tmp_path)
    assert remote.info == local.info  # same content, same checksum: lineage does not depend on where it lives
    with remote.stream(batch_size=64, seed=3) as a, local.stream(batch_size=64, seed=3) as b:
        for _ in range(30):  # across an epoch boundary
            (xa, ya), (xb, yb) = a.next_batch(), b.next_batch()
            assert xa.equal(xb) and ya.equal(yb)


@pytest.mark.parametrize("resident_bytes", [0, 2**30], ids=["streamed", "held"])
def test_an_epoch_through_a_proxy_failing_ten_percent_of_requests_loses_and_repeats_nothing(ids_on_s3, flaky_s3, monkeypatch,
                                                                                          resident_bytes):
    monkeypatch.setenv("AWS_ENDPOINT_URL", flaky_s3.endpoint)
    ids = epoch_ids(ids_on_s3, resident_bytes=resident_bytes)
    assert sorted(ids) == list(range(ROWS))
    assert sum(flaky_s3.faults.values()) > 0 and flaky_s3.requests >= 24  # every shard's reads went through it
    monkeypatch.setenv("AWS_ENDPOINT_URL", flaky_s3.upstream_endpoint)
    assert epoch_ids(ids_on_s3) == ids  # faults change nothing about the order, nor does holding the data


def test_a_read_failing_beyond_the_sdk_retries_is_reopened_at_the_same_row(ids_on_s3, flaky_s3, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", flaky_s3.endpoint)
    monkeypatch.setenv("GANFORGE_S3_MAX_ATTEMPTS", "2")  # the SDK gives up fast, so our reopen path must carry it
    flaky_s3.failure_rate = 0.0
    flaky_s3.fail_next("shard-00004.parquet", 3)  # 503 x2 exhausts the SDK's 2 attempts; we reopen; 1 more 503
    with open_dataset(ids_on_s3).stream(batch_size=250, seed=1, shuffle_buffer=512) as stream:
        ids = [int(v) for _ in range(ROWS // 250) for v in stream.next_batch()[0][:, 0].tolist()]
        retries = stream.stats["data_read_retries"]
    assert sorted(ids) == list(range(ROWS))
    assert retries >= 1 and flaky_s3.faults["burst"] == 3


def test_a_ranged_read_breaking_mid_shard_continues_at_the_same_row(s3_prefix, tmp_path, flaky_s3, monkeypatch):
    """Shards read row group by row group (as very large ones are): the second row group's GET breaks beyond the
    SDK's retries; the reader reopens the shard and continues at that row group."""
    ids = np.arange(1200)
    images = np.zeros((1200, 32, 32, 3), dtype=np.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = ids % 256, ids // 256
    np.save(tmp_path / "img.npy", images)
    import_dataset(str(tmp_path / "img.npy"), s3_prefix, shard_rows=600)  # 2 shards of 2 row groups
    monkeypatch.setenv("GANFORGE_S3_WHOLE_SHARD_MAX_MB", "0")
    monkeypatch.setenv("GANFORGE_S3_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("AWS_ENDPOINT_URL", flaky_s3.endpoint)
    flaky_s3.failure_rate = 0.0
    flaky_s3.fail_next("shard-00001.parquet", 3, after=3)  # HEAD, footer and row group 0 pass; row group 1 breaks
    with open_dataset(s3_prefix).stream(batch_size=100, seed=2, shuffle_buffer=300) as stream:
        seen = []
        for _ in range(12):
            x = stream.next_batch()[0]
            pixels = ((x[:, :2, 0, 0] + 1) * 127.5).round().long()
            seen += (pixels[:, 0] + 256 * pixels[:, 1]).tolist()
        retries = stream.stats["data_read_retries"]
    assert sorted(seen) == ids.tolist()
    assert retries >= 1 and flaky_s3.faults["burst"] == 3


def test_a_store_that_stays_down_fails_with_the_object_key(ids_on_s3, flaky_s3, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", flaky_s3.endpoint)
    monkeypatch.setenv("GANFORGE_S3_MAX_ATTEMPTS", "1")
    ds = open_dataset(ids_on_s3)
    flaky_s3.fail_next("shard-", 10_000)
    with ds.stream(batch_size=250, seed=1) as stream:
        with pytest.raises(DataError, match=r"shard-000\d\d\.parquet: .*still failing after \d+ attempts"):
            stream.next_batch()


def test_endpoint_specific_to_s3_wins_over_the_generic_one(ids_on_s3, s3_env, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_env)
    assert open_dataset(ids_on_s3).info.num_rows == ROWS


def test_endpoint_region_and_keys_come_from_an_aws_profile(ids_on_s3, s3_env, tmp_path, monkeypatch):
    (tmp_path / "config").write_text(f"[profile gf-test]\nregion = us-east-1\nendpoint_url = {s3_env}\n")
    (tmp_path / "credentials").write_text("[gf-test]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_PROFILE", "gf-test")
    assert sorted(epoch_ids(ids_on_s3)) == list(range(ROWS))


def test_missing_bucket_prefix_and_manifest_are_named(s3_env, s3_bucket, s3_prefix, tmp_path):
    with pytest.raises(DataError, match=r"^s3://no-such-bucket-gf/x: bucket 'no-such-bucket-gf' does not exist$"):
        open_dataset("s3://no-such-bucket-gf/x")
    with pytest.raises(DataError, match=rf"^{s3_prefix}/nothing: no data set here"):
        open_dataset(f"{s3_prefix}/nothing")
    import boto3

    boto3.client("s3").put_object(Bucket=s3_bucket, Key=f"{s3_prefix.split('/', 3)[3]}/loose/part-0.parquet", Body=b"x")
    with pytest.raises(DataError, match=r"loose: no manifest\.json"):
        open_dataset(f"{s3_prefix}/loose")
    assert main(["data", "inspect", "s3://no-such-bucket-gf/x"]) == 2
    with pytest.raises(DataError, match=r"^s3://no-such-bucket-gf/y: bucket 'no-such-bucket-gf' does not exist$"):
        import_dataset("builtin:ring8", "s3://no-such-bucket-gf/y")


def test_credentials_in_a_uri_are_refused_and_not_echoed(s3_env):
    with pytest.raises(DataError, match="credentials in a URI are not accepted") as err:
        open_dataset("s3://AKIDEXAMPLE:s3cr3t@bucket/data")
    assert "s3cr3t" not in str(err.value)


def test_truncated_shard_on_s3_names_its_uri(ids_on_s3, s3_bucket):
    import boto3

    key = f"{ids_on_s3.split('/', 3)[3]}/shard-00002.parquet"
    client = boto3.client("s3")
    body = client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    client.put_object(Bucket=s3_bucket, Key=key, Body=body[: len(body) // 2])
    with pytest.raises(DataError, match=rf"{ids_on_s3}/shard-00002\.parquet: truncated"):
        epoch_ids(ids_on_s3)
    with open_dataset(ids_on_s3).stream(batch_size=250, seed=1, on_corrupt="skip") as stream:
        ids = [int(v) for _ in range(11) for v in stream.next_batch()[0][:, 0].tolist()]  # one epoch of good rows
        assert stream.stats["data_corrupt_shards"] == 1
    assert sorted(ids) == [i for i in range(ROWS) if not 500 <= i < 750]


def test_quickstart_runs_with_its_data_on_s3(s3_prefix, s3_env_vars, tmp_path):
    """`ganforge data import builtin:digits s3://...`, then the quickstart job with `--set data.uri=s3://...`
    (cut to one short trial): Ray trial processes read the data from S3 with the standard AWS environment."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert main(["data", "import", "builtin:digits", s3_prefix]) == 0
    env = {**os.environ, **s3_env_vars, "RAY_AUTH_MODE": "disabled", "GANFORGE_CACHE": str(tmp_path / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    overrides = {
        "data.uri": s3_prefix,
        "search.num_samples": 1,
        "train.steps": 4,
        "train.eval_every": 2,
        "train.eval_samples": 200,
        "storage.uri": str(tmp_path / "results"),
        "registry.tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
    }
    argv = [sys.executable, "-m", "orchestrator.cli", "run", str(root / "jobs" / "quickstart.yaml")]
    for key, value in overrides.items():
        argv += ["--set", f"{key}={value}"]
    res = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "registered digits-dcgan version 1" in res.stdout
    assert not (tmp_path / "cache" / "datasets" / "digits").exists()  # the trial read S3, not a local built-in copy
