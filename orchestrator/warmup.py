"""Warm trial processes for the embedded cluster.

A Tune trial runs in a Ray actor, and a fresh actor process pays for a Python start, `import ray` and then torch,
MLflow and the trainers before its first line (≈ 3.6 s on 2 cores, docs/benchmarks.md); with `reuse_actors` each
trial slot pays it once per job. Two parts take it off the job's critical path:

- `preload` is every worker's setup hook: a process imports what a trial needs while it starts, not inside the
  trial's first timed iteration.
- `prestart_trial_workers` asks the local raylet to start the trial processes as soon as the cluster is up, while
  the driver is still opening MLflow and building the search. Ray hands an actor an idle worker only if that
  worker's runtime env is the actor's, byte for byte (its hash), and Tune gives its trainable actors one of their
  own (`ray.tune.execution.class_cache`: `PL_DISABLE_FORK` plus propagated variables), merged by the core worker
  into the job's. Ray's own prestart (at `ray.init`) uses the job's env, so Tune never takes those workers; this
  builds Tune's env the way the core worker does and prestarts with it (the raylet's `PrestartWorkers` call,
  which Ray itself has no Python API for). If a later Ray serialises differently, the workers go unused and exit
  after `keep_alive_s`: slower, never wrong (tests/test_search.py checks that trials land in them).
"""
from __future__ import annotations

import json
import logging
import os

log = logging.getLogger(__name__)


def preload() -> None:
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401  (the first torch.optim optimizer imports it: 0.7 s inside a trial)

    import mlflow.store.tracking.rest_store  # noqa: F401  (the trial's MLflow store, an HTTP server's...)
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (...or a database's: 1 s of SQLAlchemy models)
    import mlflow.tracking  # noqa: F401
    import orchestrator.tracking.trial_run  # noqa: F401
    import orchestrator.trial  # noqa: F401
    import ray.tune.trainable.function_trainable  # noqa: F401  (what a trial actor imports first)
    import trainers.loop  # noqa: F401


def tune_actor_runtime_env(job_runtime_env: dict) -> str:
    """The serialized runtime env Ray gives a Tune trainable actor created by this driver (what the raylet hashes).

    The core worker merges the actor's env into the job's (the actor's keys win; env_vars are merged key by key)
    and serialises it with nlohmann::json: sorted keys, no spaces, UTF-8 kept."""
    from ray.tune.execution.class_cache import DEFAULT_ENV_VARS, ENV_VARS_TO_PROPAGATE

    env_vars = dict(DEFAULT_ENV_VARS)
    env_vars.update({name: os.environ[name] for name in ENV_VARS_TO_PROPAGATE if name in os.environ})
    merged = dict(job_runtime_env)
    merged["env_vars"] = {**job_runtime_env.get("env_vars", {}), **env_vars}
    return json.dumps(merged, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def prestart_trial_workers(count: int, keep_alive_s: int = 60) -> bool:
    """Start `count` worker processes on this driver's raylet, ready to become Tune trial actors. False if skipped."""
    if count < 1:
        return False
    try:
        import grpc
        import ray
        from ray.core.generated import common_pb2, node_manager_pb2, node_manager_pb2_grpc

        job_config = ray._private.worker.global_worker.core_worker.get_job_config()
        info = type(job_config.runtime_env_info)()
        info.CopyFrom(job_config.runtime_env_info)
        info.serialized_runtime_env = tune_actor_runtime_env(json.loads(info.serialized_runtime_env or "{}"))
        node_id = ray.get_runtime_context().get_node_id()
        node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
        with grpc.insecure_channel(f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}") as channel:
            node_manager_pb2_grpc.NodeManagerServiceStub(channel).PrestartWorkers(
                node_manager_pb2.PrestartWorkersRequest(
                    language=common_pb2.Language.PYTHON,
                    job_id=bytes.fromhex(ray.get_runtime_context().get_job_id()),
                    runtime_env_info=info,
                    keep_alive_duration_secs=keep_alive_s,
                    num_workers=count,
                ),
                timeout=10,
            )
        return True
    except Exception as exc:  # an optimisation: a failure costs the prestart, never the job
        log.debug("prestarting trial workers skipped: %s", exc)
        return False
