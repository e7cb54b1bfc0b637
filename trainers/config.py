"""The training half of a job spec: what `trainers` needs to train one GAN, with no Ray or MLflow in sight.

`orchestrator.spec.JobSpec` extends `GANConfig` with the search, resources, storage, registry and cluster sections,
so these models are the single source of truth for field names, defaults and descriptions.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    """Base for every spec section: unknown keys are errors, assignment is validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    uri: str = Field(
        "builtin:digits",
        description="Data set: builtin:digits|ring8|grid25, or a ganforge data set at a local path, file:// or s3:// URI.",
    )
    batch_size: int = Field(64, ge=1, description="Real samples per discriminator step.")
    shuffle_buffer: int = Field(4096, ge=1, description="Rows held in memory for the second-level shuffle.")
    readahead: int = Field(2, ge=0, description="Record batches read ahead of the trainer (bounds memory).")
    on_corrupt: Literal["error", "skip"] = Field("error", description="What a corrupt shard does: fail the trial or skip it with a warning.")


class ModelConfig(Section):
    family: str = Field("dcgan", description="GAN family: gan (MLP, 2-D points) or dcgan (images); see `ganforge schema`.")
    latent_dim: int = Field(32, ge=1, description="Size of the generator's latent vector z.")
    width: int = Field(64, ge=1, description="Base channel count (images) or hidden units per layer (points).")
    depth: int = Field(3, ge=1, description="Hidden layers of MLP families (ignored by convolutional ones).")
    spectral_norm: bool = Field(False, description="Apply spectral normalisation to every discriminator layer.")
    pack: int = Field(1, ge=1, description="PacGAN packing: the discriminator judges this many samples jointly.")


class TrainConfig(Section):
    steps: int = Field(2000, ge=1, description="Generator updates per trial.")
    lr_g: float = Field(2e-4, gt=0, description="Adam learning rate of the generator.")
    lr_d: float = Field(2e-4, gt=0, description="Adam learning rate of the discriminator (TTUR when it differs from lr_g).")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam beta1 for G and D.")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam beta2 for G and D.")
    n_critic: int = Field(1, ge=1, description="Discriminator updates per generator update.")
    loss: str = Field("ns", description="Adversarial loss: ns, minimax, wgan, wgan-gp, hinge, lsgan.")
    penalty: Optional[str] = Field(None, description="Extra discriminator regulariser: gp, gp-one-sided, r1 (wgan-gp implies gp).")
    penalty_weight: float = Field(10.0, ge=0, description="Weight of the gradient penalty (lambda) or R1 (gamma).")
    ema_decay: float = Field(0.999, ge=0, lt=1, description="Decay of the generator's exponential moving average; 0 disables EMA.")
    ema_start: int = Field(0, ge=0, description="Generator step at which EMA averaging starts (copy before).")
    max_grad_norm: Optional[float] = Field(None, gt=0, description="Clip G and D gradient norms to this value; null disables.")
    divergence_loss: float = Field(1e4, gt=0, description="A loss above this (or NaN/Inf) ends the trial as diverged.")
    seed: int = Field(0, ge=0, description="Seed for weights, latents and data order; same seed, same weights on CPU.")
    eval_every: int = Field(500, ge=1, description="Generator steps between evaluations (each one reports to the search).")
    eval_samples: int = Field(2500, ge=16, description="Generated (and real) samples per evaluation: fixed so scores compare.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to train: auto picks CUDA when the trial has a GPU.")


class GANConfig(Section):
    """Everything needed to train and evaluate one GAN."""

    data: DataConfig = Field(default_factory=DataConfig, description="Where the training data comes from and how it streams.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="GAN family and architecture.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Optimisation, loss, stabilisers and evaluation.")
