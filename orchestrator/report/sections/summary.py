"""Summary: the job, its data, how it searched, what happened to each trial, and the champion."""
from __future__ import annotations

import statistics
import time
from collections import Counter

from orchestrator.report.data import ReportData
from orchestrator.report.sections.common import STATUS_WORDS, duration, value
from orchestrator.report.svg import esc, fmt
from orchestrator.search_kinds import scheduler_info

TITLE = "Summary"


def _scheduler(data: ReportData) -> str:
    name = data.search.get("scheduler", "?")
    params = data.search.get(name) or {}
    shown = ", ".join(f"{k} {value(params[k])}" for k in scheduler_info(name).shown_params if k in params)
    return f"{esc(name)}" + (f" ({shown})" if shown else "")


def _statuses(data: ReportData) -> str:
    counts = Counter(t.status for t in data.trials)
    parts = []
    for status, word in STATUS_WORDS.items():
        if not counts.get(status):
            continue
        detail = ""
        if status == "stopped":
            at = Counter(t.iterations for t in data.trials if t.status == "stopped")
            if len(at) <= 4:  # few rungs (ASHA): say how many stopped at each
                detail = " (" + ", ".join(f"{n} after {it} evaluation{'s' * (it != 1)}"
                                          for it, n in sorted(at.items())) + ")"
            else:
                stops = sorted(at.elements())
                detail = f" (after {stops[0]}–{stops[-1]} evaluations, median {statistics.median(stops):g})"
        parts.append(f'<span class="status {status}">{counts[status]} {word}</span>{detail}')
    return "; ".join(parts) or "no trials yet"


def render(data: ReportData) -> str:
    ds = data.dataset
    checksum = str(ds.get("checksum") or "")
    dataset = f"{esc(ds.get('name') or ds.get('uri', '?'))}"
    if ds.get("rows"):
        dataset += f", {int(ds['rows']):,} rows"
    if checksum:
        dataset += f', checksum <code title="{esc(checksum)}">{esc(checksum[:12])}</code>'
    champion = data.trial(data.champion)
    if champion is not None:
        floor = data.floors.get(f"{data.metric}_floor")
        score = data.champion_value if data.champion_value is not None else champion.value
        best = (f'trial <code>{esc(champion.trial_id)}</code>: {esc(data.metric)} = '
                f'<b class="champion-score">{fmt(score) if score is not None else "–"}</b>'
                + (f" (real-vs-real floor {fmt(floor)})" if floor is not None else ""))
    else:
        best = "none yet"
    reg = data.registered
    registered = (f"{esc(reg['name'])} version {esc(reg['version'])} — "
                  + (f"alias @{esc(reg['alias'])} moved to it" if reg.get("promoted") else f"@{esc(reg['alias'])} "
                     "kept by an earlier version") if reg else "not registered")
    end = data.ended_at if not data.running or data.ended_at else time.time()
    wall = duration(end - data.started_at) if data.started_at and end else "–"
    rows = [
        ("Job", f"<b>{esc(data.name)}</b>" + (' <span class="status running">search running</span>'
                                               if data.running else "")),
        ("Data set", dataset + f' <span class="muted">({esc(ds.get("uri", ""))})</span>'),
        ("Search", f"{esc(data.search.get('algorithm', '?'))} over {len(data.space)} hyperparameters, "
                   f"scheduler {_scheduler(data)}, {data.search.get('num_samples', '?')} samples × "
                   f"{data.search.get('seeds', 1)} seed(s)"),
        ("Metric", f"{esc(data.metric)} ({'lower' if data.mode == 'min' else 'higher'} is better), scored every "
                   f"{data.eval_every:,} of {data.steps:,} generator steps"),
        ("Trials", f"{len(data.trials)}: " + _statuses(data)),
        ("Wall time", wall),
        ("Champion", best),
        ("Registered", registered),
    ]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="facts">{body}</table>'
