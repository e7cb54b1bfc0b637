"""How a search's cost grows with its number of trials: per-trial figures at 50, 200 and 800 tiny real trials.

One local stack (`orchestrator.stack.Stack`: moto S3, an MLflow server on SQLite with artifacts on S3, a Ray head
with 2 CPUs), then for each scale one `ganforge run` driver in its own process joined to that head, with
`storage.uri` on S3. Each trial trains a ring-8 GAN of width 8 for 40 steps and reports twice (checkpoint, metrics,
a sample grid). Per scale, divided by the number of trials:

  wall_s         the driver's wall time (its process start to its exit)
  driver_cpu_s   the driver process's user + system CPU (os.wait4 rusage; trials run in the head's workers)
  driver_rss_mb  the driver's peak RSS (whole figure, and per trial)
  mlflow_req     requests the MLflow server answered (lines of its access log)
  s3_req         requests moto answered (lines of its request log), from the driver, the trials and MLflow
  s3_put         the uploads among them (PUT and POST)
  state_kb       bytes of Tune's experiment state (the run folder's files outside trial folders) at the end

Per-trial figures that fall with scale are fixed costs spreading out; one that rises means a step whose cost grows
faster than the number of trials. `marginal` rows give the cost of each added trial between consecutive scales.

    .venv/bin/python bench/search_scale.py [--scales 50,200,800] [--steps 40] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.stack import BUCKET, Stack, child_env  # noqa: E402

JOB = """\
name: scale-{trials}
data: {{uri: "builtin:ring8", batch_size: 64}}
model: {{family: gan, latent_dim: 2, width: 8, depth: 1}}
train: {{steps: {steps}, eval_every: {eval_every}, eval_samples: 100, ema_decay: 0.0}}
search:
  scheduler: fifo
  num_samples: {trials}
  space:
    train.lr_g: {{loguniform: [1.0e-4, 1.0e-3]}}
resources: {{cpus_per_trial: 1}}
storage: {{uri: "s3://{bucket}/scale-{trials}"}}
registry: {{enabled: false, tracking_uri: "{tracking_uri}"}}
"""
# An access-log line of uvicorn (MLflow's server) or werkzeug (moto's): one per request answered.
MLFLOW_REQUEST = re.compile(r'"(GET|POST|PUT|PATCH|DELETE|HEAD) /')
S3_REQUEST = re.compile(r'"(GET|POST|PUT|DELETE|HEAD) /')


@dataclass
class Scale:
    trials: int
    wall_s: float
    driver_cpu_s: float
    driver_rss_mb: float
    mlflow_req: int
    s3_req: int
    s3_puts: int
    state_bytes: int

    def per_trial(self) -> dict[str, float]:
        n = self.trials
        return {"wall_s": self.wall_s / n, "driver_cpu_s": self.driver_cpu_s / n,
                "driver_rss_mb": self.driver_rss_mb / n, "mlflow_req": self.mlflow_req / n,
                "s3_req": self.s3_req / n, "s3_put": self.s3_puts / n, "state_kb": self.state_bytes / n / 1024}


def count_lines(path: Path, pattern: re.Pattern, start: int) -> tuple[int, int, int]:
    """Requests logged after byte `start`: (all, PUT/POST ones, the log's new end)."""
    with open(path, "rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
        end = f.tell()
    hits = [m.group(1) for m in pattern.finditer(text)]
    return len(hits), sum(h in ("PUT", "POST") for h in hits), end


def tune_state_bytes(env: dict[str, str], trials: int) -> int:
    """Bytes of the run folder's own files (Tune's experiment state, searcher state, run record), not the trials'."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"scale-{trials}/"):
        for obj in page.get("Contents", []):
            parts = obj["Key"].split("/")  # scale-N / run / name...
            if len(parts) == 3:
                total += obj["Size"]
    return total


def run_scale(trials: int, steps: int, stack_root: Path, env: dict[str, str], workdir: Path) -> Scale:
    job = workdir / f"scale-{trials}.yaml"
    job.write_text(JOB.format(trials=trials, steps=steps, eval_every=steps // 2, bucket=BUCKET,
                              tracking_uri=env["MLFLOW_TRACKING_URI"]))
    mlflow_log, s3_log = stack_root / "logs" / "mlflow.log", stack_root / "logs" / "s3.log"
    mlflow_start, s3_start = mlflow_log.stat().st_size, s3_log.stat().st_size
    driver_env = child_env({**env, "RAY_AUTH_MODE": "disabled"})
    with open(workdir / f"scale-{trials}.log", "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(job)], cwd=workdir,
                                env=driver_env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        tail = (workdir / f"scale-{trials}.log").read_text(errors="replace")[-2000:]
        raise SystemExit(f"scale {trials}: the driver failed:\n{tail}")
    time.sleep(2)  # the servers flush their last log lines
    mlflow_req, _, _ = count_lines(mlflow_log, MLFLOW_REQUEST, mlflow_start)
    s3_req, s3_puts, _ = count_lines(s3_log, S3_REQUEST, s3_start)
    return Scale(trials, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, mlflow_req, s3_req, s3_puts,
                 tune_state_bytes(env, trials))


def print_table(results: list[Scale]) -> None:
    keys = list(results[0].per_trial())
    print("| trials | " + " | ".join(f"{k}/trial" for k in keys) + " | driver peak RSS MB |")
    print("|---" * (len(keys) + 2) + "|")
    for r in results:
        cells = " | ".join(f"{v:.3g}" for v in r.per_trial().values())
        print(f"| {r.trials} | {cells} | {r.driver_rss_mb:.0f} |")
    for a, b in zip(results, results[1:]):
        n = b.trials - a.trials
        marginal = {k: (vb * b.trials - va * a.trials) / n
                    for (k, va), vb in zip(a.per_trial().items(), b.per_trial().values())}
        cells = " | ".join(f"{v:.3g}" for v in marginal.values())
        print(f"| marginal {a.trials}->{b.trials} | {cells} | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="50,200,800", help="comma-separated trial counts")
    parser.add_argument("--steps", type=int, default=40, help="training steps per trial (two reports)")
    parser.add_argument("--workdir", default=None, help="where the stack and logs live (default: a temp dir)")
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gf-scale-"))
    stack = Stack(workdir / "stack")
    state = stack.up(num_cpus=2, on_progress=lambda line: print(line, file=sys.stderr))
    try:
        results = []
        for trials in scales:
            results.append(run_scale(trials, args.steps, stack.root, state.env, workdir))
            print(f"scale {trials}: {results[-1]}", file=sys.stderr, flush=True)
    finally:
        stack.down()
    print_table(results)
    first, last = results[0].per_trial(), results[-1].per_trial()
    growth = {k: last[k] / first[k] for k in first if first[k]}
    worst = max(growth, key=growth.get)
    print(" ".join([f"scales={args.scales}", *(f"{k}_per_trial_growth={v:.2f}" for k, v in growth.items()),
                    f"worst={worst}"]))
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
