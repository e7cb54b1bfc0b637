"""Issue 5, searches: PBT exploit/explore done right, seeds ranked by median and divergence, optuna + median stopping,
grid + ASHA, and what a GPU request does on a cluster without GPUs.

Every job runs for real through `run_job` on one embedded Ray shared by the module (4 trials of a tiny ring-8 MLP GAN
each); MLflow is the session's SQLite store, data sets materialise into a module cache.
"""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
import yaml

from orchestrator.spec import load_job_text
from tests.fixtures.jobs import job_yaml
from tests.pbt_evidence import donor_fingerprints

# A hung search (e.g. trials waiting for resources that never come) fails here instead of at the suite's 600 s.
pytestmark = pytest.mark.timeout(240)


def job_text(name: str, body: str, tmp: Path, tracking_uri: str, register: bool = False) -> str:
    """The suite's tiny ring-8 job (tests/fixtures/jobs.py) with the sections `body` holds (YAML text)."""
    return job_yaml(name, storage=f"{tmp}/results", tracking_uri=tracking_uri, register=register,
                    **yaml.safe_load(body))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("search-cache"))


def run(name: str, body: str, tmp: Path, tracking_uri: str, cache_dir: str, register: bool = False):
    """Run a job in this process; returns (JobOutcome, what the user saw). Registering costs seconds: only where
    a test looks at it."""
    from orchestrator.runner import run_job

    text = job_text(name, body, tmp, tracking_uri, register)
    stream = io.StringIO()
    outcome = run_job(load_job_text(text), stream=stream, cache_dir=cache_dir)
    return outcome, stream.getvalue()


def reports(run_path: str) -> dict[str, list[dict]]:
    """Each trial's reports from Tune's result.json (trial id -> records). Complete for trials that never restarted;
    see `trial_reports` for those that did."""
    out = {}
    for path in sorted(Path(run_path).glob("trial_*/result.json")):
        lines = path.read_text().splitlines()
        out[path.parent.name.removeprefix("trial_")] = [json.loads(line) for line in lines if line.strip()]
    return out


def parent_run(tracking_uri: str, job: str):
    """The job's MLflow parent run (the one run of its experiment without a parent)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(f"ganforge/{job}")
    runs = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" not in r.data.tags]
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return client, runs[0]


# ------------------------------------------------------------------ PBT
PBT_JOB = """\
train: {steps: 160, eval_every: 20, eval_samples: 500, ema_decay: 0.0}
search:
  scheduler: pbt
  num_samples: 4
  random_seed: 3
  space:
    train.lr_g: {loguniform: [1.0e-4, 1.0e-2]}
    # So narrow that Ray's x0.8 / x1.2 always leaves it: every mutated value must come back clipped to a bound.
    train.lr_d: {uniform: [1.0e-3, 1.2e-3]}
  pbt: {perturbation_interval: 2, quantile_fraction: 0.25, resample_probability: 0.0}
  # More trials than slots: PBT pauses each at its perturbation points and lets the others catch up, so the
  # population meets however staggered the trial processes start (unpaused, a fast trial can finish alone).
  # max_concurrent is ignored under PBT (a cap would keep members 3 and 4 waiting until 1 and 2 finish).
  max_concurrent: 2
resources: {cpus_per_trial: 1}
"""
LR_G_BOUNDS, LR_D_BOUNDS = (1.0e-4, 1.0e-2), (1.0e-3, 1.2e-3)


@pytest.fixture(scope="module")
def pbt_job(ray_local, tmp_path_factory, mlflow_sqlite_uri, cache_dir):
    tmp = tmp_path_factory.mktemp("pbt")
    outcome, out = run("gf5-pbt", PBT_JOB, tmp, mlflow_sqlite_uri, cache_dir)
    from orchestrator.pbt_lineage import collect_policy

    return outcome, out, collect_policy(outcome.run_path)


def trial_reports(tracking_uri: str, job: str) -> dict[str, list[dict]]:
    """Every report of every trial, rebuilt from its MLflow run (one log_batch per report: same timestamp and step).

    Tune's own result.json is no history under PBT: a restarted trial's file is replaced by the last copy synced to
    storage, so reports made since are lost.
    """
    client, parent = parent_run(tracking_uri, job)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    out = {}
    for child in children:
        by_report: dict[tuple[int, int], dict] = {}
        for key in ("fingerprint", "restored_fingerprint", "restored_step", "applied_lr_g", "applied_lr_d"):
            for m in client.get_metric_history(child.info.run_id, key):
                by_report.setdefault((m.timestamp, m.step), {"step": m.step})[key] = m.value
        out[child.data.tags["ganforge.trial_id"]] = [by_report[k] for k in sorted(by_report)]
    return out


def test_pbt_recipient_continues_from_donor_weights_with_its_own_learning_rate(pbt_job, mlflow_sqlite_uri):
    outcome, _, policy = pbt_job
    assert policy, "PBT made no exploit in 8 evaluations of 4 trials"
    by_trial = trial_reports(mlflow_sqlite_uri, "gf5-pbt")
    mutated = 0
    for exploit in policy:
        recipient, donor = by_trial[exploit["recipient"]], by_trial[exploit["donor"]]
        new, old = exploit["new_config"], exploit["donor_config"]
        # Reports the recipient made after restoring weights that the donor checkpointed at the same step (the
        # donor's report of that step may be lost; its checkpoint is not).
        digests = donor_fingerprints(outcome.run_path, exploit["donor"], donor)
        copied = [r for r in recipient if r.get("restored_step") in digests
                  and r["restored_fingerprint"] == pytest.approx(digests[r["restored_step"]], rel=1e-12)]
        assert copied, f"{exploit['recipient']} never continued from {exploit['donor']}'s weights"
        first = min(copied, key=lambda r: r["step"])
        assert first["step"] > first["restored_step"] or first["step"] == 160, "it did not train on from there"
        # ray-project/ray#62173: the donor's optimizer state carries the donor's lr; the trial must use its own.
        assert any(r["applied_lr_g"] == pytest.approx(new["train.lr_g"], rel=1e-9)
                   and r["applied_lr_d"] == pytest.approx(new["train.lr_d"], rel=1e-9) for r in copied), \
            f"after copying {exploit['donor']}, {exploit['recipient']} never trained with its mutated config {new}"
        if new["train.lr_g"] != old["train.lr_g"]:
            mutated += 1
            assert all(r["applied_lr_g"] != pytest.approx(old["train.lr_g"], rel=1e-9) for r in copied), \
                f"{exploit['recipient']} trained with the donor's lr_g {old['train.lr_g']}"
    assert mutated, "no exploit mutated train.lr_g"


def test_pbt_mutations_stay_within_declared_bounds(pbt_job):
    outcome, _, policy = pbt_job
    for exploit in policy:
        lr_g, lr_d = exploit["new_config"]["train.lr_g"], exploit["new_config"]["train.lr_d"]
        assert LR_G_BOUNDS[0] <= lr_g <= LR_G_BOUNDS[1]
        assert lr_d in LR_D_BOUNDS, f"lr_d {lr_d} was not clipped back to [1e-3, 1.2e-3]"
    for records in reports(outcome.run_path).values():
        for r in records:
            assert LR_G_BOUNDS[0] <= r["config"]["train.lr_g"] <= LR_G_BOUNDS[1]
            assert LR_D_BOUNDS[0] <= r["applied_lr_d"] <= LR_D_BOUNDS[1]


def test_pbt_every_trial_keeps_its_own_outcome(pbt_job):
    outcome, _, _ = pbt_job
    ids = [o.trial_id for o in outcome.ranking]
    assert len(ids) == 4 and len(set(ids)) == 4, f"a trial's outcome was replaced by its donor's: {ids}"
    for o in outcome.ranking:
        assert o.status == "done" and o.step == 160
        # Its last result is its own, not the one of a donor it copied at the end.
        assert o.result.metrics["trial_id"] == Path(o.result.path).name.removeprefix("trial_")


def test_pbt_policy_and_lineage_are_logged_to_the_job_run(pbt_job, mlflow_sqlite_uri):
    outcome, _, policy = pbt_job
    client, parent = parent_run(mlflow_sqlite_uri, "gf5-pbt")
    listed = {a.path for a in client.list_artifacts(parent.info.run_id, "pbt")}
    assert listed == {"pbt/pbt_policy.json", "pbt/pbt_lineage.png"}
    logged = json.loads(Path(client.download_artifacts(parent.info.run_id, "pbt/pbt_policy.json")).read_text())
    assert [(r["recipient"], r["donor"]) for r in logged] == [(r["recipient"], r["donor"]) for r in policy]
    trial_ids = set(reports(outcome.run_path))
    assert {r["recipient"] for r in logged} | {r["donor"] for r in logged} <= trial_ids
    from PIL import Image

    with Image.open(client.download_artifacts(parent.info.run_id, "pbt/pbt_lineage.png")) as image:
        assert image.size[0] > 100 and image.size[1] > 100


# ------------------------------------------------------------------ seeds, grid, ASHA
SEEDS_JOB = """\
train: {steps: 60, eval_every: 20, eval_samples: 500, ema_decay: 0.0, loss: wgan, lr_g: 1.0e-3}
search:
  algorithm: grid
  scheduler: asha
  num_samples: 1
  seeds: 2
  space:
    train.lr_d: {grid: [1.0e-3, 50.0]}  # 50 makes a wgan critic explode within a few steps
  asha: {grace_period: 1, reduction_factor: 2}
resources: {cpus_per_trial: 1}
"""


@pytest.fixture(scope="module")
def seeds_job(ray_local, tmp_path_factory, mlflow_sqlite_uri, cache_dir):
    return run("gf5-seeds", SEEDS_JOB, tmp_path_factory.mktemp("seeds"), mlflow_sqlite_uri, cache_dir, register=True)


def test_each_configuration_runs_with_k_seeds_sharing_everything_else(seeds_job):
    outcome, _ = seeds_job
    trials = {(o.params["train.lr_d"], o.params["train.seed"]) for o in outcome.ranking}
    assert trials == {(1.0e-3, 0), (1.0e-3, 1), (50.0, 0), (50.0, 1)}
    assert {o.status for o in outcome.ranking if o.params["train.lr_d"] == 50.0} == {"diverged"}
    assert {o.status for o in outcome.ranking if o.params["train.lr_d"] == 1.0e-3} <= {"done", "stopped"}
    # The seed reached the trainer: same hyperparameters, different weights.
    first = {o.params["train.seed"]: reports(outcome.run_path)[o.trial_id][0]["fingerprint"]
             for o in outcome.ranking if o.params["train.lr_d"] == 1.0e-3}
    assert first[0] != first[1]


def test_configurations_rank_by_median_and_fraction_not_diverged(seeds_job):
    from orchestrator.results import rank_configurations

    outcome, out = seeds_job
    best, worst = rank_configurations(outcome.ranking, "min")
    assert json.loads(best.configuration) == {"train.lr_d": 1.0e-3} and best.ok_fraction == 1.0
    assert math.isfinite(best.median) and len(best.trials) == 2
    assert json.loads(worst.configuration) == {"train.lr_d": 50.0} and worst.ok_fraction == 0.0
    assert worst.median == math.inf  # diverged seeds count as the worst possible score
    summary = out[out.index("configurations (median over seeds"):]
    rows = [line.split() for line in summary.splitlines()[2:4]]
    assert [row[0] for row in rows] == ["1", "2"]
    assert rows[0][2] == "100%" and rows[1][1:3] == ["-", "0%"]
    assert '"train.lr_d": 0.001' in summary.splitlines()[2] and '"train.lr_d": 50.0' in summary.splitlines()[3]


def test_search_score_picks_the_best_or_the_last_evaluation_and_its_checkpoint(seeds_job):
    """`search.score`: `best` stands a trial by its best evaluation, `last` by its final one (a configuration that
    peaks and falls apart ranks low); either way the checkpoint handed to registration is that evaluation's.
    Ranked here by D's loss, which moves at every evaluation of these 60-step trials (their reverse KL sits at log 8)."""
    from orchestrator.results import rank
    from trainers.export import read_generator_config

    outcome, _ = seeds_job
    results = [o.result for o in outcome.ranking]
    records = reports(outcome.run_path)
    values = {}
    for score, pick in (("best", min), ("last", lambda losses: losses[-1])):
        ranked = rank(results, "loss_d", "min", 3, score)
        scored = [o for o in ranked if o.value is not None]
        assert len(scored) == 2  # the two seeds that did not diverge, best first
        assert [o.value for o in scored] == sorted(o.value for o in scored)
        for o in scored:
            trial_records = records[o.trial_id]
            chosen = pick([r["loss_d"] for r in trial_records])
            assert o.value == chosen and o.checkpoint_metrics["loss_d"] == chosen
            steps = {r["step"] for r in trial_records if r["loss_d"] == chosen}
            assert read_generator_config(o.checkpoint.path)["meta"]["step"] in steps
        assert all(o.checkpoint is None for o in ranked if o.value is None)
        values[score] = {o.trial_id: o.value for o in scored}
    assert values["best"] != values["last"], "the trials' best and last evaluations coincide: nothing was shown"


def test_mlflow_holds_the_configuration_ranking(seeds_job, mlflow_sqlite_uri):
    client, parent = parent_run(mlflow_sqlite_uri, "gf5-seeds")
    rows = json.loads(Path(client.download_artifacts(parent.info.run_id, "trials.json")).read_text())
    configurations = [r for r in rows if "configuration" in r]
    assert [json.loads(r["configuration"]) for r in configurations] == [{"train.lr_d": 0.001}, {"train.lr_d": 50.0}]
    assert [r["ok_fraction"] for r in configurations] == [1.0, 0.0]
    assert [r["seeds"] for r in configurations] == [2, 2]
    assert parent.data.metrics["trials_diverged"] == 2.0


def test_a_diverged_trial_is_never_registered(seeds_job, mlflow_sqlite_uri):
    from mlflow import MlflowClient

    outcome, _ = seeds_job
    assert outcome.registered is not None and outcome.registered.promoted
    version = MlflowClient(tracking_uri=mlflow_sqlite_uri).get_model_version("gf5-seeds", outcome.registered.version)
    diverged = {o.trial_id for o in outcome.ranking if o.status == "diverged"}
    assert version.tags["trial_id"] not in diverged
    assert float(version.tags["hp.train.lr_d"]) == 1.0e-3


# ------------------------------------------------------------------ optuna + median stopping, GPU fallback
OPTUNA_JOB = """\
train: {steps: 80, eval_every: 20, eval_samples: 500, ema_decay: 0.0}
search:
  algorithm: optuna
  scheduler: median
  num_samples: 2
  seeds: 2
  random_seed: 1
  space:
    train.lr_g: {loguniform: [1.0e-4, 1.0e-2]}
    train.loss,train.n_critic: {choice: [[ns, 1], [hinge, 2]]}
  median: {grace_period: 1, min_samples_required: 2}
resources: {cpus_per_trial: 1, gpus_per_trial: 0.5, allow_cpu_fallback: true}
"""


def test_optuna_with_median_stopping_repeats_each_suggestion_per_seed(ray_local, tmp_path, mlflow_sqlite_uri,
                                                                      cache_dir, capfd):
    outcome, out = run("gf5-optuna", OPTUNA_JOB, tmp_path, mlflow_sqlite_uri, cache_dir)
    warning = capfd.readouterr().err
    assert "resources.gpus_per_trial=0.5 but the Ray cluster has no GPUs; training on CPU" in warning
    assert len(outcome.ranking) == 4
    assert all(o.status in ("done", "stopped") for o in outcome.ranking)
    from orchestrator.results import rank_configurations

    configurations = rank_configurations(outcome.ranking, "min")
    assert len(configurations) == 2
    for configuration in configurations:
        # Optuna's Repeater: one suggestion, run once per seed (index 0 and 1 -> train.seed 0 and 1).
        assert sorted(t.params["__trial_index__"] for t in configuration.trials) == [0, 1]
        assert set(json.loads(configuration.configuration)) == {"train.lr_g", "train.loss,train.n_critic"}
        seed_0, seed_1 = (reports(outcome.run_path)[t.trial_id][0]["fingerprint"] for t in configuration.trials)
        assert seed_0 != seed_1, "both repeats trained the same seed"
    for records in reports(outcome.run_path).values():
        assert all(r["applied_lr_g"] == pytest.approx(r["config"]["train.lr_g"]) for r in records)
    assert "configurations (median over seeds" in out


def test_gpu_request_without_gpus_is_a_one_line_error(ray_local, tmp_path, mlflow_sqlite_uri, cache_dir, capfd):
    from orchestrator.cli import main

    name = "gf5-gpu"
    job = tmp_path / "job.yaml"
    job.write_text(job_text(name, "train: {steps: 20, eval_every: 20}\nsearch: {num_samples: 1}\n"
                                  "resources: {gpus_per_trial: 1}\n", tmp_path, mlflow_sqlite_uri, register=True))
    capfd.readouterr()
    assert main(["run", str(job)]) == 1
    # Only ganforge's own lines: this process's Ray also forwards what earlier jobs' trial processes printed.
    ours = [line for line in capfd.readouterr().err.splitlines() if line.startswith(("ganforge", "Traceback"))]
    assert len(ours) == 1 and ours[0].startswith("ganforge: error: resources.gpus_per_trial=1 ")
    assert "no GPUs" in ours[0] and "allow_cpu_fallback" in ours[0]
    _, parent = parent_run(mlflow_sqlite_uri, name)
    assert parent.info.status == "FAILED"
    assert not list((tmp_path / "results").glob("*/trial_*")), "no trial may start"


def test_max_concurrent_caps_a_random_search(ray_local, tmp_path, mlflow_sqlite_uri, cache_dir):
    # Tune ignores TuneConfig.max_concurrent_trials for a search-algorithm instance (the variant generator behind
    # random/grid): the cap must reach the generator itself. With one trial at a time on 2 CPUs and reused trial
    # processes, every trial runs in the same process; uncapped, two processes would share them.
    body = ("train: {steps: 20, eval_every: 10, eval_samples: 200, ema_decay: 0.0}\n"
            "search: {scheduler: fifo, num_samples: 3, max_concurrent: 1, space: {train.lr_g: {loguniform: [1.0e-4, 1.0e-3]}}}\n"
            "resources: {cpus_per_trial: 1}\n")
    outcome, _ = run("gf5-cap", body, tmp_path, mlflow_sqlite_uri, cache_dir)
    assert [o.status for o in outcome.ranking] == ["done"] * 3
    pids = {r["pid"] for records in reports(outcome.run_path).values() for r in records}
    assert len(pids) == 1, pids


def plan_of(search: str, resources: str = "{}"):
    """The SearchPlan of a small ring-8 job: `search` holds the search section's fields besides its space."""
    from orchestrator.search import SearchPlan

    text = ("name: plan\ndata: {uri: builtin:ring8}\nmodel: {family: gan}\n"
            f"search: {{{search}, space: {{train.lr_g: {{loguniform: [1.0e-4, 1.0e-3]}}}}}}\nresources: {resources}\n")
    return SearchPlan.from_spec(load_job_text(text).spec)


def test_pbt_keeps_its_whole_population_live_whatever_max_concurrent_says():
    for scheduler, cap in (("asha", 2), ("pbt", 0)):
        plan = plan_of(f"scheduler: {scheduler}, num_samples: 4, max_concurrent: 2")
        assert plan.tune_config(cluster_cpus=8).search_alg.max_concurrent == cap, scheduler


def _report_pid(config: dict) -> None:
    import os

    from ray import tune

    tune.report({"pid": os.getpid()})


def _idle_workers() -> set[int]:
    """Idle Ray workers of this test's own embedded cluster (its raylet is a child of this process), not the
    machine's: other Ray clusters on the machine have idle workers too."""
    import psutil

    idle = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            if " ".join(proc.cmdline()).startswith("ray::IDLE"):
                idle.add(proc.pid)
        except psutil.Error:  # gone between listing and reading
            pass
    return idle


def test_prestarted_workers_become_the_trial_processes(ray_local, tmp_path):
    """orchestrator.warmup rebuilds the runtime env Ray gives Tune's trial actors; the raylet hands an actor a
    prestarted worker only if it matches byte for byte. Both trials must run in the processes started before fit()."""
    import time

    from ray import tune

    from orchestrator.warmup import prestart_trial_workers

    before = _idle_workers()
    assert prestart_trial_workers(2)
    deadline = time.monotonic() + 60
    while len(_idle_workers() - before) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    prestarted = _idle_workers() - before
    assert len(prestarted) == 2, prestarted
    tuner = tune.Tuner(tune.with_resources(_report_pid, {"cpu": 1}), param_space={"x": tune.grid_search([0, 1])},
                       run_config=tune.RunConfig(storage_path=str(tmp_path), name="prestart", verbose=0))
    pids = {result.metrics["pid"] for result in tuner.fit()}
    assert pids and pids <= prestarted, (pids, prestarted)


def test_trial_slots_are_the_single_worker_trials_that_fit_at_once():
    assert plan_of("num_samples: 3", "{cpus_per_trial: 1}").trial_slots(cluster_cpus=2) == 2
    assert plan_of("num_samples: 3", "{cpus_per_trial: 0.5}").trial_slots(cluster_cpus=8) == 3  # no more than trials
    assert plan_of("num_samples: 3, max_concurrent: 1").trial_slots(cluster_cpus=8) == 1
    assert plan_of("num_samples: 3", "{workers_per_trial: 2}").trial_slots(cluster_cpus=8) == 0  # TorchTrainer trials
