"""The CLI as a user meets it: every bad file is exit 2 with one line per problem, start-up loads no heavy library,
and the conventions (--version, --debug anywhere, --json, examples in --help, completion) hold."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.test_spec import GOOD

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def errors_of(capsys, tmp_path, text, *args):
    job = tmp_path / "job.yaml"
    job.write_text(text)
    code, out, err = run_cli(capsys, "validate", str(job), *args)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert lines and all(line.startswith("ganforge: error: ") for line in lines), err
    assert "Traceback" not in err
    return lines


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize("text, expected", [
    ("", "the job file is empty"),
    ("# only a comment\n# and another\n", "the job file is empty"),
    ("- name: a\n- name: b\n", "holds a list"),
    ("just words\n", "holds a single value"),
    (BILLION_LAUGHS, "more than 100,000 values after expanding YAML aliases"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ("name: x\n" + "# padding\n" * 120_000, "over the 1,048,576 limit (1 MiB)"),
])
def test_hostile_files_are_one_line_and_exit_2(capsys, tmp_path, text, expected):
    lines = errors_of(capsys, tmp_path, text)
    assert len(lines) == 1 and expected in lines[0]


@pytest.mark.parametrize("change, expected", [
    (("search:\n  space:", "search:\n  algorithm: grid\n  space:"),
     "job.yaml:11: search.space.train.lr_g: algorithm grid needs choice or grid values, not a loguniform range"),
    (("builtin:ring8", "ftp://host/data"), "job.yaml:3: data.uri: scheme 'ftp://' is not supported here"),
    (("builtin:ring8", "s3://"), "job.yaml:3: data.uri: s3:// needs a bucket"),
    (("builtin:ring8", "builtin:rings"), "unknown built-in data set 'builtin:rings'"),
    (("family: gan", "family: dcgan"), "job.yaml:5: model.family: 'dcgan' trains on image data, but builtin:ring8"),
    (("steps: 100", "steps: 100\nregistry:\n  alias: my best/model v2"),
     "job.yaml:9: registry.alias: 'my best/model v2' may only contain letters, digits"),
    (("steps: 100", "steps: 100\nregistry:\n  alias: latest"), "registry.alias: 'latest' is reserved by MLflow"),
    (("steps: 100", "steps: 100\nregistry:\n  model_name: team/gan"), "registry.model_name: 'team/gan' must not"),
    (("steps: 100", "steps: 100\nstorage:\n  uri: ftp://x/y"), "storage.uri: scheme 'ftp://' is not supported"),
    (("steps: 100", "steps: 100\nregistry:\n  tracking_uri: http://"), "registry.tracking_uri: http:// needs a host"),
])
def test_each_problem_names_its_line_and_field(capsys, tmp_path, change, expected):
    lines = errors_of(capsys, tmp_path, GOOD.replace(*change))
    assert any(expected in line for line in lines), lines


def test_metric_must_fit_the_data_kind(capsys, tmp_path):
    digits = GOOD.replace("builtin:ring8", "builtin:digits").replace("family: gan", "family: dcgan")
    lines = errors_of(capsys, tmp_path, digits + "  metric: reverse_kl\n")
    assert any("search.metric: 'reverse_kl' is not reported for image data" in line for line in lines), lines
    lines = errors_of(capsys, tmp_path, GOOD + "  metric: fdi\n")
    assert any("unknown metric 'fdi'; did you mean" in line for line in lines), lines
    # A value trials report outside the suites (an applied hyperparameter, a diagnostic) ranks with its direction.
    (tmp_path / "reported.yaml").write_text(GOOD + "  metric: applied_lr_g\n  mode: max\n")
    assert run_cli(capsys, "validate", str(tmp_path / "reported.yaml"))[0] == 0


def test_all_errors_reported_up_to_a_cap(capsys, tmp_path):
    three = GOOD.replace("steps: 100", "steps: -1\n  lr_d: 0\n  stepz: 3")
    lines = errors_of(capsys, tmp_path, three)
    assert [line.split()[2].rsplit("/", 1)[-1] for line in lines] == ["job.yaml:7:", "job.yaml:8:", "job.yaml:9:"]
    many = "train:\n" + "".join(f"  unknown_{i}: 1\n" for i in range(25))
    lines = errors_of(capsys, tmp_path, many)
    assert len(lines) == 21 and "... and 5 more (25 errors in" in lines[-1]


def test_mlflow_rules_match_mlflow_itself():
    from mlflow.exceptions import MlflowException
    from mlflow.utils import validation as mv

    from orchestrator.spec.checks import alias_problem, model_name_problem

    def mlflow_refuses(fn, *args):
        try:
            for f in fn:
                f(*args)
        except MlflowException:
            return True
        return False

    for alias in ("champion", "best_2", "a-b", "latest", "LATEST", "v3", "V12", "has space", "a/b", "x" * 256, "v3a"):
        refused = mlflow_refuses((mv._validate_model_alias_name, mv._validate_model_alias_name_reserved), alias)
        assert bool(alias_problem(alias)) == refused, alias
    for name in ("digits-dcgan", "My Model", "a/b", "a:b", "./x", "x/..", "..", "."):
        assert bool(model_name_problem(name)) == mlflow_refuses((mv._validate_model_name,), name), name


def test_set_errors_name_the_argument_and_reach_search_space(capsys, tmp_path):
    lines = errors_of(capsys, tmp_path, GOOD, "--set", "registry.alias=v2")
    assert lines == ["ganforge: error: --set registry.alias=v2: registry.alias: 'v2' is reserved by MLflow "
                     "(latest, v1, v2 ... name versions)"]
    lines = errors_of(capsys, tmp_path, GOOD, "--set", "search.space.train.lr_d={uniform: [1, 0]}")
    assert lines[0].startswith("ganforge: error: --set search.space.train.lr_d={uniform: [1, 0]}: ")
    from orchestrator.spec import load_job_text

    job = load_job_text(GOOD, overrides=["search.space.train.lr_g={loguniform: [1e-5, 1e-4]}",
                                         "search.space.train.loss,train.n_critic=null",
                                         "search.space.model.pack={choice: [1, 2]}"])
    space = job.spec.search.space
    assert space["train.lr_g"].loguniform == (1e-5, 1e-4) and set(space) == {"train.lr_g", "model.pack"}


def test_start_up_imports_no_heavy_library():
    code = (
        "import sys\nfrom orchestrator.cli import main\n"
        "for args in (['--help'], ['validate', 'jobs/quickstart.yaml'], ['schema'], ['--version'],\n"
        "             ['jobs', 'list', '--address', 'http://127.0.0.1:9']):\n"
        "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
        "print(sorted(m for m in ('torch', 'ray.tune', 'mlflow') if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.stdout.strip().splitlines()[-1] == "[]", res.stdout + res.stderr


def test_conventions(capsys, tmp_path, monkeypatch):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("ganforge 0.1.0")
    bad = tmp_path / "bad.yaml"
    bad.write_text("")
    with pytest.raises(Exception):  # --debug after the command: the error is raised, not printed
        main(["validate", str(bad), "--debug"])
    code, out, _ = run_cli(capsys, "validate", "jobs/quickstart.yaml", "--json")
    assert code == 0
    assert json.loads(out) == {"file": "jobs/quickstart.yaml", "ok": True, "job": "digits-dcgan", "errors": []}
    code, out, _ = run_cli(capsys, "validate", str(bad), "--json")
    assert code == 2 and json.loads(out)["errors"][0].endswith("(name, data, model, train, ...)")
    for command in (["validate"], ["run"], ["submit"], ["jobs", "list"], ["models", "list"], ["data", "inspect"]):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        help_text = capsys.readouterr().out
        assert "\nexamples:\n  ganforge " in help_text, command
    for shell in ("bash", "zsh"):
        code, out, _ = run_cli(capsys, "completion", shell)
        assert code == 0 and "_python_argcomplete" in out and "ganforge" in out
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, out, err = run_cli(capsys, "models", "list", "--json")
    assert code == 0 and json.loads(out) == [] and f"no MLflow store at {tmp_path}/mlflow.db" in err
    assert not (tmp_path / "mlflow.db").exists()


def test_errors_never_show_a_value_that_came_from_an_environment_variable(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GF_SECRET_URI", "ftp://host/data?token=tok3n-s3cr3t")
    lines = errors_of(capsys, tmp_path, GOOD + "registry:\n  tracking_uri: ${GF_SECRET_URI}\n")
    assert len(lines) == 1 and "registry.tracking_uri: scheme 'ftp://'" in lines[0]
    assert "${GF_SECRET_URI}" in lines[0] and "s3cr3t" not in lines[0]


@pytest.mark.parametrize("change", [
    ("search:\n  space:", "search:\n  algorithm: grid\n  space:"),
    ("family: gan", "family: dcgan"),
    ("steps: 100", "steps: 0"),
])
def test_validate_is_never_weaker_than_a_dry_run(capsys, tmp_path, change):
    job = tmp_path / "job.yaml"
    job.write_text(GOOD.replace(*change))
    validate = run_cli(capsys, "validate", str(job))
    dry_run = run_cli(capsys, "run", str(job), "--dry-run", "--no-preflight")
    assert validate[0] == dry_run[0] == 2 and validate[2] == dry_run[2]


def test_json_shapes_of_plan_stack_and_data(capsys, tmp_path, monkeypatch, cache):
    monkeypatch.setenv("GANFORGE_CACHE", str(cache))
    code, out, _ = run_cli(capsys, "run", "jobs/quickstart.yaml", "--dry-run", "--json", "--no-preflight")
    plan = json.loads(out)
    assert code == 0 and plan["trials"] == 6 and plan["registered_model"] == "digits-dcgan@champion"
    code, out, _ = run_cli(capsys, "stack", "status", "--json", "--dir", str(tmp_path / "no-stack"))
    assert code == 1 and json.loads(out) == {"dir": str(tmp_path / "no-stack"), "up": False, "services": []}
    code, out, _ = run_cli(capsys, "data", "inspect", "builtin:ring8", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["manifest"]["kind"] == "points" and shown["num_rows"] == 100_000


def test_type_errors_do_not_hide_name_and_uri_errors(capsys, tmp_path):
    text = GOOD.replace("steps: 100", "steps: many") + "registry:\n  alias: best model\nstorage:\n  uri: ftp://x/y\n"
    lines = errors_of(capsys, tmp_path, text)
    assert [line.split(": ")[3] for line in lines] == ["train.steps", "registry.alias", "storage.uri"], lines
