"""infra/ manifests against the real schemas (KubeRay CRDs, the Compose spec, Ray's cluster-launcher schema), plus
what no schema checks: one image and one set of versions everywhere, commands ganforge's CLI accepts, and no
secret written inline."""
from __future__ import annotations

import copy
import json
import re
import shlex
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
SHARED = Path(__file__).resolve().parents[2] / "shared"  # CI checks ../shared out beside the repository
SCHEMAS = SHARED / "schemas"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY", re.I)
INTERPOLATION = re.compile(r"^\$\{[A-Z0-9_]+(:?[?-][^}]*)?\}$")


def load_yaml(path: Path):
    # The C build of the safe loader: the same rules as yaml.safe_load, 10x faster on the 1 MB KubeRay CRDs.
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def need_shared() -> None:
    if not SCHEMAS.is_dir():
        pytest.skip(f"{SCHEMAS} not found: the schemas come from the shared/ checkout beside the repository")


def strict(schema):
    """Reject unknown fields like `kubectl apply --validate=strict`: CRD schemas leave additionalProperties open
    (the API server prunes unknown keys silently), so a typo such as `minReplica` would otherwise pass."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def crd_validators() -> dict[str, jsonschema.protocols.Validator]:
    need_shared()
    validators = {}
    for path in sorted((SCHEMAS / "kuberay").glob("*.yaml")):
        crd = load_yaml(path)
        v1 = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        schema = strict(v1["schema"]["openAPIV3Schema"])
        validators[crd["spec"]["names"]["kind"]] = jsonschema.Draft7Validator(schema)
    assert {"RayCluster", "RayJob"} <= set(validators)
    return validators


def validation_errors(validator, document) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}" for e in validator.iter_errors(document)]


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def pinned(package: str) -> str:
    """The exact version pyproject.toml pins for `package` (`name[extras]==X`)."""
    for dep in pyproject()["project"]["dependencies"]:
        if re.match(rf"{package}(\[|=|$)", dep) and "==" in dep:
            return dep.split("==", 1)[1].strip()
    raise AssertionError(f"{package} is not pinned with == in pyproject.toml")


def ganforge_image() -> str:
    return f"ghcr.io/ganforge/ganforge:{pyproject()['project']['version']}"


def k8s(name: str) -> dict:
    return load_yaml(INFRA / "k8s" / name)


def containers(cluster_spec: dict) -> list[dict]:
    groups = [cluster_spec["headGroupSpec"], *cluster_spec.get("workerGroupSpecs", [])]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def ganforge_argv(command: str) -> list[str]:
    """`python -m orchestrator.cli ARGS` -> ARGS, asserting the prefix."""
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "orchestrator.cli"], command
    return argv[3:]


# ------------------------------------------------------------------ KubeRay
def test_raycluster_and_rayjob_validate_against_the_kuberay_crds(crd_validators):
    for name in ("raycluster.yaml", "rayjob.yaml"):
        manifest = k8s(name)
        assert manifest["apiVersion"] == "ray.io/v1"
        assert validation_errors(crd_validators[manifest["kind"]], manifest) == [], name


def test_strict_crd_validation_catches_a_misspelt_field(crd_validators):
    manifest = k8s("raycluster.yaml")
    group = manifest["spec"]["workerGroupSpecs"][0]
    group["minReplica"] = group.pop("minReplicas")
    assert any("minReplica" in e for e in validation_errors(crd_validators["RayCluster"], manifest))


def test_raycluster_has_a_cpu_head_and_an_autoscaled_gpu_worker_group():
    spec = k8s("raycluster.yaml")["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head["resources"].get("limits", {})
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # trials go to the workers
    gpu = next(g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu")
    worker = gpu["template"]["spec"]["containers"][0]
    assert int(worker["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert 0 <= gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"] and gpu["maxReplicas"] > gpu["minReplicas"]


def test_rayjob_runs_ganforge_run_on_the_job_yaml_from_the_configmap():
    from orchestrator.cli import build_parser
    from orchestrator.spec import load_job_text

    spec = k8s("rayjob.yaml")["spec"]
    args = build_parser().parse_args(ganforge_argv(spec["entrypoint"]))
    assert args.command == "run" and args.handler.__name__ == "cmd_run"
    job_path = Path(args.job)

    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mount = next(m for m in head["containers"][0]["volumeMounts"] if m["mountPath"] == str(job_path.parent))
    volume = next(v for v in head["volumes"] if v["name"] == mount["name"])
    configmap = k8s("job-configmap.yaml")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert {"key": "job.yaml", "path": job_path.name} in volume["configMap"]["items"]

    job = load_job_text(configmap["data"]["job.yaml"], "infra/k8s/job-configmap.yaml")  # a valid ganforge job
    assert job.spec.storage.uri.startswith("s3://"), "results on a pod's disk die with the pod"
    assert job.spec.resources.gpus_per_trial > 0
    assert "MLFLOW_TRACKING_URI" in k8s("env-configmap.yaml")["data"]


def test_rayjob_cluster_is_the_raycluster_plus_the_job_mount():
    cluster = copy.deepcopy(k8s("rayjob.yaml")["spec"]["rayClusterSpec"])
    head = cluster["headGroupSpec"]["template"]["spec"]
    head["volumes"] = [v for v in head["volumes"] if "configMap" not in v]
    head["containers"][0]["volumeMounts"] = [m for m in head["containers"][0]["volumeMounts"] if m["name"] != "job"]
    assert cluster == k8s("raycluster.yaml")["spec"]


def test_pod_credentials_come_from_secrets_and_settings_from_a_configmap():
    assert not any(doc.get("kind") == "Secret" for p in (INFRA / "k8s").glob("*.yaml") for doc in [load_yaml(p)])
    for name, spec in (("raycluster.yaml", k8s("raycluster.yaml")["spec"]),
                       ("rayjob.yaml", k8s("rayjob.yaml")["spec"]["rayClusterSpec"])):
        for container in containers(spec):
            env = {e["name"]: e for e in container.get("env", [])}
            for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_PASSWORD"):
                assert "secretKeyRef" in env[var].get("valueFrom", {}), f"{name}: {container['name']} {var}"
            assert all("value" not in e for e in env.values() if SECRET_NAME.search(e["name"]))
            assert {"configMapRef": {"name": "ganforge-env"}} in container["envFrom"]
    assert not [k for k in k8s("env-configmap.yaml")["data"] if SECRET_NAME.search(k)]


# ------------------------------------------------------------------ Ray cluster launcher (AWS)
def test_aws_cluster_validates_against_the_schema_shipped_in_ray():
    import ray
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = load_yaml(INFRA / "aws" / "cluster.yaml")
    assert validation_errors(jsonschema.Draft7Validator(schema), config) == []
    validate_config(prepare_config(copy.deepcopy(config)))  # Ray's own checks on top of the schema


def test_aws_cluster_autoscales_gpu_workers_and_installs_the_synced_checkout():
    from orchestrator.cli import build_parser

    config = load_yaml(INFRA / "aws" / "cluster.yaml")
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    gpu = types["gpu_worker"]
    assert re.match(r"^(g|p)\d", gpu["node_config"]["InstanceType"]), "GPU workers need a g*/p* instance type"
    assert 0 <= gpu["min_workers"] < gpu["max_workers"] <= config["max_workers"]

    checkout = next(remote for remote, local in config["file_mounts"].items() if local == ".")
    assert any(c.startswith("pip install") and checkout in c for c in config["setup_commands"])
    checks = [c for c in config["setup_commands"] if c.startswith("python -m orchestrator.cli")]
    assert checks and all(build_parser().parse_args(ganforge_argv(c)).command == "validate" for c in checks)

    env_file = next(o.split()[-1] for o in config["docker"]["run_options"] if o.startswith("--env-file"))
    local_env = Path(config["file_mounts"][env_file])
    assert (REPO / f"{local_env}.example").is_file(), "the env file the nodes read needs a committed template"
    assert str(local_env.relative_to("infra")) in (INFRA / ".gitignore").read_text()


# ------------------------------------------------------------------ compose
def test_compose_validates_against_the_compose_spec():
    need_shared()
    schema = json.loads((SCHEMAS / "compose" / "compose-spec.json").read_text())
    assert "draft-07" in schema["$schema"]
    assert validation_errors(jsonschema.Draft7Validator(schema), load_yaml(INFRA / "compose.yaml")) == []


def test_compose_runs_minio_mlflow_on_postgres_with_s3_artifacts_and_a_ray_head():
    services = load_yaml(INFRA / "compose.yaml")["services"]
    assert services["minio"]["image"].startswith("minio/minio:")
    assert services["postgres"]["image"].startswith("postgres:")
    mlflow = services["mlflow"]
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://")
    assert "--artifacts-destination=s3://ganforge/mlflow-artifacts" in mlflow["command"]
    assert mlflow["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert mlflow["depends_on"]["postgres"]["condition"] == "service_healthy"
    head = services["ray-head"]
    assert head["command"][:3] == ["ray", "start", "--head"]
    assert head["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert head["environment"]["AWS_ENDPOINT_URL"] == "http://minio:9000"
    published = [p for s in services.values() for p in s.get("ports", [])]
    assert published and all(p.startswith("127.0.0.1:") for p in published), "the local stack must not listen on the LAN"


# ------------------------------------------------------------------ one image, one set of versions
def test_every_manifest_runs_the_same_ganforge_image():
    images = {
        "k8s/raycluster.yaml": [c["image"] for c in containers(k8s("raycluster.yaml")["spec"])],
        "k8s/rayjob.yaml": [c["image"] for c in containers(k8s("rayjob.yaml")["spec"]["rayClusterSpec"])],
        "aws/cluster.yaml": [load_yaml(INFRA / "aws" / "cluster.yaml")["docker"]["image"]],
        "compose.yaml": [s["image"] for s in load_yaml(INFRA / "compose.yaml")["services"].values()
                         if "ganforge/ganforge" in s.get("image", "")],
    }
    assert len(images["compose.yaml"]) >= 2  # s3-init, ray-head (and the GPU worker)
    for source, found in images.items():
        assert found and set(found) == {ganforge_image()}, f"{source}: {found}"
    dockerfile_build = load_yaml(INFRA / "compose.yaml")["services"]["ray-head"]["build"]
    assert (INFRA / dockerfile_build["context"] / dockerfile_build["dockerfile"]).resolve() == INFRA / "docker" / "Dockerfile"
    assert f"-t {ganforge_image()}" in (INFRA / "docker" / "Dockerfile").read_text()


def test_versions_match_pyproject_and_the_installed_packages():
    import mlflow
    import ray
    from packaging.specifiers import SpecifierSet

    ray_version = pinned("ray")
    assert ray.__version__ == ray_version
    for name in ("raycluster.yaml", "rayjob.yaml"):
        spec = k8s(name)["spec"]
        assert (spec.get("rayClusterSpec") or spec)["rayVersion"] == ray_version, name

    dockerfile = (INFRA / "docker" / "Dockerfile").read_text()
    assert re.search(r"^ARG TORCH_VERSION=(\S+)$", dockerfile, re.M).group(1) == pinned("torch")

    mlflow_docker = (INFRA / "docker" / "mlflow.Dockerfile").read_text()
    server_version = re.search(r"^ARG MLFLOW_VERSION=(\S+)$", mlflow_docker, re.M).group(1)
    mlflow_spec = next(d for d in pyproject()["project"]["dependencies"] if d.startswith("mlflow"))
    assert server_version in SpecifierSet(mlflow_spec.removeprefix("mlflow"))
    assert server_version == mlflow.__version__, "the compose MLflow server should be the MLflow ganforge talks to"
    compose_mlflow = load_yaml(INFRA / "compose.yaml")["services"]["mlflow"]
    assert compose_mlflow["build"]["args"]["MLFLOW_VERSION"] == server_version
    assert compose_mlflow["image"].endswith(f":{server_version}")


# ------------------------------------------------------------------ secrets
def infra_files() -> list[Path]:
    return [p for p in INFRA.rglob("*") if p.is_file()]


def test_no_secret_value_is_written_in_infra():
    patterns = {
        "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
        "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
        "credentials in a URI": re.compile(r"://[^/\s:@]+:(?!\$\{)[^/\s@]+@"),
    }
    for path in infra_files():
        text = path.read_text()
        for what, pattern in patterns.items():
            assert not pattern.search(text), f"{path.relative_to(REPO)}: {what}"


def test_compose_secrets_are_interpolated_from_the_env_file():
    compose = load_yaml(INFRA / "compose.yaml")
    for name, service in compose["services"].items():
        env = service.get("environment", {})
        assert isinstance(env, dict), f"{name}: use a mapping for environment"
        for key, value in env.items():
            if SECRET_NAME.search(key):
                assert INTERPOLATION.match(str(value)), f"{name}.{key} must come from infra/.env, not be written inline"
    template = (INFRA / ".env.example").read_text()
    for line in template.splitlines():
        if "=" in line and not line.startswith("#") and SECRET_NAME.search(line.split("=")[0]):
            assert line.split("=", 1)[1] == "change-me", line
    assert ".env" in (INFRA / ".gitignore").read_text().split()
