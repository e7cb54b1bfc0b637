"""Issue 16, the search report: a finished ASHA search and a PBT search run for real (one embedded Ray for the
module, tiny ring-8 MLP GANs), then their reports are rendered by headless Chromium and read back as a user sees
them: every section, every trial id, the champion's recorded score, no console errors, a screenshot."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.test_search import PBT_JOB, parent_run, run

pytestmark = pytest.mark.timeout(400)
ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("summary", "trials", "curves", "hyperparameters", "budget", "samples", "stability", "provenance")

ASHA_JOB = """\
train: {steps: 300, eval_every: 100, eval_samples: 300, ema_decay: 0.0}
search:
  scheduler: asha
  num_samples: 5
  space:
    train.lr_g: {loguniform: [1.0e-4, 1.0e-2]}
    train.loss,train.n_critic: {choice: [[ns, 1], [hinge, 1]]}
  asha: {grace_period: 1, reduction_factor: 2}
resources: {cpus_per_trial: 1}
"""


@pytest.fixture(scope="module")
def chromium() -> str:
    """Headless Chromium, installed by `make chromium` (apt-get, only where it is missing and apt is usable)."""
    found = shutil.which("chromium")
    if not found:
        subprocess.run(["make", "-s", "chromium"], cwd=ROOT, capture_output=True, timeout=900)
        found = shutil.which("chromium")
    if not found:
        pytest.skip("chromium is not installed and `make chromium` could not install it (needs apt-get as root)")
    return found


def render(chromium: str, page: Path, shot: Path) -> tuple[str, list[str]]:
    """(the DOM after scripts ran, console messages) and a screenshot of the top of the page."""
    flags = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"]
    dom = subprocess.run(flags + ["--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri()],
                   capture_output=True, timeout=180, check=True)
    return dom.stdout, [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("report-cache"))


@pytest.fixture(scope="module")
def asha_run(ray_local, tmp_path_factory, mlflow_sqlite_uri, cache_dir):
    return run("gf16-asha", ASHA_JOB, tmp_path_factory.mktemp("asha"), mlflow_sqlite_uri, cache_dir, register=True)


@pytest.fixture(scope="module")
def pbt_run(ray_local, tmp_path_factory, mlflow_sqlite_uri, cache_dir):
    # tests/test_search.py's PBT job: more members than slots, so the population meets and exploits.
    return run("gf16-pbt", PBT_JOB, tmp_path_factory.mktemp("pbt"), mlflow_sqlite_uri, cache_dir, register=True)


def check_page(chromium: str, page: Path, shot: Path, trial_ids: list[str], champion_score: float,
               sections=SECTIONS) -> str:
    from PIL import Image

    dom, console = render(chromium, page, shot)
    assert console == [], console  # no script error, no blocked fetch (the page's CSP forbids every network load)
    for section in sections:
        assert f'<section id="{section}">' in dom, section
    for trial_id in trial_ids:
        assert trial_id in dom
    shown = dom.split('class="champion-score">', 1)[1].split("<", 1)[0]
    assert float(shown) == pytest.approx(champion_score, rel=1e-3)
    image = Image.open(shot)
    assert image.size == (1280, 2400)
    assert sum(1 for n in image.convert("L").histogram() if n) > 8  # a drawn page, not a blank one
    return dom


def test_finished_search_report_opens_in_a_browser(asha_run, chromium, mlflow_sqlite_uri, tmp_path):
    outcome, out = asha_run
    page = Path(outcome.run_path) / "report" / "report.html"
    assert f"ganforge: report {page}" in out
    client, parent = parent_run(mlflow_sqlite_uri, "gf16-asha")
    recorded = parent.data.metrics["best_reverse_kl"]  # what the run logged as its champion's score
    dom = check_page(chromium, page, tmp_path / "asha.png", [o.trial_id for o in outcome.ranking], recorded)
    assert [a.path for a in client.list_artifacts(parent.info.run_id) if a.path == "report.html"]
    # Sample grids of the fixed latents at every evaluation of the best trials, embedded in the page.
    assert dom.count('src="data:image/png;base64,') >= outcome.ranking[0].iterations
    assert "http://" not in dom.split("<body", 1)[1].replace("http://www.w3.org", "")  # nothing to fetch
    assert "version 1" in dom and "@champion moved to it" in dom  # the registered version


def test_pbt_report_draws_lineage_and_the_champion_schedule(pbt_run, chromium, tmp_path):
    outcome, _ = pbt_run
    page = Path(outcome.run_path) / "report" / "report.html"
    champion = outcome.ranking[0]
    dom = check_page(chromium, page, tmp_path / "pbt.png", [o.trial_id for o in outcome.ranking], champion.value,
                     SECTIONS + ("pbt",))
    from orchestrator.pbt_lineage import collect_policy

    exploits = collect_policy(outcome.run_path)
    assert exploits, "PBT made no exploit"
    assert dom.count('marker-end="url(#arrow)"') == len(exploits)  # one arrow per exploit
    fragment = dom.split("Schedule that reproduces the champion", 1)[1].split('<pre class="yaml">', 1)[1]
    schedule = yaml.safe_load(fragment.split("</pre>", 1)[0].replace("&#x27;", "'").replace("&quot;", '"'))
    segments = schedule["pbt_schedule"]
    assert segments[0]["from_step"] == 0 and segments[-1]["trial"] == champion.trial_id
    assert [s["from_step"] for s in segments] == sorted(s["from_step"] for s in segments)


def test_report_command_reads_a_run_from_s3(asha_run, s3_prefix, tmp_path):
    """`ganforge report --path s3://…`: the same page from a run kept in object storage."""
    import pyarrow.fs as pafs

    from orchestrator.cli import main

    outcome, _ = asha_run
    remote = f"{s3_prefix}/{Path(outcome.run_path).name}"
    pafs.copy_files(outcome.run_path, remote)
    out = tmp_path / "from-s3.html"
    assert main(["report", "--path", remote, "--out", str(out)]) == 0
    html = out.read_text()
    assert all(o.trial_id in html for o in outcome.ranking)
    assert html.count("data:image/png;base64,") >= 1


def test_report_command_names_a_path_without_a_run(tmp_path, capsys):
    from orchestrator.cli import main

    out = tmp_path / "report.html"
    assert main(["report", "--path", str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ganforge: error:") and str(tmp_path) in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_refresh_while_running_shows_curves_tune_has_not_stored_yet(asha_run, tmp_path):
    """Mid-search, result histories live on the driver only: the refresh callback draws them from what it saw."""
    from orchestrator.report.publish import RefreshReport, report_uri

    outcome, _ = asha_run
    running = tmp_path / "run"
    shutil.copytree(outcome.run_path, running)
    seen = {}
    for trial in running.glob("trial_*"):
        seen[trial.name.removeprefix("trial_")] = [json.loads(line) for line in
                                                   (trial / "result.json").read_text().splitlines() if line.strip()]
        (trial / "result.json").unlink()  # as in storage before Tune's first sync (result.json is all it writes)
    (Path(report_uri(str(running)))).unlink()
    callback = RefreshReport(str(running), None, every_s=0)

    class Trial:  # what Tune hands a callback: the trial's id is all RefreshReport reads
        def __init__(self, trial_id):
            self.trial_id = trial_id

    for trial_id, results in seen.items():
        for result in results:
            callback.on_trial_result(0, [], Trial(trial_id), result)
    callback.on_step_end(0, [])
    callback.on_experiment_end([])
    html = Path(report_uri(str(running))).read_text()
    assert "No evaluation has been reported yet" not in html
    assert all(f'class="t-{t}"' in html for t in seen if t != outcome.ranking[0].trial_id)


def test_page_stays_under_its_size_cap(asha_run):
    """Grids are thinned until the page fits: a cap below the full page drops pictures, never a section."""
    from orchestrator.report.collect import collect
    from orchestrator.report.page import render_page

    data = collect(asha_run[0].run_path)
    full = render_page(data)
    cap = len(full.encode()) - 1
    small = render_page(data, max_bytes=cap)
    assert len(small.encode()) <= cap
    assert small.count("data:image/png") < full.count("data:image/png")
    assert all(f'<section id="{s}">' in small for s in SECTIONS)


def test_provenance_shows_the_job_with_secrets_redacted(asha_run, tmp_path, monkeypatch):
    """A `${VAR}` in the job YAML is shown as the reference, never as its value, in the YAML and the resolved spec."""
    from orchestrator.report.publish import build_report
    from orchestrator.storage import RUN_RECORD

    secret = "gf16-s3cr3t-value"
    monkeypatch.setenv("GF16_TOKEN", secret)
    running = tmp_path / "run"
    shutil.copytree(asha_run[0].run_path, running)
    record = json.loads((running / RUN_RECORD).read_text())
    record["job_yaml"] = record["job_yaml"].replace("registry: {", 'registry: {experiment: "exp-${GF16_TOKEN}", ')
    (running / RUN_RECORD).write_text(json.dumps(record))
    html = build_report(str(running))
    assert secret not in html
    assert "exp-${GF16_TOKEN}" in html.split('<section id="provenance">', 1)[1]
