"""Per-trial overhead of a ganforge search vs the same training called directly in a serial loop.

8 trials of about 5 s of training each (ring-8 MLP GAN, one CPU thread per trial) run through `run_job` on an
already-started embedded Ray (2 concurrent trials on 2 cores), then the same 8 trainings run one after another with
`trainers.loop.train`. overhead_s_per_trial = (concurrency x wall - serial) / trials, where wall is the whole
`run_job` (MLflow parent and child runs, checkpoints, ranking) after the once-per-job setup (Ray start, MLflow
store creation), which is printed separately as setup_s.

Then (unless --ddp-trials 0) the same training as multi-worker trials (`resources.workers_per_trial: 2`): a Ray
TorchTrainer per trial, DDP over gloo, each rank on one core, so one trial fills the machine and ideally takes one
serial training's time. torchtrainer_overhead_s_per_trial = (wall - trials x serial per trial) / trials.

The floor under any orchestrator's figure: the same trainings in as many plain Python processes as there are cores
(already started and imported, no Ray), each taking every concurrency-th seed. Two trainings side by side on 2 cores
are slower than one alone (shared caches and memory bandwidth, the OS and Ray's daemons on the same cores), so
parallel_floor_overhead_s_per_trial is what contention alone costs before any process start, report or checkpoint.

For reference, the same trainings as a plain Tune function trainable (`reuse_actors=True`, a checkpoint reported at
each of the 5 evaluations, no MLflow, no sample grids) on the same cluster: plain_tune_overhead_s_per_trial is what
Ray Tune itself costs here, the floor under ganforge's figure.

The arms run in rounds (--rounds, default 3), their order rotated each round, after one untimed warm-up of both
Tune arms, so that no arm always runs first, last, or alone on a cluster another arm warmed; every figure is the
median over rounds (each round's figures are printed too).

    .venv/bin/python bench/trial_overhead.py [--steps N] [--trials 8] [--rounds 3] [--ddp-trials 2]
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import torch  # noqa: E402

from orchestrator.spec import load_job_text  # noqa: E402
from trainers.loop import train  # noqa: E402

JOB = """\
name: overhead
data: {{uri: "builtin:ring8", batch_size: 128}}
model: {{family: gan, latent_dim: 2, width: 128, depth: 3}}
train: {{steps: {steps}, eval_every: {eval_every}, eval_samples: 2500, ema_decay: 0.0}}
search:
  scheduler: fifo
  num_samples: 1
  space:
    train.seed: {{grid: {seeds}}}
resources: {{cpus_per_trial: 1}}
storage: {{uri: "{storage}"}}
registry: {{enabled: false, tracking_uri: "sqlite:///{tracking}/mlflow.db"}}
"""


def _plain_tune_trial(config: dict) -> None:
    """The bare minimum a Tune trial of this training does: the serial loop's `train`, checkpointing and reporting
    at each evaluation."""
    from ray import tune

    def report(trainer, metrics: dict) -> None:
        with tempfile.TemporaryDirectory(prefix="plain-ckpt-") as directory:
            trainer.save_checkpoint(directory)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    torch.set_num_threads(1)
    cfg = config["cfg"].model_copy(deep=True)
    cfg.train.seed = config["seed"]
    train(cfg, on_eval=report)


def plain_tune_wall(cfg, trials: int, storage: str) -> float:
    from ray import tune

    tuner = tune.Tuner(
        tune.with_resources(_plain_tune_trial, {"cpu": 1}),
        param_space={"cfg": cfg, "seed": tune.grid_search(list(range(trials)))},
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(storage_path=storage, name="plain", verbose=0),
    )
    t0 = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - t0
    assert not results.errors, results.errors
    return wall


def _train_share(job_text: str, seeds: list[int], ready, go, done) -> None:
    """One plain process of the floor: import and configure, wait for the common start, train its seeds."""
    torch.set_num_threads(1)
    cfg = load_job_text(job_text).spec.gan_config()
    ready.release()
    go.wait()
    for seed in seeds:
        run = cfg.model_copy(deep=True)
        run.train.seed = seed
        train(run)
    done.release()


def parallel_floor_wall(job_text: str, trials: int, processes: int) -> float:
    """Wall time of the trainings split over `processes` plain, already-imported processes started together."""
    import multiprocessing

    mp = multiprocessing.get_context("spawn")
    ready, done, go = mp.Semaphore(0), mp.Semaphore(0), mp.Event()
    workers = [mp.Process(target=_train_share, args=(job_text, list(range(i, trials, processes)), ready, go, done))
               for i in range(processes)]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.acquire()
    t0 = time.perf_counter()
    go.set()
    for _ in workers:
        done.acquire()
    wall = time.perf_counter() - t0
    for worker in workers:
        worker.join()
        assert worker.exitcode == 0, worker.exitcode
    return wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2300, help="generator steps per trial (~5 s on this 2-core machine)")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of every arm, in rotating order")
    parser.add_argument("--ddp-trials", type=int, default=2, help="multi-worker (TorchTrainer) trials; 0 skips them")
    parser.add_argument("--no-plain-tune", action="store_true", help="skip the plain Tune reference")
    parser.add_argument("--no-floor", action="store_true", help="skip the plain parallel processes' floor")
    parser.add_argument("--no-prestart", action="store_true", help="start no trial processes with the cluster (as before)")
    args = parser.parse_args()
    concurrency = os.cpu_count() or 2

    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(f"{tmp}/setup")

        def job_text(tag: str, seeds: int) -> str:
            # Every round's results in a folder of its own, one MLflow store for all (created once, in setup).
            return JOB.format(steps=args.steps, eval_every=args.steps // 5, seeds=list(range(seeds)),
                              storage=f"{tmp}/{tag}", tracking=f"{tmp}/setup")

        job = load_job_text(job_text("setup", args.trials))
        from ray import tune  # noqa: F401  (imported before timing, like the serial loop's torch)

        from orchestrator.runner import init_ray, prepare_data, run_job
        from orchestrator.search import SearchPlan

        from orchestrator.tracking.client import client_for

        # Once-per-job setup is timed apart from the trials: Ray start (which asks the raylet to start the job's
        # trial processes; they start in the background and overlap the timed run), and creating the MLflow SQLite
        # schema (the driver keeps one client per URI, so the job below reuses this store).
        prepare_data(job, None)
        t0 = time.perf_counter()
        init_ray(None, None if args.no_prestart else SearchPlan.from_spec(job.spec))
        client_for(job.spec.registry.tracking_uri).search_experiments()
        setup_s = time.perf_counter() - t0
        trial_pids: set[int] = set()

        def ganforge_arm(tag: str) -> float:
            round_job = load_job_text(job_text(tag, args.trials))
            t0 = time.perf_counter()
            outcome = run_job(round_job, stream=io.StringIO())
            wall = time.perf_counter() - t0
            assert all(o.status == "done" for o in outcome.ranking), [o.status for o in outcome.ranking]
            trial_pids.update(int(o.result.metrics["pid"]) for o in outcome.ranking)
            return wall

        def serial_arm(tag: str) -> float:
            torch.set_num_threads(1)
            t0 = time.perf_counter()
            for seed in range(args.trials):
                cfg = job.spec.gan_config().model_copy(deep=True)
                cfg.train.seed = seed
                train(cfg)
            return time.perf_counter() - t0

        arms = {"ganforge": ganforge_arm, "serial": serial_arm}
        if not args.no_plain_tune:
            arms["plain_tune"] = lambda tag: plain_tune_wall(job.spec.gan_config(), args.trials, f"{tmp}/{tag}")
        if not args.no_floor:
            arms["floor"] = lambda tag: parallel_floor_wall(job_text(tag, args.trials), args.trials, concurrency)

        # Warm-up: both Tune arms once, untimed, so every timed round finds the cluster equally warm.
        for name in ("ganforge", "plain_tune"):
            if name in arms:
                arms[name](f"warmup-{name}")
        walls: dict[str, list[float]] = {name: [] for name in arms}
        names = list(arms)
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                walls[name].append(arms[name](f"r{r}-{name}"))
            print(f"round={r + 1} order={','.join(order)} " +
                  " ".join(f"{name}_s={walls[name][-1]:.2f}" for name in names), file=sys.stderr)

        ddp_wall = None
        if args.ddp_trials:
            ddp_job = load_job_text(
                job_text("ddp", args.ddp_trials)
                .replace("name: overhead", "name: overhead-ddp")
                .replace("resources: {cpus_per_trial: 1}", "resources: {cpus_per_trial: 1, workers_per_trial: 2}"))
            t0 = time.perf_counter()
            ddp_outcome = run_job(ddp_job, stream=io.StringIO())
            ddp_wall = time.perf_counter() - t0
            assert all(o.status == "done" for o in ddp_outcome.ranking), [o.status for o in ddp_outcome.ranking]

    median = {name: statistics.median(values) for name, values in walls.items()}
    serial, wall = median["serial"], median["ganforge"]

    def overhead(arm_wall: float) -> float:
        return (concurrency * arm_wall - serial) / args.trials

    print(f"trials={args.trials} concurrency={concurrency} rounds={args.rounds} setup_s={setup_s:.2f} "
          f"ganforge_wall_s={wall:.2f} serial_s={serial:.2f} train_s_per_trial={serial / args.trials:.2f} "
          f"trial_processes={len(trial_pids)} (medians over rounds)", file=sys.stderr)
    summary = f"overhead_s_per_trial={overhead(wall):.3f} speedup_vs_serial={serial / wall:.2f}"
    if "floor" in median:
        print(f"parallel_floor_wall_s={median['floor']:.2f}", file=sys.stderr)
        summary += f" parallel_floor_overhead_s_per_trial={overhead(median['floor']):.3f}"
    if "plain_tune" in median:
        print(f"plain_tune_wall_s={median['plain_tune']:.2f}", file=sys.stderr)
        summary += (f" plain_tune_overhead_s_per_trial={overhead(median['plain_tune']):.3f}"
                    f" ganforge_minus_plain_tune_s_per_trial={overhead(wall) - overhead(median['plain_tune']):.3f}")
    if ddp_wall is not None:
        ddp_overhead = (ddp_wall - args.ddp_trials * serial / args.trials) / args.ddp_trials
        print(f"ddp_trials={args.ddp_trials} workers_per_trial=2 ddp_wall_s={ddp_wall:.2f}", file=sys.stderr)
        summary += f" torchtrainer_overhead_s_per_trial={ddp_overhead:.3f}"
    print(summary)


if __name__ == "__main__":
    main()
