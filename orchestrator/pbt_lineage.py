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
TRIAL_POLICY_PREFIX = "pbt_policy_"  # Tune also writes each recipient's history: pbt_policy_<trial id>.txt
TRIAL_DIR_PREFIX = "trial_"


def collect_policy(root: str) -> list[dict[str, Any]]:
    """The exploit records of a run. Tune writes the log on the driver and syncs it to the experiment folder in
    storage, so `root` may be a local folder or an s3:// URI (read as all results are: orchestrator.storage)."""
    import pyarrow.fs as pafs

    from orchestrator.storage import filesystem

    fs, path = filesystem(root)
    try:
        with fs.open_input_stream(f"{path}/{POLICY_FILE}") as f:
            text = f.read().decode()
        names = [info.base_name for info in fs.get_file_info(pafs.FileSelector(path))]
    except (FileNotFoundError, OSError):
        return []
    # Trial folders are named trial_<trial id> (orchestrator.search); a recipient also has pbt_policy_<trial id>.txt.
    ids = {n.removeprefix(TRIAL_DIR_PREFIX) for n in names if n.startswith(TRIAL_DIR_PREFIX)}
    ids |= {n[len(TRIAL_POLICY_PREFIX):-len(".txt")] for n in names if n.startswith(TRIAL_POLICY_PREFIX)}
    return parse_policy(text, sorted(ids))


def parse_policy(text: str, trial_ids: list[str] = ()) -> list[dict[str, Any]]:
    """Tune names trials in this log by experiment tag ("<index>_<config>"); give them their trial ids back."""
    records = []
    for line in text.splitlines():
        if line.strip():
            recipient, donor, it_recipient, it_donor, donor_config, new_config = json.loads(line)
            records.append({"recipient": trial_of(recipient, trial_ids), "donor": trial_of(donor, trial_ids),
                            "iteration": it_recipient, "donor_iteration": it_donor,
                            "donor_config": donor_config, "new_config": new_config})
    return records


def trial_of(tag: str, trial_ids: list[str] = ()) -> str:
    """The trial id a tag belongs to: the variant generator numbers both the same way (tag "3_..." is trial
    "<prefix>_00003"); without a match, "#<index>"."""
    index = str(tag).split("_", 1)[0]
    if not index.isdigit():
        return str(tag)
    matches = [t for t in trial_ids if t.rsplit("_", 1)[-1].isdigit() and int(t.rsplit("_", 1)[-1]) == int(index)]
    return matches[0] if len(matches) == 1 else f"#{index}"


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
