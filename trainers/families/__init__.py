"""GAN families. Importing this package imports every module in it, and each module registers its family in
FAMILIES and its generator classes in GENERATORS: a new family is one file here, nothing else to edit."""
import importlib
import pkgutil

from trainers.families.base import (
    FAMILIES,
    GENERATORS,
    Generator,
    Networks,
    build_generator,
    build_networks,
    resolve_model,
)

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["FAMILIES", "GENERATORS", "Generator", "Networks", "build_generator", "build_networks", "resolve_model"]
