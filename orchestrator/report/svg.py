"""Small SVG plotting: scales with readable ticks, labelled axes, lines and markers. Every chart of the report is
drawn here as inline SVG, so the page needs no plotting library and no network."""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency; yellow is left out (too light on
# white). Text stays near-black on white.
BLUE, ORANGE, GREEN, VERMILION, PURPLE, SKY, BLACK = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7",
                                                      "#56B4E9", "#000000")
PALETTE = (BLUE, ORANGE, GREEN, VERMILION, PURPLE, SKY, BLACK)
GRID_GREY, AXIS_GREY, TEXT = "#e3e3e3", "#666666", "#1a1a1a"
MARGIN = (16, 20, 46, 64)  # top, right, bottom, left: room for tick labels and axis titles


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def fmt(value: float) -> str:
    """A tick or value label: short, no float noise."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    magnitude = abs(value)
    if magnitude >= 1e5 or magnitude < 1e-3:
        return f"{value:.1e}".replace("e-0", "e-").replace("e+0", "e")
    return f"{value:.4g}"


@dataclass
class Scale:
    lo: float
    hi: float
    px_lo: float
    px_hi: float
    log: bool = False

    @classmethod
    def fit(cls, values: Iterable[float], px_lo: float, px_hi: float, log: bool = False, pad: float = 0.04) -> "Scale":
        vals = [v for v in values if math.isfinite(v) and (v > 0 or not log)]
        if not vals:
            return cls(0.0, 1.0, px_lo, px_hi, False)
        lo, hi = min(vals), max(vals)
        if log:
            lo, hi = math.log10(lo), math.log10(hi)
        if hi - lo < 1e-12:
            lo, hi = lo - (abs(lo) * 0.1 or 0.5), hi + (abs(hi) * 0.1 or 0.5)
        span = hi - lo
        lo, hi = lo - span * pad, hi + span * pad
        return cls(10 ** lo if log else lo, 10 ** hi if log else hi, px_lo, px_hi, log)

    def _t(self, v: float) -> float:
        return math.log10(max(v, 1e-300)) if self.log else v

    def __call__(self, v: float) -> float:
        lo, hi = self._t(self.lo), self._t(self.hi)
        return self.px_lo + (self._t(v) - lo) / (hi - lo) * (self.px_hi - self.px_lo)

    def ticks(self, n: int = 5) -> list[float]:
        if self.log:
            lo, hi = math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi))
            step = max(1, math.ceil((hi - lo) / n))
            out = [10.0 ** e for e in range(lo, hi + 1, step) if self.lo <= 10.0 ** e <= self.hi]
            return out or [self.lo, self.hi]
        raw = (self.hi - self.lo) / max(n, 1)
        base = 10 ** math.floor(math.log10(raw))
        step = next(m * base for m in (1, 2, 2.5, 5, 10) if m * base >= raw)
        first = math.ceil(self.lo / step) * step
        return [round(first + i * step, 12) for i in range(int((self.hi - first) / step + 1e-9) + 1)]


def wants_log(values: Sequence[float]) -> bool:
    """Log axis when positive values span more than two decades (FID falling from 300 to 1, learning rates)."""
    pos = [v for v in values if v > 0 and math.isfinite(v)]
    return len(pos) == len([v for v in values if math.isfinite(v)]) and len(pos) > 1 and max(pos) / min(pos) > 100


class Chart:
    """One plot: an SVG canvas with x and y scales, gridlines, ticks and axis titles."""

    def __init__(self, width: int, height: int, x: Scale, y: Scale, xlabel: str, ylabel: str, title: str = "",
                 margin: tuple[int, int, int, int] = MARGIN, yticks: bool = True):
        self.width, self.height, self.x, self.y = width, height, x, y
        self.xlabel, self.ylabel, self.title = xlabel, ylabel, title
        self.margin, self.yticks = margin, yticks
        self.parts: list[str] = []

    @staticmethod
    def frame(width: int, height: int, margin: tuple[int, int, int, int] = MARGIN) -> tuple[float, float, float, float]:
        """(left, right, top, bottom) pixel bounds of the plotting area."""
        top, right, bottom, left = margin
        return left, width - right, top, height - bottom

    def add(self, *parts: str) -> None:
        self.parts.extend(parts)

    def line(self, points: Sequence[tuple[float, float]], color: str, width: float = 1.5, opacity: float = 1.0,
             title: str = "", dash: str = "", cls: str = "") -> None:
        if len(points) == 0:
            return
        pts = " ".join(f"{self.x(a):.1f},{self.y(b):.1f}" for a, b in points)
        extra = (f' stroke-dasharray="{dash}"' if dash else "") + (f' class="{cls}"' if cls else "")
        tip = f"<title>{esc(title)}</title>" if title else ""
        if len(points) == 1:  # a trial stopped after its first evaluation: a dot where a line would start
            self.marker(points[0], color, "dot", title, 3, cls)
            return
        self.add(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="{width}" '
                 f'stroke-opacity="{opacity}" stroke-linejoin="round"{extra}>{tip}</polyline>')

    def marker(self, point: tuple[float, float], color: str, shape: str = "dot", title: str = "", size: float = 4,
               cls: str = "") -> None:
        """A dot, cross or triangle at `point`; `cls` tags a dot with its trial (dots stand for one-point lines)."""
        cx, cy = self.x(point[0]), self.y(point[1])
        tip = f"<title>{esc(title)}</title>" if title else ""
        if shape == "cross":
            d = f"M{cx - size},{cy - size}L{cx + size},{cy + size}M{cx - size},{cy + size}L{cx + size},{cy - size}"
            self.add(f'<path d="{d}" stroke="{color}" stroke-width="2.2" fill="none">{tip}</path>')
        elif shape == "triangle":
            d = f"M{cx},{cy - size - 1}L{cx + size + 1},{cy + size}L{cx - size - 1},{cy + size}Z"
            self.add(f'<path d="{d}" fill="{color}">{tip}</path>')
        else:
            extra = f' class="{cls}"' if cls else ""
            self.add(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{size}" fill="{color}"{extra}>{tip}</circle>')

    def hline(self, y: float, color: str, label: str = "") -> None:
        left, right, top, _ = self.frame(self.width, self.height, self.margin)
        if not (min(self.y.lo, self.y.hi) <= y <= max(self.y.lo, self.y.hi)):
            return
        py = self.y(y)
        self.add(f'<line x1="{left}" x2="{right}" y1="{py:.1f}" y2="{py:.1f}" stroke="{color}" stroke-width="1.5" '
                 f'stroke-dasharray="6 4"/>')
        if label:  # above the line, unless that would run into the frame's top
            ty = py - 5 if py - top > 16 else py + 14
            self.add(f'<text x="{right - 4}" y="{ty:.1f}" text-anchor="end" class="note">{esc(label)}</text>')

    def band(self, lower: Sequence[tuple[float, float]], upper: Sequence[tuple[float, float]], color: str) -> None:
        pts = [f"{self.x(a):.1f},{self.y(b):.1f}" for a, b in list(upper) + list(reversed(lower))]
        self.add(f'<polygon points="{" ".join(pts)}" fill="{color}" fill-opacity="0.2" stroke="none"/>')

    def _axes(self) -> list[str]:
        left, right, top, bottom = self.frame(self.width, self.height, self.margin)
        out = []
        for t in self.y.ticks() if self.yticks else ():
            py = self.y(t)
            out.append(f'<line x1="{left}" x2="{right}" y1="{py:.1f}" y2="{py:.1f}" stroke="{GRID_GREY}"/>')
            out.append(f'<text x="{left - 6}" y="{py + 4:.1f}" text-anchor="end" class="tick">{fmt(t)}</text>')
        for t in self.x.ticks():
            px = self.x(t)
            out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{top}" y2="{bottom}" stroke="{GRID_GREY}"/>')
            out.append(f'<text x="{px:.1f}" y="{bottom + 16}" text-anchor="middle" class="tick">{fmt(t)}</text>')
        out.append(f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" '
                   f'stroke="{AXIS_GREY}"/>')
        out.append(f'<text x="{(left + right) / 2:.0f}" y="{self.height - 8}" text-anchor="middle" class="axis">'
                   f'{esc(self.xlabel)}</text>')
        out.append(f'<text transform="translate(15,{(top + bottom) / 2:.0f}) rotate(-90)" text-anchor="middle" '
                   f'class="axis">{esc(self.ylabel)}</text>')
        return out

    def svg(self) -> str:
        left, right, top, bottom = self.frame(self.width, self.height, self.margin)
        clip = f"clip{id(self)}"
        return (f'<svg class="chart" viewBox="0 0 {self.width} {self.height}" width="{self.width}" '
                f'height="{self.height}" role="img" aria-label="{esc(self.title or self.ylabel)}">'
                f'<defs><clipPath id="{clip}"><rect x="{left}" y="{top - 6}" width="{right - left + 6}" '
                f'height="{bottom - top + 12}"/></clipPath></defs>'
                + "".join(self._axes()) + f'<g clip-path="url(#{clip})">' + "".join(self.parts) + "</g></svg>")


def chart_for(width: int, height: int, xs: Iterable[float], ys: Iterable[float], xlabel: str, ylabel: str,
              xlog: Optional[bool] = None, ylog: Optional[bool] = None, title: str = "") -> Chart:
    xs, ys = list(xs), list(ys)
    left, right, top, bottom = Chart.frame(width, height)
    x = Scale.fit(xs, left, right, wants_log(xs) if xlog is None else xlog, pad=0.02)
    y = Scale.fit(ys, bottom, top, wants_log(ys) if ylog is None else ylog)
    return Chart(width, height, x, y, xlabel, ylabel, title)


def legend(items: Sequence[tuple[str, str, str]]) -> str:
    """A legend under a chart: (swatch shape: line|cross|triangle|dot|band, colour, label)."""
    swatches = {
        "line": '<svg width="22" height="10"><line x1="0" x2="22" y1="5" y2="5" stroke="{c}" stroke-width="3"/></svg>',
        "thin": '<svg width="22" height="10"><line x1="0" x2="22" y1="5" y2="5" stroke="{c}" '
                'stroke-width="1.5"/></svg>',
        "dash": '<svg width="22" height="10"><line x1="0" x2="22" y1="5" y2="5" stroke="{c}" stroke-width="1.5" '
                'stroke-dasharray="5 3"/></svg>',
        "cross": '<svg width="12" height="12"><path d="M2,2L10,10M2,10L10,2" stroke="{c}" stroke-width="2.2"/></svg>',
        "triangle": '<svg width="12" height="12"><path d="M6,1L11,11L1,11Z" fill="{c}"/></svg>',
        "dot": '<svg width="12" height="12"><circle cx="6" cy="6" r="4" fill="{c}"/></svg>',
        "band": '<svg width="22" height="12"><rect width="22" height="12" fill="{c}" fill-opacity="0.25"/></svg>',
    }
    return '<div class="legend">' + "".join(
        f'<span>{swatches[shape].format(c=color)} {esc(label)}</span>' for shape, color, label in items) + "</div>"
