"""PBT's exploit log, read from Tune's `pbt_global.txt`, and a drawing of which trial copied which.

Each record is Tune's [recipient tag, donor tag, recipient iteration, donor iteration, donor config, new config].
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

POLICY_FILE = "pbt_global.txt"


def collect_policy(*roots: str) -> list[dict[str, Any]]:
    for root in roots:
        if "://" in root or not os.path.isdir(root):
            continue
        for path in sorted(Path(root).rglob(POLICY_FILE)):
            records = []
            for line in path.read_text().splitlines():
                if line.strip():
                    recipient, donor, it_recipient, it_donor, donor_config, new_config = json.loads(line)
                    records.append({"recipient": _trial(recipient), "donor": _trial(donor),
                                    "iteration": it_recipient, "donor_iteration": it_donor,
                                    "donor_config": donor_config, "new_config": new_config})
            if records:
                return records
    return []


def _trial(tag: str) -> str:
    return str(tag).split("_")[-2] + "_" + str(tag).split("_")[-1] if "_" in str(tag) else str(tag)


def draw_lineage(records: list[dict[str, Any]], path: str | os.PathLike, size: tuple[int, int] = (720, 360)) -> Path:
    """One row per trial, time to the right; an arrow from donor to recipient at each exploit."""
    trials = sorted({r["recipient"] for r in records} | {r["donor"] for r in records})
    last = max(max(r["iteration"], r["donor_iteration"]) for r in records) + 1
    width, height = size
    margin_left, margin = 120, 24
    row = (height - 2 * margin) / max(len(trials) - 1, 1)
    x = lambda it: margin_left + (width - margin_left - margin) * it / last  # noqa: E731
    y = {t: margin + i * row for i, t in enumerate(trials)}
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    for t in trials:
        draw.line([(x(0), y[t]), (x(last), y[t])], fill=(200, 200, 200), width=2)
        draw.text((6, y[t] - 6), t, fill="black")
    for r in records:
        start, end = (x(r["donor_iteration"]), y[r["donor"]]), (x(r["iteration"]), y[r["recipient"]])
        draw.line([start, end], fill=(200, 60, 40), width=2)
        draw.ellipse([end[0] - 4, end[1] - 4, end[0] + 4, end[1] + 4], fill=(200, 60, 40))
    draw.text((margin_left, height - 16), "training iteration ->   (red: recipient copies donor's state)", fill="black")
    out = Path(path)
    image.save(out)
    return out
