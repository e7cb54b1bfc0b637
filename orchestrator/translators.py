"""`load_translator(uri)`: a registered image-to-image translator as an eval-mode module, built without unpickling.

Translators are registered like generators (safetensors + JSON under the version's `generator` artifact), so this
is `orchestrator.tracking.pull.load_generator` plus the check that the version is a translator.

    from orchestrator.translators import load_translator
    T = load_translator("models:/digits-cyclegan@champion")
    y = T(x, "BtoA")            # x: N x C x H x W in [-1, 1]
"""
from __future__ import annotations

from orchestrator.errors import RegistryUsageError
from orchestrator.tracking.pull import load_generator


def load_translator(uri: str, device: str = "cpu", tracking_uri: str | None = None):
    """An eval-mode `Translator` from NAME@ALIAS, NAME/VERSION, models:/... or a pulled directory."""
    from trainers.translation.export import is_translator

    module = load_generator(uri, device=device, tracking_uri=tracking_uri)
    if not is_translator(module):
        raise RegistryUsageError(f"{uri}: is a generator that samples from noise, not a translator; use `ganforge sample`")
    return module
