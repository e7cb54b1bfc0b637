"""Job spec validation: good jobs load, bad input gets one actionable line with the YAML path and line."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import SpecError
from orchestrator.spec import JobSpec, load_job, load_job_text

ROOT = Path(__file__).resolve().parents[1]
GOOD = """\
name: tiny
data:
  uri: builtin:ring8
model:
  family: gan
train:
  steps: 100
search:
  space:
    train.lr_g: {loguniform: [1e-4, 1e-3]}
    train.loss,train.n_critic: {choice: [[ns, 1], [wgan-gp, 5]]}
"""


def error_of(text: str, overrides=()) -> str:
    with pytest.raises(SpecError) as info:
        load_job_text(text, "job.yaml", overrides)
    message = str(info.value)
    assert "\n" not in message.strip(), "errors must fit on one line"
    return message


@pytest.mark.parametrize("job", sorted((ROOT / "jobs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_jobs_are_valid(job):
    assert load_job(job).spec.name


def test_defaults_and_values():
    spec = load_job_text(GOOD).spec
    assert spec.train.lr_g == 2e-4 and spec.train.steps == 100
    assert spec.search.space["train.lr_g"].loguniform == (1e-4, 1e-3)
    assert spec.model_name == "tiny" and spec.registry.alias == "champion"


def test_every_field_has_a_description():
    missing = []

    def walk(schema, defs, where):
        for name, prop in schema.get("properties", {}).items():
            if "description" not in prop:
                missing.append(f"{where}.{name}")
            ref = prop.get("$ref") or next((a.get("$ref") for a in prop.get("anyOf", []) if "$ref" in a), None)
            if ref:
                walk(defs[ref.split("/")[-1]], defs, f"{where}.{name}")

    schema = JobSpec.model_json_schema()
    walk(schema, schema["$defs"], "job")
    assert not missing


@pytest.mark.parametrize(
    "text, overrides, expected",
    [
        (GOOD.replace("steps: 100", "stepz: 100"), (), "job.yaml:7: train.stepz: unknown key; did you mean 'train.steps'?"),
        (GOOD, ["train.lr_g=-1"], "--set train.lr_g=-1: train.lr_g: Input should be greater than 0"),
        (GOOD, ["trian.lr_g=1"], "trian: unknown key; did you mean 'train'?"),
        (GOOD.replace("family: gan", "family: gann"), (), "job.yaml:5: unknown model.family 'gann'; did you mean 'gan'?"),
        (GOOD.replace("name: tiny", "name: Tiny Job"), (), "job.yaml:1: name: 'Tiny Job' is not a safe name"),
        (GOOD.replace("train.lr_g:", "train.lr:"), (), "job.yaml:10: search.space: 'train.lr' is not a spec field"),
        (GOOD.replace("wgan-gp, 5", "wgan-gpp, 5"), (), "unknown train.loss 'wgan-gpp'; did you mean 'wgan-gp'?"),
        (GOOD.replace("[1e-4, 1e-3]", "[1e-3, 1e-4]"), (), "loguniform needs low < high"),
        (GOOD + "train:\n  steps: 5\n", (), "job.yaml:12: duplicate key 'train'"),
        (GOOD.replace("builtin:ring8", "!!python/object/apply:os.system [ls]"), (), "is not allowed"),
        (GOOD.replace("builtin:ring8", "s3://AKIA:secret@bucket/x"), (), "credentials must not be written in the job file"),
        ("name: [unclosed", (), "job.yaml:1: not valid YAML"),
    ],
)
def test_bad_input_names_path_and_line(text, overrides, expected):
    assert expected in error_of(text, overrides)


def test_env_references_are_resolved_but_redacted(monkeypatch):
    monkeypatch.setenv("GF_TRACKING", "http://user:hunter2@mlflow:5000")
    job = load_job_text(GOOD + "registry:\n  tracking_uri: ${GF_TRACKING}\n")
    assert job.spec.registry.tracking_uri == "http://user:hunter2@mlflow:5000"
    assert "hunter2" not in json.dumps(job.redacted()) and "hunter2" not in job.text


def test_missing_env_reference_is_an_error():
    assert "GF_NOT_SET_ANYWHERE is not set" in error_of(GOOD + "storage:\n  uri: ${GF_NOT_SET_ANYWHERE}\n")


def test_set_overrides_any_field():
    job = load_job_text(GOOD, overrides=["search.num_samples=8", "train.loss=hinge", "model.spectral_norm=true"])
    assert job.spec.search.num_samples == 8 and job.spec.train.loss == "hinge" and job.spec.model.spectral_norm is True


def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_validate_exit_codes(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("steps: 100", "steps: -3"))
    ok = cli("validate", "jobs/quickstart.yaml")
    assert ok.returncode == 0, ok.stderr
    res = cli("validate", str(bad))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) <= 2
    assert f"{bad}:7: train.steps" in res.stderr
    assert cli("validate", str(tmp_path / "missing.yaml")).returncode == 2


def test_cli_schema_is_json_schema():
    res = cli("schema")
    schema = json.loads(res.stdout)
    assert {"name", "data", "model", "train", "search", "resources", "storage", "registry", "cluster"} <= set(schema["properties"])


def test_cli_dry_run_prints_plan_without_ray():
    res = cli("run", "jobs/quickstart.yaml", "--dry-run", "--set", "search.num_samples=8")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for expected in ("trials", "8", "asha", "fd_own (min)", "train.lr_g", "digits-dcgan@champion", "ganforge-results"):
        assert expected in out


def test_catalog_declares_exactly_the_implemented_components():
    """The torch-free catalog that validation reads and the torch registries that training uses hold the same names."""
    from trainers import catalog
    from trainers.accel import PRECISIONS
    from trainers.augment import AUGMENTATIONS
    from trainers.families import FAMILIES
    from trainers.losses import LOSSES
    from trainers.metrics.base import METRIC_SUITES, load_all_suites
    from trainers.metrics.declared import FEATURE_SPACES, METRIC_SUITE_INFO
    from trainers.metrics.extractors import EXTRACTORS
    from trainers.optim import OPTIMIZERS
    from trainers.penalties import PENALTIES

    load_all_suites()

    for declared, implemented in ((catalog.FAMILY_INFO, FAMILIES), (catalog.LOSS_INFO, LOSSES),
                                  (catalog.PENALTY_INFO, PENALTIES), (catalog.OPTIMIZER_NAMES, OPTIMIZERS),
                                  (catalog.PRECISION_NAMES, PRECISIONS), (catalog.AUGMENT_NAMES, AUGMENTATIONS),
                                  (METRIC_SUITE_INFO, METRIC_SUITES), (FEATURE_SPACES, EXTRACTORS)):
        assert declared.names() == implemented.names(), declared.kind
    with pytest.raises(ValueError, match="not declared in trainers/catalog.py"):
        FAMILIES.register("biggan")


DIGITS = GOOD.replace("builtin:ring8", "builtin:digits").replace("family: gan", "family: dcgan")


def test_metric_names_follow_the_feature_space(caplog):
    from orchestrator.search import SearchPlan

    plan = lambda text: SearchPlan.from_spec(load_job_text(text, "job.yaml").spec)  # noqa: E731
    assert plan(DIGITS).metric == "fd_own"
    assert plan(DIGITS + "metrics: {features: inception}\n").metric == "fid"
    # `fid` in a job file written before feature spaces meant the own network: it still runs, and says so
    with caplog.at_level("WARNING"):
        old = plan(DIGITS + "  metric: fid\n")
    assert (old.metric, old.mode) == ("fd_own", "min")
    assert "'fid' now names the Inception score only; with metrics.features own it is 'fd_own'" in caplog.text
    assert plan(DIGITS + "  metric: fid\nmetrics: {features: inception}\n").metric == "fid"


def test_feature_space_is_checked_against_names_and_data():
    assert "job.yaml:12: unknown metrics.features 'inceptoin'; did you mean 'inception'" in error_of(
        DIGITS + "metrics: {features: inceptoin}\n")
    assert "metrics.features: 'inception' scores images, but builtin:ring8 holds points data" in error_of(
        GOOD + "metrics: {features: inception}\n")
    assert "search.metric: 'fd_own' is not reported for image data with metrics.features inception" in error_of(
        DIGITS + "  metric: fd_own\nmetrics: {features: inception}\n")


def test_metric_declarations_load_without_torch():
    code = ("import sys; from trainers.metrics.declared import METRIC_MODES; import orchestrator.spec; "
            "import orchestrator.report.sections.provenance; assert 'torch' not in sys.modules; print(METRIC_MODES['fd_own'])")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT).stdout.strip() == "min"
