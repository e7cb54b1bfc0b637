"""Shared fixtures. Real services (moto S3, MLflow server, Ray head) are started once per session on 127.0.0.1."""
import os

import pytest

# Ray 2.60 warns about token authentication; tests run a local dev cluster.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

pytest_plugins = [
    "tests.fixtures.s3",
    "tests.fixtures.mlflow_server",
    "tests.fixtures.ray_head",
    "tests.fixtures.ray_local",
    "tests.fixtures.ids_data",
]

# Tests train tiny networks: one thread each avoids oversubscribing the 2 cores when processes run side by side.
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    """One cache for the session's trainer tests: the digits feature network and the data sets are built once."""
    path = tmp_path_factory.getbasetemp() / "trainers-cache"
    path.mkdir(exist_ok=True)
    return path
