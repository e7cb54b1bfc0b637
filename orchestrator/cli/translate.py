"""`ganforge translate MODEL INPUT --out OUT [--direction AtoB|BtoA]`: apply a registered translator to images."""
from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.cli.models import _add_tracking, _tracking_uri


def cmd_translate(args: argparse.Namespace) -> int:
    from orchestrator.errors import RegistryUsageError
    from orchestrator.translators import load_translator
    from trainers.translation.export import TranslatorInputError, domain_shape, read_inputs, translate, write_outputs

    if not Path(args.input).exists():
        raise RegistryUsageError(f"{args.input}: no such file or folder")
    pulled = Path(args.model).is_dir()  # a folder from `models pull` needs no MLflow store
    translator = load_translator(args.model, device=args.device, tracking_uri=None if pulled else _tracking_uri(args))
    try:
        x, names = read_inputs(args.input, domain_shape(translator))
        y = translate(translator, x, args.direction)
    except TranslatorInputError as exc:
        raise RegistryUsageError(str(exc)) from None
    out = write_outputs(y, names, args.out, x)
    print(f"translated {len(names)} image(s) {args.direction} with {args.model} to {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("translate", help="apply a registered image-to-image translator (pix2pix, CycleGAN) to images")
    p.add_argument("model", metavar="MODEL", help="NAME@ALIAS, NAME/VERSION, models:/... or a pulled folder")
    p.add_argument("input", metavar="INPUT", help="a .png/.jpg image, a folder of them, or a .npy array N x H x W [x C]")
    p.add_argument("--out", required=True, help=".png (one image, or input|output pairs in a grid), .npy (uint8 N x H x W x C) or a folder of PNGs")
    p.add_argument("--direction", choices=("AtoB", "BtoA"), default="AtoB", help="CycleGAN: which way to translate (default: AtoB)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    _add_tracking(p)
    p.set_defaults(handler=cmd_translate)
