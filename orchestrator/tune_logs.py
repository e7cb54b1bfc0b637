"""Which per-trial result files Tune's driver writes: result.json only.

Tune adds a CSV and a TensorBoard logger unless callbacks of those types are given. Their files live in the
driver's staging folder, and every experiment-state sync uploads that whole folder again: with N trials each sync
re-sends N trials' files, and Tune syncs about once per finished trial (forced whenever a trial has written
`checkpoints_to_keep` checkpoints since the last sync), so these files cost S3 requests that grow with N². Nothing
reads them (ganforge and Tune's ResultGrid read result.json), so they are replaced by loggers that write nothing.
"""
from __future__ import annotations

from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback


class _WritesNothing:
    def log_trial_start(self, trial) -> None:
        pass

    def log_trial_result(self, iteration: int, trial, result) -> None:
        pass

    def log_trial_end(self, trial, failed: bool = False) -> None:
        pass


class _NoCSV(_WritesNothing, CSVLoggerCallback):
    pass


class _NoTensorBoard(_WritesNothing, TBXLoggerCallback):
    def __init__(self) -> None:  # nothing to set up (and no tensorboardX import)
        pass


def result_loggers() -> list:
    return [JsonLoggerCallback(), _NoCSV(), _NoTensorBoard()]
