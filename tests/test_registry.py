"""The model registry against a real `mlflow server` (S3 artifacts on moto) and the embedded SQLite store:
register with lineage, promotion rules, pull, cached loads, and the `models` / `sample` commands."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from orchestrator.cli import main as cli_main
from orchestrator.errors import ModelNotFoundError, RegistryError
from orchestrator.tracking.browse import list_models
from orchestrator.tracking.client import client_for, resolve_tracking_uri
from orchestrator.tracking.job_run import JobTracker
from orchestrator.tracking.pull import generator_dir, load_generator, pull_model
from orchestrator.tracking.register import Candidate, register_champion
from orchestrator.tracking.trial_run import TrialTracker
from orchestrator.tracking.versions import ModelRef, parse_model_uri, version_artifact_repo
from trainers.data.info import DataInfo
from trainers.export import generate, load_generator_dir, save_generator
from trainers.families.dcgan import DCGANGenerator
from trainers.families.gan import MLPGenerator

JOB_YAML = "name: tiny\ndata: {uri: 'builtin:digits'}\nregistry: {model_name: tiny-digits}\n"


# ---------------------------------------------------------------------------------------------------- helpers


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_checkpoint(directory: Path, kind: str = "image", seed: int = 0, grid: bool = True) -> tuple[Path, torch.nn.Module]:
    """A real (untrained, tiny) generator of the shipped families saved the way trials save it."""
    torch.manual_seed(seed)
    if kind == "image":
        kwargs = {"latent_dim": 8, "channels": 1, "image_size": 8, "width": 4}
        generator, arch_name = DCGANGenerator(**kwargs), "DCGANGenerator"
        info = DataInfo(name="digits", kind="image", shape=(8, 8, 1), num_rows=1797, num_classes=10, checksum="sha256:digits-test")
    else:
        kwargs = {"latent_dim": 4, "out_dim": 2, "width": 8, "depth": 2}
        generator, arch_name = MLPGenerator(**kwargs), "MLPGenerator"
        info = DataInfo(name="ring8", kind="points", shape=(2,), num_rows=1000, checksum="sha256:ring8-test",
                        extra={"mixture": {"means": [[1.0, 0.0], [0.0, 1.0]], "sigma": 0.01}})
    generator.eval()
    save_generator(generator, {"generator": arch_name, "kwargs": kwargs}, info, directory, meta={"step": 10})
    if grid:
        Image.new("RGB", (24, 24), (seed * 40 % 255, 80, 160)).save(directory / "grid.png")
    return directory, generator


def candidate(checkpoint: Path, value: float, trial_id: str = "t0", run_id: str | None = None, mode: str = "min", **params) -> Candidate:
    return Candidate(trial_id=trial_id, run_id=run_id, metric="fid", value=value, mode=mode,
                     params=params or {"train.lr_g": 2e-4}, checkpoint_dir=checkpoint)


def all_artifacts(repo, path: str | None = None) -> list[str]:
    out = []
    for info in repo.list_artifacts(path):
        out += all_artifacts(repo, info.path) if info.is_dir else [info.path]
    return out


def version_repo(tracking_uri: str, name: str, version: str):
    client = client_for(tracking_uri)
    return version_artifact_repo(client, tracking_uri, client.get_model_version(name, version))


@pytest.fixture(params=["server", "sqlite"])
def tracking_uri(request) -> str:
    """Both backends the issue names: a real server with S3 artifacts, and the embedded SQLite default."""
    if request.param == "server":
        return request.getfixturevalue("mlflow_tracking_uri")
    return request.getfixturevalue("mlflow_sqlite_uri")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "model-cache"
    monkeypatch.setenv("GANFORGE_CACHE", str(path))
    return path


# ---------------------------------------------------------------------------------------------------- round trip


def test_champion_round_trip_with_lineage_and_no_pickle(tracking_uri, tmp_path, cache_dir):
    name = unique_name("digits-dcgan")
    job = JobTracker(tracking_uri, "registry-tests")
    parent = job.start("tiny", JOB_YAML, {"name": "tiny", "train": {"steps": 10}})
    trial = TrialTracker(tracking_uri, "registry-tests", parent, "t1", {"train.lr_g": 2e-4})
    trial.log_metrics({"fid": 12.5}, step=10)
    trial.finish()
    checkpoint, generator = make_checkpoint(tmp_path / "ckpt")
    lineage = {"job": "tiny", "top_k": [{"trial_id": "t1", "fid": 12.5}], "floor": 0.7, "pbt_policy": None}

    result = register_champion(tracking_uri, name, "champion", candidate(checkpoint, 12.5, "t1", trial.run_id), JOB_YAML, lineage)

    assert (result.name, result.version, result.promoted, result.alias, result.previous) == (name, "1", True, "champion", None)
    mv = client_for(tracking_uri).get_model_version(name, "1")
    assert {k: mv.tags[k] for k in ("job", "trial_id", "metric", "metric_value", "metric_mode", "hp.train.lr_g")} == {
        "job": "tiny", "trial_id": "t1", "metric": "fid", "metric_value": "12.5", "metric_mode": "min", "hp.train.lr_g": "0.0002",
    }
    assert mv.run_id == trial.run_id

    files = all_artifacts(version_repo(tracking_uri, name, "1"))
    for expected in ("MLmodel", "pyfunc_model.py", "input_example.json", "artifacts/generator/generator.safetensors",
                     "artifacts/generator/generator.json", "artifacts/grid.png", "artifacts/job.yaml", "artifacts/lineage.json"):
        assert expected in files
    assert not [f for f in files if f.endswith((".pkl", ".pickle"))], files

    pulled = pull_model(f"{name}@champion", tmp_path / "pulled", tracking_uri=tracking_uri)
    for top in ("generator.safetensors", "generator.json", "grid.png", "job.yaml", "lineage.json", "MLmodel"):
        assert (pulled / top).is_file(), top
    assert torch.equal(generate(load_generator_dir(pulled), 4), generate(generator, 4))
    lineage_json = json.loads((pulled / "lineage.json").read_text())
    assert lineage_json["data"]["checksum"] == "sha256:digits-test"
    assert lineage_json["score"] == {"metric": "fid", "value": 12.5, "mode": "min", "promotion_margin": 0.0}
    assert lineage_json["top_k"] == lineage["top_k"] and lineage_json["floor"] == 0.7 and lineage_json["ganforge_version"]
    assert (pulled / "job.yaml").read_text() == JOB_YAML
    assert "signature" in (pulled / "MLmodel").read_text()

    loaded = load_generator(f"models:/{name}@champion", tracking_uri=tracking_uri)
    assert isinstance(loaded, DCGANGenerator) and not loaded.training
    assert torch.equal(generate(loaded, 16, seed=4), generate(generator, 16, seed=4))
    assert torch.equal(generate(load_generator(str(pulled)), 4), generate(generator, 4))

    [version_dir] = (cache_dir / "models").glob("*/v1-*")
    stamp = (version_dir / "generator.safetensors").stat().st_mtime_ns
    load_generator(f"{name}/1", tracking_uri=tracking_uri)  # same version by number: served from the cache
    assert (version_dir / "generator.safetensors").stat().st_mtime_ns == stamp
    assert list((cache_dir / "models").glob("*/v1-*")) == [version_dir]


def test_artifacts_live_in_the_s3_bucket(mlflow_tracking_uri, s3_endpoint, s3_bucket, s3_env_vars, tmp_path):
    import boto3

    name = unique_name("s3-check")
    checkpoint, _ = make_checkpoint(tmp_path / "ckpt")
    register_champion(mlflow_tracking_uri, name, "champion", candidate(checkpoint, 1.0), JOB_YAML, {})
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, **_boto_kwargs(s3_env_vars))
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket) for o in page.get("Contents", [])]
    assert any(k.startswith("mlartifacts/") and k.endswith("artifacts/generator/generator.safetensors") for k in keys)
    assert not [k for k in keys if k.endswith((".pkl", ".pickle"))]


def _boto_kwargs(env: dict) -> dict:
    return {"aws_access_key_id": env["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
            "region_name": env.get("AWS_DEFAULT_REGION", "us-east-1")}


# ---------------------------------------------------------------------------------------------------- promotion


def test_alias_moves_only_when_the_candidate_beats_the_holder_by_the_margin(mlflow_tracking_uri, tmp_path):
    name = unique_name("promo")
    checkpoint, _ = make_checkpoint(tmp_path / "ckpt")
    uri = mlflow_tracking_uri

    first = register_champion(uri, name, "champion", candidate(checkpoint, 10.0, "a"), JOB_YAML, {}, margin=0.5)
    close = register_champion(uri, name, "champion", candidate(checkpoint, 9.8, "b"), JOB_YAML, {}, margin=0.5)
    worse = register_champion(uri, name, "champion", candidate(checkpoint, 11.0, "c"), JOB_YAML, {}, margin=0.5)
    better = register_champion(uri, name, "champion", candidate(checkpoint, 9.0, "d"), JOB_YAML, {}, margin=0.5)

    assert [r.promoted for r in (first, close, worse, better)] == [True, False, False, True]
    assert [r.previous for r in (first, close, worse, better)] == [None, 10.0, 10.0, 10.0]
    client = client_for(uri)
    assert client.get_model_version_by_alias(name, "champion").version == better.version == "4"
    assert "does not beat v1" in client.get_model_version(name, "2").tags["challenger"]
    assert "challenger" not in client.get_model_version(name, "4").tags

    models = {m["name"]: m for m in list_models(uri)}
    assert models[name]["aliases"]["champion"] == {"version": "4", "metric": "fid", "value": 9.0}
    assert models[name]["versions"] == 4


def test_max_mode_and_metric_mismatch(mlflow_tracking_uri, tmp_path):
    name = unique_name("promo-max")
    checkpoint, _ = make_checkpoint(tmp_path / "ckpt", kind="points")
    uri = mlflow_tracking_uri
    assert register_champion(uri, name, "best", candidate(checkpoint, 6.0, mode="max"), JOB_YAML, {}).promoted
    assert not register_champion(uri, name, "best", candidate(checkpoint, 5.0, mode="max"), JOB_YAML, {}).promoted
    assert register_champion(uri, name, "best", candidate(checkpoint, 8.0, mode="max"), JOB_YAML, {}).promoted
    other_metric = Candidate("x", None, "kid", 0.0, "min", {}, checkpoint)
    result = register_champion(uri, name, "best", other_metric, JOB_YAML, {})
    assert not result.promoted
    assert "not scored on kid" in client_for(uri).get_model_version(name, result.version).tags["challenger"]


# ---------------------------------------------------------------------------------------------------- errors


def test_unknown_models_and_aliases_are_named_in_one_line(mlflow_tracking_uri, tmp_path, capsys):
    name = unique_name("known")
    checkpoint, _ = make_checkpoint(tmp_path / "ckpt")
    register_champion(mlflow_tracking_uri, name, "champion", candidate(checkpoint, 1.0), JOB_YAML, {})

    with pytest.raises(ModelNotFoundError, match=f"no model named '{name}x'.*did you mean '{name}'"):
        load_generator(f"{name}x@champion", tracking_uri=mlflow_tracking_uri)
    with pytest.raises(ModelNotFoundError, match=f"model '{name}' has no alias 'prod' \\(aliases: champion\\)"):
        pull_model(f"{name}@prod", tmp_path / "out", tracking_uri=mlflow_tracking_uri)
    with pytest.raises(ModelNotFoundError, match="has no version 7"):
        load_generator(f"{name}/7", tracking_uri=mlflow_tracking_uri)

    capsys.readouterr()
    code = cli_main(["sample", f"{name}@prod", "-n", "4", "--out", str(tmp_path / "x.npy"), "--tracking-uri", mlflow_tracking_uri])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "no alias 'prod'" in err

    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "notes.txt").write_text("mine")
    with pytest.raises(RegistryError, match="not a pulled model"):
        pull_model(f"{name}@champion", tmp_path / "occupied", tracking_uri=mlflow_tracking_uri)


def test_unreachable_server_fails_fast_with_a_clear_message(tmp_path):
    from orchestrator.stack import free_port

    uri = f"http://127.0.0.1:{free_port()}"
    checkpoint, _ = make_checkpoint(tmp_path / "ckpt")
    with pytest.raises(RegistryError, match=f"at {uri} failed: tracking server unreachable"):
        register_champion(uri, "m", "champion", candidate(checkpoint, 1.0), JOB_YAML, {}, retry_s=1.0)


@pytest.mark.parametrize(
    "text, ref",
    [
        ("digits-dcgan@champion", ModelRef("digits-dcgan", alias="champion")),
        ("models:/digits-dcgan@champion", ModelRef("digits-dcgan", alias="champion")),
        ("digits-dcgan/3", ModelRef("digits-dcgan", version="3")),
        ("models:/digits-dcgan/3", ModelRef("digits-dcgan", version="3")),
        ("ring8.gan/v12", ModelRef("ring8.gan", version="12")),
        ("m/latest", ModelRef("m", version="latest")),
    ],
)
def test_parse_model_uri(text, ref):
    assert parse_model_uri(text) == ref
    assert parse_model_uri(ref.uri) == ref


@pytest.mark.parametrize("text", ["digits", "a/b/c", "../x@champion", "m@", "m/x", "models:/", "m@v1x y"])
def test_parse_model_uri_rejects_malformed(text):
    with pytest.raises(ModelNotFoundError, match="is not NAME@ALIAS"):
        parse_model_uri(text)


def test_tracking_uri_precedence(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert resolve_tracking_uri("sqlite:///rel/x.db") == f"sqlite:///{tmp_path / 'rel' / 'x.db'}"
    assert resolve_tracking_uri("http://mlflow:5000") == "http://mlflow:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_tracking_uri("http://mlflow:5000") == "http://env:5000"


# ---------------------------------------------------------------------------------------------------- CLI


def test_models_and_sample_commands(mlflow_tracking_uri, tmp_path, cache_dir, capsys):
    uri = mlflow_tracking_uri
    images, points = unique_name("cli-digits"), unique_name("cli-ring")
    ckpt_a, gen_a = make_checkpoint(tmp_path / "a", seed=1)
    ckpt_b, _ = make_checkpoint(tmp_path / "b", seed=2)
    register_champion(uri, images, "champion", candidate(ckpt_a, 5.0, "ta"), JOB_YAML, {"job": "tiny", "floor": 0.5})
    register_champion(uri, images, "champion", candidate(ckpt_b, 6.0, "tb"), JOB_YAML, {"job": "tiny", "floor": 0.5})
    ckpt_p, gen_p = make_checkpoint(tmp_path / "p", kind="points")
    register_champion(uri, points, "champion", candidate(ckpt_p, 3.0), JOB_YAML, {})

    def run(*argv: str) -> str:
        code = cli_main([*argv, "--tracking-uri", uri])
        out = capsys.readouterr()
        assert code == 0, out.err
        return out.out

    listing = run("models", "list")
    row = next(line for line in listing.splitlines() if line.startswith(images))
    assert row.split()[:5] == [images, "champion", "1", "fid", "5"]

    described = run("models", "describe", images)
    assert "aliases: @champion -> v1" in described and "lineage of v1" in described
    assert "does not beat v1" in described and "checksum sha256:digits-test" in described and "floor: 0.5" in described

    compare_png = tmp_path / "compare.png"
    compared = run("models", "compare", images, "champion", "2", "--out", str(compare_png))
    assert "fid" in compared and "ta" in compared and "tb" in compared
    with Image.open(compare_png) as img:
        assert img.width >= 2 * 24

    assert f"{images}@champion -> version 2" in run("models", "promote", images, "2")
    assert client_for(uri).get_model_version_by_alias(images, "champion").version == "2"

    run("models", "pull", f"{images}/1", "--out", str(tmp_path / "model"))
    assert (generator_dir(tmp_path / "model") / "generator.safetensors").is_file()

    npy = tmp_path / "samples.npy"
    run("sample", f"models:/{images}/1", "-n", "6", "--seed", "3", "--out", str(npy))
    arr = np.load(npy)
    assert arr.shape == (6, 8, 8, 1) and arr.dtype == np.uint8
    expected = ((generate(gen_a, 6, seed=3) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(arr, expected)

    run("sample", f"{points}@champion", "-n", "5", "--out", str(tmp_path / "points.npy"))
    pts = np.load(tmp_path / "points.npy")
    assert pts.shape == (5, 2) and pts.dtype == np.float32
    assert np.array_equal(pts, generate(gen_p, 5, seed=0).numpy())

    run("sample", f"{images}@champion", "-n", "16", "--out", str(tmp_path / "grid.png"))
    run("sample", f"{points}@champion", "-n", "200", "--out", str(tmp_path / "points.png"))
    for png in ("grid.png", "points.png"):
        with Image.open(tmp_path / png) as img:
            assert img.width > 8 and img.height > 8


def test_sample_rejects_bad_requests_with_exit_2(mlflow_tracking_uri, tmp_path, capsys):
    name = unique_name("cli-bad")
    checkpoint, _ = make_checkpoint(tmp_path / "ckpt")
    register_champion(mlflow_tracking_uri, name, "champion", candidate(checkpoint, 1.0), JOB_YAML, {})
    base = ["--tracking-uri", mlflow_tracking_uri]
    assert cli_main(["sample", f"{name}@champion", "--out", str(tmp_path / "x.jpg"), *base]) == 2
    assert "use a .png (grid) or .npy" in capsys.readouterr().err
    assert cli_main(["sample", f"{name}@champion", "--class", "3", "--out", str(tmp_path / "x.npy"), *base]) == 2
    assert "unconditional" in capsys.readouterr().err
    assert cli_main(["sample", "not a uri", "--out", str(tmp_path / "x.npy"), *base]) == 2
    assert "is not NAME@ALIAS" in capsys.readouterr().err
