"""The training half of a job spec: what `trainers` needs to train one GAN, with no Ray or MLflow in sight.

`orchestrator.spec.JobSpec` extends `GANConfig` with the search, resources, storage, registry and cluster sections,
so these models are the single source of truth for field names, defaults and descriptions.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Section(BaseModel):
    """Base for every spec section: unknown keys are errors, assignment is validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    uri: str = Field(
        "builtin:digits",
        description="Data set: builtin:digits|ring8|grid25 (translation: builtin:digits-edges paired, builtin:digits-inverted unpaired), or a ganforge data set at a local path, file:// or s3:// URI.",
    )
    batch_size: int = Field(64, ge=1, description="Real samples per discriminator step.")
    shuffle_buffer: int = Field(4096, ge=1, description="Rows held in memory for the second-level shuffle.")
    readahead: int = Field(2, ge=0, description="Record batches read ahead of the trainer (bounds memory).")
    on_corrupt: Literal["error", "skip"] = Field("error", description="What a corrupt shard does: fail the trial or skip it with a warning.")
    resident_mb: float = Field(
        512, ge=0,
        description="A data set whose decoded samples fit in this many MiB is read once and held on the training device (GPU memory on a GPU) instead of streamed: same order and resume state, no reads or host-to-device copies per batch. 0 = always stream.",
    )


class ModelConfig(Section):
    family: str = Field(
        "dcgan",
        description="GAN family: gan, dcgan, wgan, wgan-gp, cgan, stylegan, sngan, lsgan, or image-to-image translation: pix2pix (paired data), cyclegan; it also sets the defaults of null train fields.",
    )
    latent_dim: int = Field(32, ge=1, description="Size of the generator's latent vector z.")
    width: int = Field(64, ge=1, description="Base channel count (images) or hidden units per layer (points) of G, and of D unless model.d_width is set.")
    latent_categories: int = Field(0, ge=0, description="MLP generators (gan, lsgan, wgan on points or flat images): a categorical latent code, z's first coordinate choosing one of this many equally likely categories (a uniform mixture prior, DeLiGAN); the rest of z, scaled by 0.1, spreads samples around each. Lets G make separated modes without bridges between them; 0 = a continuous z only. Needs latent_dim >= 2.")
    d_width: Optional[int] = Field(None, ge=1, description="The discriminator's width (DCGAN's ndf beside ngf): hidden units per MLP layer or base channel count; null = model.width.")
    depth: int = Field(3, ge=1, description="Hidden layers of MLP networks (points, gan on images) and StyleGAN's mapping network, residual blocks of ResNet translators; ignored by DCGAN convolutions.")
    spectral_norm: Optional[bool] = Field(None, description="Spectral normalisation on every discriminator layer; null = the family's default (on for sngan).")
    pack: int = Field(1, ge=1, description="PacGAN packing: the discriminator judges this many samples jointly.")
    d_maxout: int = Field(0, ge=0, description="Maxout discriminator (Goodfellow et al. 2013; PacGAN's and the GAN paper's on 2-D mixtures): each hidden unit of an MLP discriminator is the max of this many linear pieces (they use 5); 0 = Linear + LeakyReLU(0.2). Convolutional discriminators ignore it.")
    style_mixing: float = Field(0.9, ge=0, le=1, description="StyleGAN: probability that a training batch mixes two latents' styles.")
    generator: Optional[Literal["unet", "resnet"]] = Field(None, description="Translation families: the generator, a U-Net (skip connections, pix2pix) or a ResNet (down-sampling, model.depth residual blocks, up-sampling; CycleGAN); null = the family's default (pix2pix: unet, cyclegan: resnet).")
    d_layers: Optional[int] = Field(None, ge=0, description="Translation families: stride-2 layers of the PatchGAN discriminator, which set its receptive field (1: 16 px, 2: 34 px, 3: 70 px as in pix2pix; 0: 1 px PixelGAN); null = sized for the data's resolution (at most 3).")

    @property
    def discriminator_width(self) -> int:
        return self.d_width or self.width

    @model_validator(mode="after")
    def _categories_need_continuous_latent(self) -> "ModelConfig":
        if self.latent_categories and self.latent_dim < 2:  # z0 picks the category: nothing would be left to vary
            raise ValueError("model.latent_categories needs model.latent_dim >= 2 (z's first coordinate picks the category)")
        return self

    @field_validator("d_maxout")
    @classmethod
    def _maxout_needs_two_pieces(cls, pieces: int) -> int:
        if pieces == 1:  # the max of one linear piece is linear: a discriminator without a nonlinearity
            raise ValueError("must be 0 (LeakyReLU) or at least 2 pieces")
        return pieces


class TrainConfig(Section):
    """Fields left null take the family's default (see `trainers.settings.resolve`), then a global one."""

    steps: int = Field(2000, ge=1, description="Generator updates per trial.")
    optimizer: Optional[str] = Field(None, description="Optimizer of G and D: adam or rmsprop; null = the family's default (wgan: rmsprop, others: adam).")
    lr_g: float = Field(2e-4, gt=0, description="Learning rate of the generator.")
    lr_d: float = Field(2e-4, gt=0, description="Learning rate of the discriminator (TTUR when it differs from lr_g).")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam beta1 for G and D.")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam beta2 for G and D.")
    n_critic: Optional[int] = Field(None, ge=1, description="Discriminator updates per generator update; null = the family's default (wgan, wgan-gp: 5, others: 1).")
    loss: Optional[str] = Field(None, description="Adversarial loss: ns, minimax, wgan, wgan-gp, hinge, lsgan; null = the family's default.")
    penalty: Optional[str] = Field(None, description="Discriminator regulariser: gp, gp-one-sided, r1 or none; null = the family's/loss's default (wgan-gp: gp, stylegan: r1).")
    penalty_weight: Optional[float] = Field(None, ge=0, description="Weight of the penalty (GP lambda, R1 gamma); null = the family's or the penalty's default.")
    penalty_every: Optional[int] = Field(None, ge=1, description="Lazy regularisation: apply the penalty every N discriminator steps, weighted by N; null = family default (1).")
    weight_clip: Optional[float] = Field(None, ge=0, description="Clip discriminator weights to +-c after each update (WGAN); 0 disables; null = the family's default (wgan: 0.01).")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="One-sided label smoothing: real target 1 - s (losses with a label target: ns, minimax, lsgan).")
    instance_noise: float = Field(0.0, ge=0, description="Std of Gaussian noise added to every discriminator input (real and fake); 0 disables.")
    instance_noise_steps: int = Field(0, ge=0, description="Anneal the instance noise linearly to 0 over this many steps; 0 keeps it constant.")
    augment: list[str] = Field(default_factory=list, description="DiffAugment policies applied to every discriminator input (images): translation, color, cutout.")
    ema_decay: float = Field(0.999, ge=0, lt=1, description="Decay of the generator's exponential moving average; 0 disables EMA.")
    ema_start: int = Field(0, ge=0, description="Generator step at which EMA averaging starts (copy before).")
    latent_init: Literal["random", "data", "data-centres"] = Field("random", description="Where a categorical latent's categories start (trainers/latent_init.py): random (G's weight init: all close together; the game can leave groups of them on the same modes), data (before training, each category is regressed onto a real sample drawn at random, spreading the categories over the data in proportion to its density) or data-centres (the same for each category's centre only, the rest of z at 0, so G keeps its own spread around it). data and data-centres need model.latent_categories; the regression does not count as training steps.")
    lambda_l1: Optional[float] = Field(None, ge=0, description="pix2pix: weight of the L1 distance between G(A) and the real B beside the conditional adversarial loss; null = the family's default (pix2pix: 100).")
    lambda_cycle: Optional[float] = Field(None, ge=0, description="CycleGAN: weight of the cycle-consistency losses |G_BA(G_AB(a)) - a| and |G_AB(G_BA(b)) - b|; null = the family's default (10).")
    lambda_identity: Optional[float] = Field(None, ge=0, description="CycleGAN: weight of the identity losses |G_AB(b) - b|, |G_BA(a) - a|, relative to lambda_cycle as in the paper's code; null = the family's default (0.5).")
    pool_size: Optional[int] = Field(None, ge=0, description="CycleGAN: image-history buffer of generated images the discriminators also learn from (Shrivastava et al.); 0 disables; null = the family's default (50).")
    lr_decay_start: Optional[float] = Field(None, ge=0, le=1, description="Translation families: learning rates stay constant for this fraction of train.steps, then fall linearly to zero at the last step; 1 = no decay; null = the family's default (0.5, the papers' 100 + 100 epochs).")
    max_grad_norm: Optional[float] = Field(None, gt=0, description="Clip G and D gradient norms to this value; null disables.")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16 autocast of forward passes on GPU; ignored on CPU.")
    channels_last: bool = Field(False, description="channels_last memory format for convolutional networks on GPU; ignored on CPU.")
    divergence_loss: float = Field(1e4, gt=0, description="A loss above this (or NaN/Inf) ends the trial as diverged.")
    collapse_coverage: float = Field(0.5, ge=0, le=1, description="Flag mode collapse when the covered share of modes/classes/real neighbourhoods falls below this.")
    collapse_diversity: float = Field(0.2, ge=0, le=1, description="Flag mode collapse when sample diversity falls below this share of the real data's.")
    seed: int = Field(0, ge=0, description="Seed for weights, latents and data order; same seed, same weights on CPU.")
    eval_every: int = Field(500, ge=1, description="Generator steps between evaluations (each one reports to the search).")
    eval_samples: int = Field(2500, ge=16, description="Generated (and real) samples per evaluation: fixed so scores compare.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to train: auto picks CUDA when the trial has a GPU.")


class MetricsConfig(Section):
    features: str = Field(
        "own",
        description="Feature space of image metrics: own (a small network trained on a held-out split of the data set: fd_own, kd_own; compares runs on this data set) or inception (the TTUR/pytorch-fid InceptionV3 that papers' FID uses: fid, kid; needs its weights file).",
    )
    weights: Optional[str] = Field(
        None,
        description="The feature network's weights: a file or the folder holding it (inception: pt_inception-2015-12-05-6726825d.pth); null = $GANFORGE_WEIGHTS, else the cache, else a download when the network allows.",
    )


class GANConfig(Section):
    """Everything needed to train and evaluate one GAN."""

    data: DataConfig = Field(default_factory=DataConfig, description="Where the training data comes from and how it streams.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="GAN family and architecture.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Optimisation, loss, stabilisers and evaluation.")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="How samples are scored.")

    @model_validator(mode="after")
    def _anchors_need_categories(self) -> "GANConfig":
        if self.train.latent_init != "random" and not self.model.latent_categories:
            raise ValueError(f"train.latent_init: {self.train.latent_init} anchors the categories of a categorical latent; set model.latent_categories (e.g. 200)")
        return self
