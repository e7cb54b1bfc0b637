"""Import sources: file formats register themselves in SOURCE_FORMATS when imported here."""
from trainers.data.sources import arrays, cifar, folder, mnist, two_domain  # noqa: F401  # registration side effects
from trainers.data.sources.base import SOURCE_FORMATS, SourceData, open_source

__all__ = ["SOURCE_FORMATS", "SourceData", "open_source"]
