"""One error type per boundary. Each carries a message a user can act on; the CLI prints it in a line or two.

Exit codes: 2 for bad input (the user must change something), 1 for a run that failed.
"""
from __future__ import annotations


class GanforgeError(Exception):
    exit_code = 1


class SpecError(GanforgeError):
    """The job YAML or a --set override is wrong."""

    exit_code = 2


class DataSourceError(GanforgeError):
    """A data set cannot be found, read or imported."""

    exit_code = 2


class StorageError(GanforgeError):
    """The results storage (storage.uri) is malformed or refuses reads and writes."""

    exit_code = 2


class RegistryError(GanforgeError):
    """MLflow tracking or the model registry refused or could not be reached."""

    exit_code = 1


class RegistryUsageError(RegistryError):
    """A registry request that is wrong as asked (bad name, alias, destination)."""

    exit_code = 2


class ModelNotFoundError(RegistryError):
    """A model URI names nothing registered."""

    exit_code = 2


class ClusterError(GanforgeError):
    """A Ray cluster cannot be reached or refused the job."""

    exit_code = 1


class ClusterInputError(ClusterError):
    """Bad input at the cluster boundary (malformed address, unknown submission id, oversized package)."""

    exit_code = 2


class JobFailedError(GanforgeError):
    """The search ran but did not succeed (no trial finished, registration failed, ...)."""

    exit_code = 1


class PreflightError(GanforgeError):
    """Something the job points at is missing or does not answer (data set, storage, MLflow); nothing was started."""

    exit_code = 2
