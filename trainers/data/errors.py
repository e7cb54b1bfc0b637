"""The data boundary's one error type. Defined here because `trainers` must not import `orchestrator`;
the CLI maps it to `DataSourceError` (exit 2)."""
from __future__ import annotations


class DataError(Exception):
    """A data set cannot be found, read, imported or trusted.

    The message is one line that names the URI or object key and the problem, so a user can act on it.
    """
