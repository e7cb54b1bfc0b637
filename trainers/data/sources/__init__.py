"""Import sources: what `ganforge data import` reads. Each file format registers itself in SOURCE_FORMATS when
imported here; built-in data sets are builtin.py; `open_source` picks one for a source string."""
from __future__ import annotations

from pathlib import Path

from trainers.data.errors import DataError
from trainers.data.sources import arrays, cifar, folder, mnist, two_domain  # noqa: F401  # registration side effects
from trainers.data.sources.base import SOURCE_FORMATS, SourceData
from trainers.data.sources.builtin import BUILTIN_SCHEME, BUILTINS, open_builtin
from trainers.registry import UnknownComponentError

__all__ = ["SOURCE_FORMATS", "SourceData", "open_source"]


def open_source(source: str, fmt: str | None = None) -> SourceData:
    """A built-in name (builtin:digits) or a local file/folder in a registered format."""
    if source.startswith(BUILTIN_SCHEME):
        if fmt:
            raise DataError(f"{source}: --format applies to files and folders, not built-in data sets")
        return open_builtin(source[len(BUILTIN_SCHEME):])
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"{source}: no such file or folder")
    if fmt:
        try:
            return SOURCE_FORMATS.get(fmt)().open(path)
        except UnknownComponentError as exc:
            raise DataError(f"{source}: {exc}") from None
    # Sniffers are mutually exclusive (by suffix, magic number or folder content), so order does not matter.
    for name in SOURCE_FORMATS:
        source_format = SOURCE_FORMATS.get(name)()
        if source_format.sniff(path):
            return source_format.open(path)
    raise DataError(
        f"{source}: not a recognised source (formats: {', '.join(SOURCE_FORMATS.names())}; "
        f"built-ins: {', '.join(BUILTIN_SCHEME + n for n in BUILTINS.names())})"
    )
