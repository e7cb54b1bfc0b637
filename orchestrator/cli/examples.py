"""One or two examples at the end of each command's `--help`, kept in one table so they read as a set."""
from __future__ import annotations

import argparse

EXAMPLES: dict[str, tuple[str, ...]] = {
    "validate": ("ganforge validate jobs/quickstart.yaml",
                 "ganforge validate job.yaml --set 'search.space.train.lr_g={loguniform: [1e-4, 1e-3]}' --preflight"),
    "run": ("ganforge run jobs/quickstart.yaml", "ganforge run job.yaml --dry-run --json --set search.num_samples=4"),
    "resume": ("ganforge resume jobs/quickstart.yaml",),
    "register": ("ganforge register jobs/quickstart.yaml --path ganforge-results/digits-dcgan/RUN",),
    "schema": ("ganforge schema > job.schema.json", "ganforge schema --markdown"),
    "models": ("ganforge models list", "ganforge models describe digits-dcgan@champion --json"),
    "models list": ("ganforge models list --tracking-uri http://127.0.0.1:5000", "ganforge models list --json"),
    "models pull": ("ganforge models pull digits-dcgan@champion --out ./model",),
    "models describe": ("ganforge models describe digits-dcgan", "ganforge models describe digits-dcgan/3 --json"),
    "models promote": ("ganforge models promote digits-dcgan 3 --alias champion",),
    "models compare": ("ganforge models compare digits-dcgan 2 champion --out compare.png",),
    "sample": ("ganforge sample digits-dcgan@champion -n 64 --out grid.png",),
    "translate": ("ganforge translate digits-edges-pix2pix@champion edges/ --out digits/",
                  "ganforge translate digits-cyclegan@champion inverted.npy --direction BtoA --out digits.npy"),
    "evaluate": ("ganforge evaluate digits-dcgan@champion --data builtin:digits -n 1000",
                 "GANFORGE_WEIGHTS=~/weights ganforge evaluate ./model --data s3://bucket/cifar10 --features inception --json"),
    "data": ("ganforge data import builtin:digits ./data/digits", "ganforge data inspect s3://bucket/my-set --json"),
    "data import": ("ganforge data import ./images s3://bucket/my-set", "ganforge data import train.npz ./data/my-set",
                    "ganforge data import ./horse2zebra ./data/h2z --format cyclegan"),
    "data inspect": ("ganforge data inspect builtin:ring8", "ganforge data inspect ./data/my-set --verify --json"),
    "submit": ("ganforge submit jobs/ring8.yaml --address http://127.0.0.1:8265",
               "ID=$(ganforge submit --no-wait job.yaml --set storage.uri=s3://bucket/results)"),
    "jobs": ("ganforge jobs list", "ganforge jobs logs ID --follow"),
    "jobs list": ("ganforge jobs list --address http://127.0.0.1:8265", "ganforge jobs list --json"),
    "jobs status": ("ganforge jobs status ID", "ganforge jobs status ID --json"),
    "jobs logs": ("ganforge jobs logs ID --follow",),
    "jobs stop": ("ganforge jobs stop ID --no-wait",),
    "stack": ("eval \"$(ganforge stack up)\"", "ganforge stack status || ganforge stack up"),
    "stack up": ("eval \"$(ganforge stack up)\"",),
    "stack down": ("ganforge stack down",),
    "stack status": ("ganforge stack status", "ganforge stack status --json"),
    "report": ("ganforge report jobs/quickstart.yaml --out report.html",
               "ganforge report --path s3://bucket/results/digits-dcgan/RUN --out report.html"),
    "completion": ("eval \"$(ganforge completion bash)\"   # in ~/.bashrc",
                   "ganforge completion zsh > ~/.zfunc/_ganforge"),
}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next((dict(a.choices) for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})


def add_examples(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """Give every (sub)command listed in EXAMPLES an `examples:` epilog, formatted as written."""
    for name, child in _subparsers(parser).items():
        command = f"{prefix}{name}"
        if command in EXAMPLES and not child.epilog:
            child.epilog = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[command])
            child.formatter_class = argparse.RawDescriptionHelpFormatter
        add_examples(child, f"{command} ")
