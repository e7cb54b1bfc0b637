"""GAN families. Importing this package registers every family module listed below."""
from trainers.families import dcgan, gan  # noqa: F401  (registration side effects)
from trainers.families.base import FAMILIES, GENERATORS, Generator, Networks, build_generator, build_networks

__all__ = ["FAMILIES", "GENERATORS", "Generator", "Networks", "build_generator", "build_networks"]
