"""The model-agnostic GAN training loop.

`GANTrainer` sequences discriminator and generator phases for any registered family, loss and penalty; it knows
nothing of Ray or MLflow. The orchestrator drives it (train_steps -> evaluate -> save_checkpoint); `train()` below
is the same sequence as a plain function call.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from trainers.checkpoint import load_state, save_state
from trainers.config import GANConfig, TrainConfig
from trainers.data import open_dataset
from trainers.ema import GeneratorEMA
from trainers.families import build_networks
from trainers.families.layers import pack_samples
from trainers.losses import LOSSES
from trainers.penalties import PENALTIES

# Offsets that give each random stream its own seed, so evaluation never perturbs training randomness.
_LATENT_SEED_OFFSET = 1
_EVAL_SEED_OFFSET = 7919
_REAL_EVAL_SEED = 20160519
# How often the loop looks at its losses for NaN/Inf (a host sync on GPU, so not every step).
_DIVERGENCE_CHECK_EVERY = 10


class TrainingDiverged(RuntimeError):
    """The losses became NaN/Inf or exploded: the trial ends as `diverged` instead of crashing the search."""

    def __init__(self, step: int, reason: str) -> None:
        super().__init__(f"training diverged at step {step}: {reason}")
        self.step = step
        self.reason = reason


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class _RunningStats:
    """Sums of per-step diagnostics kept as tensors, turned into floats only when reported."""

    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    count: int = 0

    def add(self, **values: torch.Tensor) -> None:
        for k, v in values.items():
            v = v.detach().float()
            self.sums[k] = self.sums[k] + v if k in self.sums else v
        self.count += 1

    def means(self) -> dict[str, float]:
        return {k: float(v) / max(self.count, 1) for k, v in self.sums.items()}


class GANTrainer:
    """Trains one GAN described by a `GANConfig`."""

    def __init__(
        self,
        cfg: GANConfig,
        *,
        cache_dir: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        rank: int = 0,
        world_size: int = 1,
        select_metric: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.cache_dir = cache_dir
        self.device = resolve_device(cfg.train.device) if device is None else torch.device(device)
        self.dataset = open_dataset(cfg.data.uri, cache_dir=cache_dir)
        self.info = self.dataset.info
        self.select_metric = select_metric

        torch.manual_seed(cfg.train.seed)  # weight init is the only user of the global RNG
        nets = build_networks(cfg.model, self.info)
        self.G = nets.generator.to(self.device)
        self.D = nets.discriminator.to(self.device)
        self.arch = nets.arch
        self.conditional = getattr(self.G, "num_classes", 0) > 0

        self.loss = LOSSES.get(cfg.train.loss)
        penalty_name = cfg.train.penalty or self.loss.implied_penalty
        self.penalty = PENALTIES.get(penalty_name) if penalty_name else None

        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.train.lr_g, betas=(cfg.train.beta1, cfg.train.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.train.lr_d, betas=(cfg.train.beta1, cfg.train.beta2))
        self.ema = GeneratorEMA(self.G, cfg.train.ema_decay, cfg.train.ema_start) if cfg.train.ema_decay > 0 else None

        # One CPU generator drives latents and penalty interpolation, so a checkpoint captures all training randomness.
        self.rng = torch.Generator().manual_seed(cfg.train.seed + _LATENT_SEED_OFFSET)
        self.stream = self.dataset.stream(
            batch_size=cfg.data.batch_size,
            seed=cfg.train.seed,
            shuffle_buffer=cfg.data.shuffle_buffer,
            readahead=cfg.data.readahead,
            rank=rank,
            world_size=world_size,
            on_corrupt=cfg.data.on_corrupt,
        )
        self.step = 0
        self.best_generator = "ema" if self.ema else "raw"
        self._evaluator = None

    # ------------------------------------------------------------------ hyperparameters
    def apply_hparams(self, train: TrainConfig) -> None:
        """Push the trial's current hyperparameters into the optimizers.

        Called after every restore: a restored optimizer state carries the lr/betas of whoever saved it (with PBT,
        the donor's), which would silently undo the search's mutation (ray-project/ray#62173).
        """
        self.cfg = self.cfg.model_copy(update={"train": train})
        for opt, lr in ((self.opt_g, train.lr_g), (self.opt_d, train.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr
                group["betas"] = (train.beta1, train.beta2)
        if self.ema:
            self.ema.decay, self.ema.start = train.ema_decay, train.ema_start

    # ------------------------------------------------------------------ training
    def _latents(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.G.latent_dim, generator=self.rng).to(self.device, non_blocking=True)

    def _real_batch(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        x, y = self.stream.next_batch()
        x = x.to(self.device, non_blocking=True)
        return x, (y.to(self.device) if (self.conditional and y is not None) else None)

    def _critic(self, y: Optional[torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        if y is None:
            return self.D
        pack = self.cfg.model.pack
        # A packed sample is judged with the label of its first member (conditional + pack is rarely combined).
        return partial(self.D, y=y[: (y.shape[0] // pack) * pack : pack])

    def _clip(self, params) -> torch.Tensor:
        max_norm = self.cfg.train.max_grad_norm
        return nn.utils.clip_grad_norm_(params, max_norm if max_norm else float("inf"))

    def _discriminator_step(self, stats: _RunningStats) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        pack, train = self.cfg.model.pack, self.cfg.train
        real, y = self._real_batch()
        with torch.no_grad():
            fake = self.G(self._latents(real.shape[0]), y)
        critic = self._critic(y)
        real_p, fake_p = pack_samples(real, pack), pack_samples(fake, pack)
        d_real, d_fake = critic(real_p), critic(fake_p)
        loss_d = self.loss.d_loss(d_real, d_fake)
        penalty = torch.zeros((), device=self.device)
        if self.penalty is not None and train.penalty_weight > 0:
            penalty = self.penalty(critic, real_p, fake_p, self.rng)
            loss_d = loss_d + train.penalty_weight * penalty
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        grad_d = self._clip(self.D.parameters())
        self.opt_d.step()
        thr = self.loss.logit_threshold
        stats.add(
            loss_d=loss_d,
            penalty=penalty,
            d_real_acc=(d_real > thr).float().mean(),
            d_fake_acc=(d_fake < thr).float().mean(),
            grad_norm_d=grad_d,
        )
        return real, y

    def _generator_step(self, batch_size: int, y: Optional[torch.Tensor], stats: _RunningStats) -> None:
        fake = self.G(self._latents(batch_size), y)
        loss_g = self.loss.g_loss(self._critic(y)(pack_samples(fake, self.cfg.model.pack)))
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        grad_g = self._clip(self.G.parameters())
        self.opt_g.step()
        stats.add(loss_g=loss_g, grad_norm_g=grad_g)

    def _check_divergence(self, stats: _RunningStats) -> None:
        limit = self.cfg.train.divergence_loss
        for name in ("loss_d", "loss_g"):
            if name in stats.sums:
                value = float(stats.sums[name]) / max(stats.count, 1)
                if not math.isfinite(value):
                    raise TrainingDiverged(self.step, f"{name} is {value}")
                if abs(value) > limit:
                    raise TrainingDiverged(self.step, f"|{name}| = {abs(value):.3g} exceeds train.divergence_loss={limit:g}")

    def train_steps(self, n: int) -> dict[str, float]:
        """Run `n` generator updates (each after `n_critic` discriminator updates); return mean diagnostics."""
        self.G.train()
        self.D.train()
        stats = _RunningStats()
        window = _RunningStats()
        for i in range(n):
            for _ in range(self.cfg.train.n_critic):
                real, y = self._discriminator_step(window)
            self._generator_step(real.shape[0], y, window)
            self.step += 1
            if self.ema:
                self.ema.update(self.G, self.step)
            if (i + 1) % _DIVERGENCE_CHECK_EVERY == 0 or i == n - 1:
                self._check_divergence(window)
                for k, v in window.sums.items():
                    stats.sums[k] = stats.sums[k] + v if k in stats.sums else v
                stats.count += window.count
                window = _RunningStats()
        out = stats.means()
        out.update(self.stream.stats)
        out["step"] = float(self.step)
        return out

    # ------------------------------------------------------------------ evaluation
    @property
    def evaluator(self):
        if self._evaluator is None:
            from trainers.metrics import build_evaluator

            n = self.cfg.train.eval_samples
            # The same real set for every trial of a data set (a fixed seed, not the trial's), so scores and floors
            # compare across trials; never more rows than exist, since duplicates would shrink its diversity.
            real = self.dataset.real_samples(min(n, self.info.num_rows), seed=_REAL_EVAL_SEED)
            self._evaluator = build_evaluator(self.info, real, n, self.cache_dir, device=self.device)
        return self._evaluator

    @property
    def metric(self) -> str:
        return self.select_metric or self.evaluator.default_metric

    def generators(self) -> dict[str, nn.Module]:
        return {"raw": self.G, "ema": self.ema.model} if self.ema else {"raw": self.G}

    def sampler(self, generator: nn.Module, seed: int | None = None) -> Callable[[int], torch.Tensor]:
        """A deterministic sample function: the same latents at every evaluation, so scores compare across steps."""
        rng = torch.Generator().manual_seed(self.cfg.train.seed + _EVAL_SEED_OFFSET if seed is None else seed)
        label_rng = torch.Generator().manual_seed(rng.initial_seed() + 1)

        @torch.no_grad()
        def sample(n: int) -> torch.Tensor:
            z = torch.randn(n, generator.latent_dim, generator=rng).to(self.device)
            y = None
            if self.conditional:
                y = torch.randint(0, self.G.num_classes, (n,), generator=label_rng).to(self.device)
            return generator(z, y).float()

        return sample

    def evaluate(self) -> dict[str, float]:
        """Score the raw and (when enabled) EMA generator; the primary keys hold the better one's scores."""
        from trainers.metrics import METRIC_MODES

        mode = METRIC_MODES.get(self.metric, "min")
        scored: dict[str, dict[str, float]] = {}
        for name, g in self.generators().items():
            was_training = g.training
            g.eval()
            scored[name] = self.evaluator.evaluate(self.sampler(g))
            g.train(was_training)
        pick = min if mode == "min" else max
        self.best_generator = pick(scored, key=lambda k: _finite_or(scored[k].get(self.metric), mode))
        out = dict(scored[self.best_generator])
        for name, metrics in scored.items():
            if self.metric in metrics:
                out[f"{self.metric}_{name}"] = metrics[self.metric]
        out.update(self.evaluator.floors)
        out["uses_ema"] = float(self.best_generator == "ema")
        return out

    def best_samples(self, n: int, seed: int = 0) -> torch.Tensor:
        g = self.generators()[self.best_generator]
        was_training = g.training
        g.eval()
        x = self.sampler(g, seed=seed)(n).cpu()
        g.train(was_training)
        return x

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.ema.model.state_dict() if self.ema else {},
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "step": self.step,
            "rng": self.rng.get_state(),
            "data": self.stream.state_dict(),
            "best_generator": self.best_generator,
            "model_config": self.cfg.model.model_dump(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved_model = state.get("model_config")
        if saved_model is not None and saved_model != self.cfg.model.model_dump():
            raise ValueError(
                f"checkpoint was trained with model {saved_model}, this trial has {self.cfg.model.model_dump()}; "
                "refusing to resume across architectures"
            )
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        if self.ema and state["G_ema"]:
            self.ema.model.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step = int(state["step"])
        self.rng.set_state(state["rng"])
        self.stream.load_state_dict(state["data"])
        self.best_generator = state.get("best_generator", self.best_generator)
        self.apply_hparams(self.cfg.train)

    def save_checkpoint(self, directory: str | os.PathLike, *, export: bool = True, grid_samples: int = 64) -> Path:
        """Write the full state; with `export`, also the best generator (safetensors + JSON) and a sample grid."""
        directory = Path(directory)
        save_state(directory, self.state_dict())
        if export:
            from trainers.export import save_generator
            from trainers.metrics import save_grid

            g = self.generators()[self.best_generator]
            save_generator(g, self.arch, self.info, directory, meta={"step": self.step, "weights": self.best_generator})
            save_grid(self.best_samples(grid_samples), self.info.kind, directory / "grid.png")
        return directory

    def load_checkpoint(self, directory: str | os.PathLike) -> None:
        self.load_state_dict(load_state(directory, self.device))

    def close(self) -> None:
        self.stream.close()


def _finite_or(value: float | None, mode: str) -> float:
    if value is None or not math.isfinite(value):
        return math.inf if mode == "min" else -math.inf
    return value


def train(
    cfg: GANConfig,
    *,
    cache_dir: str | os.PathLike | None = None,
    on_eval: Callable[[GANTrainer, dict[str, float]], None] | None = None,
) -> dict[str, float]:
    """Train one GAN to `train.steps`, evaluating every `train.eval_every` steps; returns the last metrics."""
    trainer = GANTrainer(cfg, cache_dir=cache_dir)
    metrics: dict[str, float] = {}
    try:
        while trainer.step < cfg.train.steps:
            stats = trainer.train_steps(min(cfg.train.eval_every, cfg.train.steps - trainer.step))
            metrics = {**stats, **trainer.evaluate()}
            if on_eval:
                on_eval(trainer, metrics)
    finally:
        trainer.close()
    return metrics
