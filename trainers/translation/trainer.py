"""`TranslationTrainer`: pix2pix and CycleGAN training with the methods the trial drives on `GANTrainer`
(train_steps -> evaluate -> save_checkpoint / load_checkpoint, apply_hparams, best_samples, close).

Rows arrive as A|B images side by side (trainers/data/sources/two_domain.py) from the ordinary stream, so data
shuffling, DDP shares and exact resume are the data layer's. The adversarial loss, optimizer, penalty, stabilisers
(DiffAugment, instance noise, weight clipping), EMA, gradient clipping and PacGAN packing come from the same
registries as every family; translation adds the reconstruction weights, the image pool and the lr decay
(trainers/translation/losses.py). Per step, as in the reference:

- pix2pix: D on (A, B) vs (A, G(A)) with loss x 0.5; G by the cGAN loss + lambda_l1 * |G(A) - B|.
- CycleGAN: G_AB and G_BA by the adversarial losses of both directions + lambda_cycle * cycle errors +
  lambda_cycle * lambda_identity * identity errors; then D_B on real B vs pooled G_AB(A) and D_A likewise.
"""
from __future__ import annotations

import importlib
import math
import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from trainers.accel import Accelerator
from trainers.checkpoint import fingerprint, load_state, save_state
from trainers.config import GANConfig, TrainConfig
from trainers.data import StreamOptions, open_dataset
from trainers.cache import cache_root
from trainers.diagnostics import largest_spectral_norm
from trainers.ema import GeneratorEMA
from trainers.families import build_networks
from trainers.families.layers import pack_samples
from trainers.loop import TrainingDiverged, _finite_or, _RunningStats, resolve_device
from trainers.losses import LOSSES
from trainers.metrics.split import FIT_ROWS_MAX
from trainers.optim import OPTIMIZERS, applied_hparams, apply_hparams as apply_optimizer_hparams
from trainers.penalties import PENALTIES
from trainers.settings import resolve
from trainers.stabilizers import build_stabilizers
from trainers.translation.losses import ImagePool, linear_decay

_RNG_SEED_OFFSET = 1
_DIAGNOSTICS_EVERY = 10
_HELDOUT_ROWS_SEED = 20160519  # the same held-out rows in every trial, for grids and scores


def _halves(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    width = rows.shape[-1] // 2
    return rows[..., :width], rows[..., width:]


class TranslationTrainer:
    """Trains one pix2pix or CycleGAN model described by a `GANConfig` (null fields take the family's defaults)."""

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
        if world_size != 1:
            raise ValueError("translation families train in one process: set resources.workers_per_trial: 1")
        self.cfg = cfg
        self.settings = resolve(cfg)
        self.cache_dir = cache_root(cache_dir)
        self.device = resolve_device(cfg.train.device) if device is None else torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.dataset = open_dataset(cfg.data.uri, cache_dir=self.cache_dir)
        self.info = self.dataset.info
        self.select_metric = select_metric
        train = self.settings.train

        torch.manual_seed(cfg.train.seed)
        nets = build_networks(self.settings.model, self.info)
        self.accel = Accelerator(train, self.device)
        self.G = self.accel.module(nets.generator.to(self.device))
        self.D = self.accel.module(nets.discriminator.to(self.device))
        self.arch = nets.arch
        self.directions = self.G.directions
        self.conditional = len(self.directions) == 1  # pix2pix: one direction, D judges (A, B) stacked

        self.optimizer = OPTIMIZERS.get(train.optimizer)
        self.opt_g = self.optimizer.build(self.G.parameters(), train.lr_g, train)
        self.opt_d = self.optimizer.build(self.D.parameters(), train.lr_d, train)
        self.ema = GeneratorEMA(self.G, train.ema_decay, train.ema_start) if train.ema_decay > 0 else None
        self.pools = {domain: ImagePool(train.pool_size) for domain in self.D.keys()}
        self.rng = torch.Generator().manual_seed(cfg.train.seed + _RNG_SEED_OFFSET)
        self.stream = self.dataset.stream(StreamOptions.from_config(cfg.data, seed=cfg.train.seed, device=self.device))
        self.step = 0
        self.best_generator = "ema" if self.ema else "raw"
        self._evaluator = None
        self._heldout: tuple[torch.Tensor, bool] | None = None
        self._configure(train)

    def _configure(self, train: TrainConfig) -> None:
        self.loss = LOSSES.get(train.loss)
        self.real_target = 1.0 - train.label_smoothing
        penalty = PENALTIES.get(train.penalty)
        self.penalty = penalty if penalty.active and train.penalty_weight > 0 else None
        self.stabilizers = build_stabilizers(train, self.info)
        for pool in self.pools.values():
            pool.size = train.pool_size

    def apply_hparams(self, train: TrainConfig) -> None:
        """Re-apply the trial's hyperparameters after a restore (PBT: the recipient's, not the donor's)."""
        self.cfg = self.cfg.model_copy(update={"train": train})
        self.settings = resolve(self.cfg)
        resolved = self.settings.train
        apply_optimizer_hparams(self.opt_g, self.optimizer, resolved.lr_g, resolved)
        apply_optimizer_hparams(self.opt_d, self.optimizer, resolved.lr_d, resolved)
        if self.ema:
            self.ema.decay, self.ema.start = resolved.ema_decay, resolved.ema_start
        self._configure(resolved)

    def applied_hparams(self) -> dict[str, float]:
        """The hyperparameters the optimizers hold now (after a PBT exploit: the recipient's own)."""
        return applied_hparams(self.opt_g, self.opt_d)

    def fingerprint(self) -> float:
        return fingerprint(self.G)

    # ------------------------------------------------------------------ training
    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        rows, _ = self.stream.next_batch()
        return _halves(self.accel.batch(rows.to(self.device, non_blocking=True)))

    def _d_view(self, x: torch.Tensor) -> torch.Tensor:
        for s in self.stabilizers:
            x = s.d_input(x, self.step, self.rng)
        return pack_samples(x, self.cfg.model.pack)

    def _d_input(self, source: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """What a discriminator judges: the image, stacked on its source for conditional (pix2pix) D."""
        return torch.cat([source, image], dim=1) if self.conditional else image

    def _decay_lr(self) -> None:
        train = self.settings.train
        factor = linear_decay(self.step, train.steps, train.lr_decay_start)
        for opt, lr in ((self.opt_g, train.lr_g), (self.opt_d, train.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * factor

    def _clip(self, module: nn.Module) -> torch.Tensor:
        max_norm = self.settings.train.max_grad_norm
        if max_norm:
            return nn.utils.clip_grad_norm_(module.parameters(), max_norm)
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())

    def _g_update(self, a: torch.Tensor, b: torch.Tensor, stats: _RunningStats | None) -> dict[str, torch.Tensor]:
        """One generator step; returns the fakes each discriminator then learns from, keyed by the domain judged."""
        train = self.settings.train
        self.D.requires_grad_(False)
        try:
            with self.accel.autocast():
                fake_b = self.G(a, "AtoB")
                terms = {"adv_b": self.loss.g_loss(self.D["B"](self._d_view(self._d_input(a, fake_b))).float())}
                fakes = {"B": (a, fake_b)}
                if self.conditional:
                    terms["l1"] = train.lambda_l1 * F.l1_loss(fake_b.float(), b.float())
                else:
                    fake_a = self.G(b, "BtoA")
                    fakes["A"] = (b, fake_a)
                    terms["adv_a"] = self.loss.g_loss(self.D["A"](self._d_view(fake_a)).float())
                    terms["cycle"] = train.lambda_cycle * (F.l1_loss(self.G(fake_b, "BtoA").float(), a.float())
                                                           + F.l1_loss(self.G(fake_a, "AtoB").float(), b.float()))
                    if train.lambda_identity > 0:
                        terms["identity"] = train.lambda_cycle * train.lambda_identity * (
                            F.l1_loss(self.G(b, "AtoB").float(), b.float()) + F.l1_loss(self.G(a, "BtoA").float(), a.float()))
            loss_g = sum(terms.values())
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
        finally:
            self.D.requires_grad_(True)
        grad_g = self._clip(self.G)
        self.opt_g.step()
        if stats is not None:
            stats.add(loss_g=loss_g, grad_norm_g=grad_g, **{f"loss_{k}": v for k, v in terms.items()})
        return fakes

    def _d_update(self, reals: dict[str, tuple[torch.Tensor, torch.Tensor]],
                  fakes: dict[str, tuple[torch.Tensor, torch.Tensor]], d_step: int, stats: _RunningStats | None) -> None:
        """One step of every discriminator: real (source, image) pairs against (pooled) fakes."""
        train = self.settings.train
        loss_d = torch.zeros((), device=self.device)
        accuracy = []
        for domain, (source, fake) in fakes.items():
            fake = self.pools[domain].query(fake.detach(), self.rng) if not self.conditional else fake.detach()
            real_v = self._d_view(self._d_input(*reals[domain]))
            fake_v = self._d_view(self._d_input(source, fake))
            critic = self.D[domain]
            with self.accel.autocast():
                d_real, d_fake = critic(real_v).float(), critic(fake_v).float()
            # x 0.5: the reference slows D relative to G this way
            loss_d = loss_d + 0.5 * self.loss.d_loss(d_real, d_fake, self.real_target)
            if self.penalty is not None and d_step % train.penalty_every == 0:
                loss_d = loss_d + (train.penalty_weight * train.penalty_every) * self.penalty(
                    critic, real_v.float(), fake_v.float(), self.rng)
            thr = self.loss.logit_threshold
            accuracy.append(((d_real > thr).float().mean(), (d_fake < thr).float().mean()))
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        grad_d = self._clip(self.D)
        self.opt_d.step()
        for s in self.stabilizers:
            s.after_d_update(self.D)
        if stats is not None:
            stats.add(loss_d=loss_d, grad_norm_d=grad_d, d_real_acc=sum(r for r, _ in accuracy) / len(accuracy),
                      d_fake_acc=sum(f for _, f in accuracy) / len(accuracy))

    def _train_one(self, stats: _RunningStats | None) -> None:
        """One generator step, then n_critic discriminator steps (the first on this step's fakes)."""
        self._decay_lr()
        a, b = self._batch()
        fakes = self._g_update(a, b, stats)
        n_critic = self.settings.train.n_critic
        for k in range(n_critic):
            if k:
                a, b = self._batch()
                with torch.no_grad(), self.accel.autocast():
                    fakes = {"B": (a, self.G(a, "AtoB"))}
                    if "A" in self.D:
                        fakes["A"] = (b, self.G(b, "BtoA"))
            reals = {"B": (a, b), "A": (b, a)}
            self._d_update(reals, fakes, self.step * n_critic + k, stats if k == n_critic - 1 else None)

    def _check_divergence(self, last: dict[str, torch.Tensor]) -> None:
        limit = self.settings.train.divergence_loss
        for name in ("loss_d", "loss_g"):
            if name in last:
                value = float(last[name])
                if not math.isfinite(value):
                    raise TrainingDiverged(self.step, f"{name} is {value}")
                if abs(value) > limit:
                    raise TrainingDiverged(self.step, f"|{name}| = {abs(value):.3g} exceeds train.divergence_loss={limit:g}")

    def train_steps(self, n: int) -> dict[str, float]:
        self.G.train()
        self.D.train()
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
        out.update(self.stream.stats)
        out["step"] = float(self.step)
        return out

    # ------------------------------------------------------------------ evaluation
    def heldout(self) -> tuple[torch.Tensor, bool]:
        """The held-out A|B rows every evaluation scores (the same in every trial), and whether they are aligned."""
        if self._heldout is None:
            name = (self.info.extra.get("translation") or {}).get("heldout")
            if not name:
                raise ValueError(f"{self.cfg.data.uri}: translation data set has no held-out rows to score on "
                                 "(import it from a folder with test/ or val/, or testA/ and testB/)")
            held = open_dataset(self.dataset.location.uri_of(name), cache_dir=self.cache_dir)
            rows, _ = held.real_samples(min(self.cfg.train.eval_samples, held.info.num_rows), seed=_HELDOUT_ROWS_SEED)
            self._heldout = (rows.to(self.device), held.info.kind == "paired")
        return self._heldout

    @property
    def evaluator(self):
        """The data kind's translation suite (trainers/metrics/translation.py), built on first use."""
        if self._evaluator is None:
            from trainers.metrics.base import METRIC_SUITES
            from trainers.metrics.declared import METRIC_SUITE_INFO

            importlib.import_module(METRIC_SUITE_INFO.get(self.info.kind).module)  # registers the suite
            rows, aligned = self.heldout()
            # Feature nets fit on training rows only; scores use the separate held-out data set.
            train_rows, _ = self.dataset.real_samples(min(self.info.num_rows, FIT_ROWS_MAX), seed=_HELDOUT_ROWS_SEED)
            self._evaluator = METRIC_SUITES.get(self.info.kind)(self.info, rows, aligned, train_rows, self.cache_dir,
                                                                self.device)
        return self._evaluator

    @property
    def metric(self) -> str:
        return self.select_metric or self.evaluator.default_metric

    def generators(self) -> dict[str, nn.Module]:
        return {"raw": self.G, "ema": self.ema.model} if self.ema else {"raw": self.G}

    def translator(self, generator: nn.Module) -> Callable[[torch.Tensor, str], torch.Tensor]:
        def translate(x: torch.Tensor, direction: str) -> torch.Tensor:
            with self.accel.autocast():
                return generator(x.to(self.device), direction).float()

        return translate

    def _score(self, generator: nn.Module) -> dict[str, float]:
        was_training = generator.training
        generator.eval()
        try:
            return self.evaluator.evaluate(self.translator(generator))
        finally:
            generator.train(was_training)

    def evaluate(self) -> dict[str, float]:
        """Scores of the raw and (when enabled) EMA translator on the held-out rows; the primary keys hold the
        better one's, beside `<metric>_raw`/`_ema`, the floors and the identity mapping's scores."""
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
        out.update(self.evaluator.baselines)
        out["uses_ema"] = float(self.best_generator == "ema")
        out["sn_max_g"] = largest_spectral_norm(self.G)
        out["sn_max_d"] = largest_spectral_norm(self.D)
        return out

    def best_samples(self, n: int, seed: int = 0) -> torch.Tensor:
        """Held-out rows shown as [A | G_AB(A) | B] (and [... | G_BA(B)] for CycleGAN), side by side."""
        g = self.generators()[self.best_generator]
        was_training = g.training
        g.eval()
        rows = self.heldout()[0]
        pick = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))[:n]
        a, b = _halves(rows[pick])
        with torch.no_grad():
            panels = [a, self.translator(g)(a, "AtoB"), b]
            if "BtoA" in self.directions:
                panels.append(self.translator(g)(b, "BtoA"))
        g.train(was_training)
        return torch.cat(panels, dim=-1).clamp(-1, 1).cpu()

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
            "pools": {domain: pool.state_dict() for domain, pool in self.pools.items()},
            "best_generator": self.best_generator,
            "model_config": self.cfg.model.model_dump(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved_model = state.get("model_config")
        if saved_model is not None and saved_model != self.cfg.model.model_dump():
            raise ValueError(f"checkpoint was trained with model {saved_model}, this trial has "
                             f"{self.cfg.model.model_dump()}; refusing to resume across architectures")
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        if self.ema and state["G_ema"]:
            self.ema.model.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step = int(state["step"])
        self.rng.set_state(state["rng"])
        self.stream.load_state_dict(state["data"])
        for domain, pool_state in state.get("pools", {}).items():
            self.pools[domain].load_state_dict(pool_state, self.device)
        self.best_generator = state.get("best_generator", self.best_generator)
        self.apply_hparams(self.cfg.train)

    def save_checkpoint(self, directory: str | os.PathLike, *, export: bool = True, grid_samples: int = 64) -> Path:
        """The full state; with `export`, also the best translator (safetensors + JSON) and a grid of held-out
        translations."""
        directory = Path(directory)
        save_state(directory, self.state_dict())
        if export:
            from trainers.export import save_generator
            from trainers.metrics import save_grid

            meta = {"step": self.step, "weights": self.best_generator, "task": "translation",
                    "family": self.cfg.model.family, "directions": list(self.directions)}
            save_generator(self.generators()[self.best_generator], self.arch, self.info, directory, meta=meta)
            save_grid(self.best_samples(min(grid_samples, 16)), self.info.kind, directory / "grid.png", nrow=2)
        return directory

    def load_checkpoint(self, directory: str | os.PathLike) -> None:
        self.load_state_dict(load_state(directory, self.device))

    def close(self) -> None:
        self.stream.close()
