"""ganforge's DCGAN training step vs a plain PyTorch loop of the same networks and batch, and the share of a trial's
time spent in metric evaluation.

Step: `GANTrainer.train_steps` (digits held in memory, as `data.resident_mb` does for a data set this small;
diagnostics sampled, EMA off so both do the same work) against the loop a user would write by hand: the same G and D
modules, the same batch size, Adam, BCE-with-logits, batches drawn from an in-memory tensor. All run on one thread
in alternating blocks (the machine is shared and noisy), and the ratio is the median over blocks: step_vs_plain =
plain time per step / ganforge time per step (> 1 means ganforge is faster). held_vs_streamed compares the same
trainer with the data set streamed through Arrow (`data.resident_mb: 0`), as larger data sets are.

Eval share: a quickstart-sized trial (jobs/quickstart.yaml's model and train sections: EMA on, two generators
scored per evaluation on 1,000 samples, 5 evaluations over 1,500 steps) timed as train_steps + evaluate, with the
metric cache already warm (a search builds it once for all its trials; its one-off cost is printed too).

    .venv/bin/python bench/step_throughput.py [--blocks 5] [--steps-per-block 100] [--trial-steps 1500]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from trainers.config import GANConfig
from trainers.data import open_dataset
from trainers.families import build_networks
from trainers.loop import GANTrainer
from trainers.settings import resolve

MODEL = {"family": "dcgan", "latent_dim": 32, "width": 32}
DATA = {"uri": "builtin:digits", "batch_size": 64}


def ganforge_block(trainer: GANTrainer, steps: int) -> float:
    t0 = time.perf_counter()
    trainer.train_steps(steps)
    return (time.perf_counter() - t0) / steps


class PlainLoop:
    """The hand-written DCGAN loop (PyTorch's DCGAN example, with the same networks and batch)."""

    def __init__(self, cfg: GANConfig, cache_dir: str) -> None:
        dataset = open_dataset(cfg.data.uri, cache_dir=cache_dir)
        self.data, _ = dataset.real_samples(dataset.info.num_rows, seed=0)
        torch.manual_seed(cfg.train.seed)
        nets = build_networks(resolve(cfg).model, dataset.info)
        self.G, self.D = nets.generator, nets.discriminator
        t = cfg.train
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=t.lr_g, betas=(t.beta1, t.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=t.lr_d, betas=(t.beta1, t.beta2))
        self.batch = cfg.data.batch_size

    def step(self) -> None:
        real = self.data[torch.randint(len(self.data), (self.batch,))]
        ones, zeros = torch.ones(self.batch), torch.zeros(self.batch)
        fake = self.G(torch.randn(self.batch, self.G.latent_dim))
        loss_d = F.binary_cross_entropy_with_logits(self.D(real), ones) + F.binary_cross_entropy_with_logits(
            self.D(fake.detach()), zeros
        )
        self.opt_d.zero_grad()
        loss_d.backward()
        self.opt_d.step()
        loss_g = F.binary_cross_entropy_with_logits(self.D(fake), ones)
        self.opt_g.zero_grad()
        loss_g.backward()
        self.opt_g.step()

    def block(self, steps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        return (time.perf_counter() - t0) / steps


def measure_steps(cache: str, blocks: int, steps: int) -> dict[str, float]:
    """Median ms/step of each arm and the medians of the per-block ratios."""
    def trainer(resident_mb: float) -> GANTrainer:
        cfg = GANConfig.model_validate({"data": {**DATA, "resident_mb": resident_mb}, "model": MODEL,
                                        "train": {"ema_decay": 0.0, "device": "cpu"}})
        return GANTrainer(cfg, cache_dir=cache)

    held, streamed = trainer(512), trainer(0)
    plain = PlainLoop(held.cfg, cache)
    arms = {"held": lambda n: ganforge_block(held, n), "streamed": lambda n: ganforge_block(streamed, n),
            "plain": plain.block}
    for run in arms.values():
        run(20)  # warm-up: first batches, allocator, kernels
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(blocks):
        for name, run in arms.items():
            times[name].append(run(steps))
    held.close(), streamed.close()
    out = {f"{name}_ms": statistics.median(t) * 1e3 for name, t in times.items()}
    out["step_vs_plain"] = statistics.median(p / h for p, h in zip(times["plain"], times["held"]))
    out["held_vs_streamed"] = statistics.median(s / h for s, h in zip(times["streamed"], times["held"]))
    return out


def measure_eval_share(cache: str, trial_steps: int) -> tuple[float, float, float, float]:
    cfg = GANConfig.model_validate({
        "data": DATA,
        "model": MODEL,
        "train": {"steps": trial_steps, "eval_every": trial_steps // 5, "eval_samples": 1000, "ema_decay": 0.99, "device": "cpu"},
    })
    trainer = GANTrainer(cfg, cache_dir=cache)
    t0 = time.perf_counter()
    trainer.evaluator  # noqa: B018  (builds or loads the feature net and real statistics)
    setup = time.perf_counter() - t0
    train_s = eval_s = 0.0
    while trainer.step < cfg.train.steps:
        t0 = time.perf_counter()
        trainer.train_steps(cfg.train.eval_every)
        t1 = time.perf_counter()
        trainer.evaluate()
        t2 = time.perf_counter()
        train_s += t1 - t0
        eval_s += t2 - t1
    trainer.close()
    return eval_s / (train_s + eval_s), train_s, eval_s, setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--steps-per-block", type=int, default=100)
    parser.add_argument("--trial-steps", type=int, default=1500)
    parser.add_argument("--cache", default=None, help="metric/data cache folder (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or tmp
        steps = measure_steps(cache, args.blocks, args.steps_per_block)
        print(f"DCGAN digits 8x8, width {MODEL['width']}, batch {DATA['batch_size']}, 1 thread: ganforge "
              f"{steps['held_ms']:.2f} ms/step (data held), {steps['streamed_ms']:.2f} (streamed), plain loop "
              f"{steps['plain_ms']:.2f} ms/step (medians of {args.blocks} blocks)")
        first = measure_eval_share(cache, args.trial_steps)  # the first trial builds the metric cache (unless --cache has it)
        share, train_s, eval_s, setup = measure_eval_share(cache, args.trial_steps)
        print(f"trial of {args.trial_steps} steps, 5 evaluations x 2 generators x 1000 samples: training {train_s:.1f} s, "
              f"evaluation {eval_s:.1f} s; metric setup {first[3]:.1f} s in the first trial, {setup:.2f} s from cache")
    print(f"step_vs_plain={steps['step_vs_plain']:.2f} held_vs_streamed={steps['held_vs_streamed']:.2f} "
          f"eval_share={share:.3f}")


if __name__ == "__main__":
    main()
