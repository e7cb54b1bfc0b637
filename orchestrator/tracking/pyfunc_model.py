"""MLflow models-from-code entry point for ganforge generators.

MLflow copies this file into every registered model and executes it at load time (`mlflow.models.set_model` at
the bottom), so no Python object of ours is cloudpickled. The weights come from the model's `generator` artifact
(safetensors + JSON) through `trainers.export.load_generator_dir`: loading needs ganforge installed, never pickle.

Input: a DataFrame with one row per sample and either a `seed` column (each row's sample is drawn from its own
seed) or a `latent` column (each row a latent vector of the model's `latent_dim`); an optional `class_label`
column conditions class-conditional models. Param `truncation` (0 = off) truncates latents. Output: float32 samples
in model range, N x C x H x W images in [-1, 1] or N x D points.

Translators (pix2pix, CycleGAN) take a uint8 array N x H x W x C of one domain's images instead, and param
`direction` (AtoB, or BtoA for CycleGAN); they return the translations, float32 N x C x H x W in [-1, 1].
"""
from __future__ import annotations

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

GENERATOR_ARTIFACT = "generator"


class GanforgeGenerator(PythonModel):
    # Inputs are checked against the model signature; MLflow's type-hint wrapper would only warn about hints.
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        from trainers.export import load_generator_dir

        self.generator = load_generator_dir(context.artifacts[GENERATOR_ARTIFACT], device="cpu")

    def predict(self, context, model_input, params=None):
        import torch

        from trainers.export import generate

        if getattr(self.generator, "task", "generation") == "translation":
            return self._translate(model_input, (params or {}).get("direction") or "AtoB")
        frame = _as_frame(model_input)
        truncation = float((params or {}).get("truncation") or 0.0) or None
        labels = _labels(frame)
        if "latent" in frame.columns and frame["latent"].notna().all():
            return self._from_latents(frame["latent"], labels, truncation)
        if "seed" not in frame.columns or frame["seed"].isna().any():
            raise ValueError("input needs a 'seed' column (one sample per seed) or a 'latent' column (one latent vector per row)")
        samples = [
            generate(self.generator, 1, seed=int(seed), class_label=label, truncation=truncation)
            for seed, label in zip(frame["seed"], labels)
        ]
        return torch.cat(samples).numpy().astype(np.float32)

    def _from_latents(self, latents, labels, truncation):
        import torch

        z = torch.tensor(np.stack([np.asarray(v, dtype=np.float32) for v in latents]))
        if z.ndim != 2 or z.shape[1] != self.generator.latent_dim:
            raise ValueError(f"each latent must have {self.generator.latent_dim} values, got shape {tuple(z.shape)}")
        if truncation:
            z = z.clamp(-truncation, truncation)
        y = None
        if getattr(self.generator, "num_classes", 0):
            y = torch.tensor([0 if label is None else label for label in labels], dtype=torch.long)
        with torch.no_grad():
            return self.generator(z, y).float().numpy()


    def _translate(self, images, direction: str):
        import torch

        from trainers.translation.export import translate

        x = np.asarray(images.get("image", next(iter(images.values()))) if isinstance(images, dict) else images)
        x = x[..., None] if x.ndim == 3 else x
        x = torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0)
        return translate(self.generator, x, direction).numpy()


def _as_frame(model_input):
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        return model_input
    if isinstance(model_input, dict):
        return pd.DataFrame(model_input)
    if isinstance(model_input, (list, tuple, np.ndarray)):
        return pd.DataFrame({"seed": list(np.asarray(model_input).ravel())})
    raise ValueError(f"unsupported input type {type(model_input).__name__}: pass a DataFrame with a 'seed' or 'latent' column")


def _labels(frame) -> list:
    if "class_label" not in frame.columns:
        return [None] * len(frame)
    return [None if v is None or v != v else int(v) for v in frame["class_label"]]  # v != v: NaN


mlflow.models.set_model(GanforgeGenerator())
