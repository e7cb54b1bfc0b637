"""The model-agnostic GAN training loop.

`GANTrainer` sequences discriminator and generator phases for any registered family, loss, penalty, optimizer and
stabiliser; it knows nothing of Ray or MLflow and never branches on their names. Whoever runs it drives the one
evaluation cycle of trainers/cycle.py (train_steps -> evaluate -> save_checkpoint); `train()` below is that cycle
to the end with no reporter.

Per step it does what a hand-written loop does (one G forward, D on real and fake, G through D) plus nothing that
syncs with the host: diagnostics (D accuracy, gradient norms, losses) are sampled every _DIAGNOSTICS_EVERY steps,
which is also when NaN/Inf or exploding losses end the trial as TrainingDiverged.
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

from trainers import distributed
from trainers.accel import Accelerator
from trainers.cache import cache_root
from trainers.checkpoint import fingerprint, load_state, save_state
from trainers.cycle import NoReporter, TrainingDiverged, run_cycle
from trainers.config import GANConfig, TrainConfig
from trainers.data import StreamOptions, open_dataset
from trainers.diagnostics import collapse_report, largest_spectral_norm, sample_diversity
from trainers.ema import GeneratorEMA
from trainers.families import build_networks
from trainers.families.layers import pack_samples
from trainers.latent_init import LATENT_INITS
from trainers.losses import LOSSES
from trainers.optim import OPTIMIZERS, applied_hparams, apply_hparams as apply_optimizer_hparams
from trainers.penalties import PENALTIES
from trainers.settings import resolve
from trainers.stabilizers import build_stabilizers

# Offsets that give each random stream its own seed, so evaluation never perturbs training randomness.
_LATENT_SEED_OFFSET = 1
_RANK_SEED_STRIDE = 100_003  # each DDP rank draws its own latents and noise
_EVAL_SEED_OFFSET = 7919
# How often the loop samples its diagnostics and looks for NaN/Inf (a host sync on GPU, so not every step).
_DIAGNOSTICS_EVERY = 10


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class _RunningStats:
    """Sums of sampled diagnostics kept as tensors, turned into floats only when reported."""

    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    last: dict[str, torch.Tensor] = field(default_factory=dict)

    def add(self, **values: torch.Tensor) -> None:
        for k, v in values.items():
            v = v.detach().float()
            self.sums[k] = self.sums[k] + v if k in self.sums else v
            self.counts[k] = self.counts.get(k, 0) + 1
            self.last[k] = v

    def means(self) -> dict[str, float]:
        return {k: float(v) / self.counts[k] for k, v in self.sums.items()}


def _grad_norm(module: nn.Module) -> torch.Tensor:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())


class GANTrainer:
    """Trains one GAN described by a `GANConfig` (null fields take the family's defaults, see trainers.settings)."""

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
        self.settings = resolve(cfg)
        # One cache for the data sets and the metrics (GANFORGE_CACHE, ~/.cache/ganforge unless given): trials get
        # no cache_dir, and an image job's trials must still train the feature network once per machine, not each.
        self.cache_dir = cache_root(cache_dir)
        self.device = resolve_device(cfg.train.device) if device is None else torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.dataset = open_dataset(cfg.data.uri, cache_dir=self.cache_dir)
        self.info = self.dataset.info
        self.select_metric = select_metric
        train = self.settings.train

        torch.manual_seed(cfg.train.seed)  # weight init is the only user of the global RNG
        nets = build_networks(self.settings.model, self.info)
        self.accel = Accelerator(train, self.device)
        self.G = self.accel.module(nets.generator.to(self.device))
        self.D = self.accel.module(nets.discriminator.to(self.device))
        self.arch = nets.arch
        self.conditional = getattr(self.G, "num_classes", 0) > 0

        self.optimizer = OPTIMIZERS.get(train.optimizer)
        self.opt_g = self.optimizer.build(self.G.parameters(), train.lr_g, train)
        self.opt_d = self.optimizer.build(self.D.parameters(), train.lr_d, train)
        self.ema = GeneratorEMA(self.G, train.ema_decay, train.ema_start) if train.ema_decay > 0 else None

        # One CPU generator drives latents, penalty interpolation, augmentation, instance noise and the
        # generator's own noise inputs, so a checkpoint captures all training randomness.
        self.rng = torch.Generator().manual_seed(self._rng_seed())
        self.G.noise_rng = self.rng
        self.stream = self.dataset.stream(StreamOptions.from_config(cfg.data, seed=cfg.train.seed, rank=rank,
                                                                    world_size=world_size, device=self.device))
        # The modules training forwards go through: DDP wrappers when a process group is active.
        self._g = distributed.wrap(self.G, self.device, world_size)
        self._d = distributed.wrap(self.D, self.device, world_size)
        self.step = 0
        self.best_generator = "ema" if self.ema else "raw"
        self._evaluator = None
        self._real_diversity: float | None = None
        self._last_penalty: torch.Tensor | None = None
        self._latent_initialised = False
        self.latent_init_metrics: dict[str, float] = {}
        self._configure(train)

    def _rng_seed(self) -> int:
        return self.cfg.train.seed + _LATENT_SEED_OFFSET + self.rank * _RANK_SEED_STRIDE

    def _configure(self, train: TrainConfig) -> None:
        """Pick the loss, penalty and stabilisers of the (resolved) train section; re-run when it changes."""
        self.loss = LOSSES.get(train.loss)
        if train.label_smoothing > 0 and not self.loss.label_target:
            raise ValueError(
                f"train.label_smoothing={train.label_smoothing:g} needs a loss with a real-label target "
                f"(ns, minimax, lsgan); train.loss is {train.loss!r}"
            )
        self.real_target = 1.0 - train.label_smoothing
        penalty = PENALTIES.get(train.penalty)
        self.penalty = penalty if penalty.active and train.penalty_weight > 0 else None
        self.stabilizers = build_stabilizers(train, self.info)

    # ------------------------------------------------------------------ hyperparameters
    def apply_hparams(self, train: TrainConfig) -> None:
        """Push the trial's current hyperparameters into the optimizers, the loss, penalty and stabilisers.

        Called after every restore: a restored optimizer state carries the lr/betas of whoever saved it (with PBT,
        the donor's), which would silently undo the search's mutation (ray-project/ray#62173).
        """
        self.cfg = self.cfg.model_copy(update={"train": train})
        self.settings = resolve(self.cfg)
        resolved = self.settings.train
        apply_optimizer_hparams(self.opt_g, self.optimizer, resolved.lr_g, resolved)
        apply_optimizer_hparams(self.opt_d, self.optimizer, resolved.lr_d, resolved)
        if self.ema:
            self.ema.decay, self.ema.start = resolved.ema_decay, resolved.ema_start
        self._configure(resolved)

    # ------------------------------------------------------------------ training
    def latents(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.G.latent_dim, generator=self.rng).to(self.device, non_blocking=True)

    def real_samples(self, n: int) -> torch.Tensor:
        """n real samples from the training stream (advancing it), on the training device."""
        xs: list[torch.Tensor] = []
        while sum(x.shape[0] for x in xs) < n:
            xs.append(self.stream.next_batch()[0])
        return torch.cat(xs)[:n].to(self.device)

    def _initialise_latent(self) -> None:
        """train.latent_init, once, before the first generator step (never after a restore)."""
        self._latent_initialised = True
        if self.step > 0:
            return
        self.latent_init_metrics = LATENT_INITS.get(self.cfg.train.latent_init)(self.G, lambda z: self._g(z, None), self)
        if self.latent_init_metrics and self.ema:  # the average starts from the initialised G, not the random one
            self.ema.model.load_state_dict(self.G.state_dict())

    def _real_batch(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        x, y = self.stream.next_batch()
        x = self.accel.batch(x.to(self.device, non_blocking=True))
        return x, (y.to(self.device) if (self.conditional and y is not None) else None)

    def _d_view(self, x: torch.Tensor) -> torch.Tensor:
        """What D sees of a batch: stabiliser transforms (augment, noise), then PacGAN packing."""
        for s in self.stabilizers:
            x = s.d_input(x, self.step, self.rng)
        return pack_samples(x, self.cfg.model.pack)

    def _critic(self, d: nn.Module, y: Optional[torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        if y is None:
            return d
        pack = self.cfg.model.pack
        # A packed sample is judged with the label of its first member (conditional + pack is rarely combined).
        return partial(d, y=y[: (y.shape[0] // pack) * pack : pack])

    def _discriminator_update(
        self, real: torch.Tensor, fake: torch.Tensor, y: Optional[torch.Tensor], d_step: int, stats: Optional[_RunningStats]
    ) -> None:
        train = self.settings.train
        with self.accel.autocast():
            real_v, fake_v = self._d_view(real), self._d_view(fake)
            # Real and fake in separate forwards: faster than one concatenated batch on CPU (measured), and
            # required by discriminators that mix a batch's samples (StyleGAN's minibatch std).
            critic = self._critic(self._d, y)
            d_real, d_fake = critic(real_v), critic(fake_v)
        d_real, d_fake = d_real.float(), d_fake.float()
        loss_d = self.loss.d_loss(d_real, d_fake, self.real_target)
        if self.penalty is not None and d_step % train.penalty_every == 0:
            # Lazy regularisation: applied every penalty_every steps with its weight scaled up to match (StyleGAN2).
            penalty = self.penalty(self._critic(self.D, y), real_v.float(), fake_v.float(), self.rng)
            loss_d = loss_d + (train.penalty_weight * train.penalty_every) * penalty
            self._last_penalty = penalty.detach()
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        grad_d = self._clip(self.D, stats is not None)
        self.opt_d.step()
        for s in self.stabilizers:
            s.after_d_update(self.D)
        if stats is not None:
            thr = self.loss.logit_threshold
            stats.add(
                loss_d=loss_d,
                d_real_acc=(d_real > thr).float().mean(),
                d_fake_acc=(d_fake < thr).float().mean(),
                grad_norm_d=grad_d,
            )
            if self._last_penalty is not None:  # the latest value: lazy penalties skip most sampled steps
                stats.add(penalty=self._last_penalty)

    def _generator_update(self, fake: torch.Tensor, y: Optional[torch.Tensor], stats: Optional[_RunningStats]) -> None:
        # D's weights get no gradient here: freezing them skips D's weight-gradient kernels in this backward.
        self.D.requires_grad_(False)
        try:
            with self.accel.autocast():
                d_fake = self._critic(self.D, y)(self._d_view(fake))
            loss_g = self.loss.g_loss(d_fake.float())
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
        finally:
            self.D.requires_grad_(True)
        grad_g = self._clip(self.G, stats is not None)
        self.opt_g.step()
        if stats is not None:
            stats.add(loss_g=loss_g, grad_norm_g=grad_g)

    def _clip(self, module: nn.Module, measure: bool) -> Optional[torch.Tensor]:
        max_norm = self.settings.train.max_grad_norm
        if max_norm:
            return nn.utils.clip_grad_norm_(module.parameters(), max_norm)
        return _grad_norm(module) if measure else None

    def _train_one(self, stats: Optional[_RunningStats]) -> None:
        """n_critic discriminator updates, then one generator update on the last critic step's fakes."""
        n_critic = self.settings.train.n_critic
        for k in range(n_critic):
            real, y = self._real_batch()
            last = k == n_critic - 1
            with torch.set_grad_enabled(last), self.accel.autocast():
                fake = self._g(self.latents(real.shape[0]), y)
            self._discriminator_update(real, fake.detach(), y, self.step * n_critic + k, stats if last else None)
        self._generator_update(fake, y, stats)

    def _check_divergence(self, last: dict[str, torch.Tensor]) -> None:
        limit = self.settings.train.divergence_loss
        reason = None
        for name in ("loss_d", "loss_g"):
            if name in last:
                value = float(last[name])
                if not math.isfinite(value):
                    reason = f"{name} is {value}"
                elif abs(value) > limit:
                    reason = f"|{name}| = {abs(value):.3g} exceeds train.divergence_loss={limit:g}"
                if reason:
                    break
        if distributed.any_rank(reason is not None, self.device, self.world_size):
            raise TrainingDiverged(self.step, reason or "another rank diverged")

    def train_steps(self, n: int) -> dict[str, float]:
        """Run `n` generator updates (each after `n_critic` discriminator updates); return mean sampled diagnostics."""
        self._g.train()
        self._d.train()
        initialising = not self._latent_initialised
        if initialising:
            self._initialise_latent()
        stats = _RunningStats()
        for i in range(n):
            sample = (i + 1) % _DIAGNOSTICS_EVERY == 0 or i == n - 1
            self._train_one(stats if sample else None)
            self.step += 1
            if self.ema:
                self.ema.update(self.G, self.step)
            if sample:
                self._check_divergence(stats.last)
        out = stats.means()
        if initialising:  # the first report of a run says how well the latent initialisation landed
            out.update(self.latent_init_metrics)
        out.update(self.stream.stats)
        out["step"] = float(self.step)
        return out

    # ------------------------------------------------------------------ evaluation
    @property
    def evaluator(self):
        if self._evaluator is None:
            from trainers.metrics.base import RealRows, build_evaluator

            # The data set's fixed split (trainers/metrics/split.py), the same for every trial and job, so scores and
            # floors compare across them; metrics read only the rows they need.
            real = RealRows(self.info.num_rows, self.dataset.rows, name=self.info.name)
            metrics = self.cfg.metrics
            self._evaluator = build_evaluator(self.info, real, self.cfg.train.eval_samples, self.cache_dir,
                                              device=self.device, features=metrics.features, weights=metrics.weights)
            self._real_diversity = sample_diversity(self._evaluator.real_x)
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
            with self.accel.autocast():
                return generator(z, y).float()

        return sample

    def _score(self, generator: nn.Module) -> dict[str, float]:
        """The suite's scores plus the diversity of the first samples it drew."""
        was_training = generator.training
        generator.eval()
        draw = self.sampler(generator)
        first: list[torch.Tensor] = []

        def keep_first(n: int) -> torch.Tensor:
            x = draw(n)
            if not first:
                first.append(x)
            return x

        try:
            scores = self.evaluator.evaluate(keep_first)
        finally:
            generator.train(was_training)
        real = self._real_diversity or 0.0
        scores["diversity_ratio"] = sample_diversity(first[0]) / real if real > 0 else 0.0
        return scores

    def evaluate(self) -> dict[str, float]:
        """Score the raw and (when enabled) EMA generator; the primary keys hold the better one's scores.

        Adds each generator's score of the selected metric (`<metric>_raw`, `<metric>_ema`), the real-vs-real
        floors, the mode-collapse flag and the largest spectral norm of G and D. Only rank 0 evaluates: other
        ranks of a data-parallel trial return {}.
        """
        if self.rank != 0:
            return {}
        from trainers.metrics import METRIC_MODES

        mode = METRIC_MODES.get(self.metric, "min")
        scored = {name: self._score(g) for name, g in self.generators().items()}
        pick = min if mode == "min" else max
        self.best_generator = pick(scored, key=lambda k: _finite_or(scored[k].get(self.metric), mode))
        out = dict(scored[self.best_generator])
        for name, metrics in scored.items():
            if self.metric in metrics:
                out[f"{self.metric}_{name}"] = metrics[self.metric]
        out.update(self.evaluator.floors)
        out.update(collapse_report(out, self.evaluator.floors, out.pop("diversity_ratio"), self.settings.train))
        out["uses_ema"] = float(self.best_generator == "ema")
        out["sn_max_g"] = largest_spectral_norm(self.G)
        out["sn_max_d"] = largest_spectral_norm(self.D)
        return out

    def applied_hparams(self) -> dict[str, float]:
        """The hyperparameters the optimizers actually hold (after a PBT exploit: the recipient's, not the donor's)."""
        return applied_hparams(self.opt_g, self.opt_d)

    def fingerprint(self) -> float:
        return fingerprint(self.G)

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
        self._latent_initialised = True  # a restored G is where its training left it
        if self.ema and state["G_ema"]:
            self.ema.model.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step = int(state["step"])
        if distributed.active(self.world_size):
            # The checkpoint holds one rank's generator state; every rank re-derives its own from (seed, rank, step).
            self.rng.manual_seed(self._rng_seed() + self.step)
        else:
            self.rng.set_state(state["rng"])
        self.stream.load_state_dict(state["data"])
        self.best_generator = state.get("best_generator", self.best_generator)
        self.apply_hparams(self.cfg.train)

    def save_checkpoint(self, directory: str | os.PathLike, *, export: bool = True, grid_samples: int = 64) -> Path:
        """Write the full state; with `export` (rank 0 only), also the best generator (safetensors + JSON) and a
        sample grid."""
        directory = Path(directory)
        save_state(directory, self.state_dict())
        if export and self.rank == 0:
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
    try:
        return run_cycle(trainer, NoReporter(on_eval), steps=cfg.train.steps, eval_every=cfg.train.eval_every).metrics
    finally:
        trainer.close()
