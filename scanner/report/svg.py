"""A tiny SVG scatter plot, written as text: for per-model α-by-depth charts, which a zoo report draws once
per model (a 1,000-model report cannot afford a matplotlib PNG each: ~40 ms and ~12 kB per chart against
~0.1 ms and ~3 kB here). Served as ``<img src="data:image/svg+xml;base64,…">`` so it renders like a PNG.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [lo, hi] (steps of 1, 2 or 5 × 10^k)."""
    span = hi - lo if hi > lo else 1.0
    raw = span / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    start = math.ceil(lo / step) * step
    return [round(start + i * step, 10) for i in range(int((hi - start) / step + 1e-9) + 1)]


def scatter_svg(points: Sequence[tuple[float, float, str]], *, xlabel: str, ylabel: str, title: str = "",
                band: tuple[float, float] | None = None, width: int = 520, height: int = 220,
                y_max: float | None = None) -> str:
    """An SVG document: points (x, y, fill colour), labelled axes with round ticks, an optional grey
    horizontal band (e.g. 2 ≤ α ≤ 6); y values above ``y_max`` are drawn at the top edge as triangles."""
    left, right, top, bottom = 46, 10, 22 if title else 8, 34
    xs = [p[0] for p in points] or [0.0, 1.0]
    ys = [p[1] for p in points] or [0.0, 1.0]
    x_lo, x_hi = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y_top = min(max(ys), y_max) if y_max is not None else max(ys)
    y_lo, y_hi = min(min(ys), band[0] if band else min(ys)), max(y_top, band[1] if band else y_top)
    y_lo, y_hi = (y_lo - 0.5, y_hi + 0.5) if y_hi == y_lo else (y_lo, y_hi)
    pad_x, pad_y = 0.03 * (x_hi - x_lo), 0.06 * (y_hi - y_lo)
    x_lo, x_hi, y_lo, y_hi = x_lo - pad_x, x_hi + pad_x, y_lo - pad_y, y_hi + pad_y
    pw, ph = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * pw

    def py(y: float) -> float:
        return top + (1 - (min(y, y_hi) - y_lo) / (y_hi - y_lo)) * ph

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="Helvetica,Arial,sans-serif" font-size="10">',
             f'<rect width="{width}" height="{height}" fill="white"/>']
    if band:
        parts.append(f'<rect x="{left}" y="{py(band[1]):.1f}" width="{pw}" height="{py(band[0]) - py(band[1]):.1f}" '
                     'fill="#eeeeee"/>')
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#666"/>')
    for t in _ticks(x_lo, x_hi):
        if x_lo <= t <= x_hi:
            parts.append(f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top + ph}" y2="{top + ph + 4}" stroke="#666"/>'
                         f'<text x="{px(t):.1f}" y="{top + ph + 14}" text-anchor="middle">{t:g}</text>')
    for t in _ticks(y_lo, y_hi, 6):
        if y_lo <= t <= y_hi:
            parts.append(f'<line x1="{left - 4}" x2="{left}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#666"/>'
                         f'<text x="{left - 6}" y="{py(t) + 3:.1f}" text-anchor="end">{t:g}</text>')
    parts.append('<g stroke="#000" stroke-width="0.4">')
    for x, y, color in points:
        if y_max is not None and y > y_max:
            cx, cy = round(px(x)), top + 4
            parts.append(f'<path d="M{cx - 3},{cy + 3}h6l-3,-6z" fill="{color}"/>')
        else:
            parts.append(f'<circle cx="{round(px(x))}" cy="{round(py(y))}" r="3" fill="{color}"/>')
    parts.append("</g>")
    parts.append(f'<text x="{left + pw / 2}" y="{height - 4}" text-anchor="middle">{html.escape(xlabel)}</text>')
    parts.append(f'<text transform="translate(11,{top + ph / 2}) rotate(-90)" text-anchor="middle">'
                 f"{html.escape(ylabel)}</text>")
    if title:
        parts.append(f'<text x="{left}" y="14" font-weight="bold">{html.escape(title)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_img(svg: str, alt: str) -> str:
    """An ``<img>`` tag with the SVG inline as a data URI (so it counts and renders as an image)."""
    data = base64.b64encode(svg.encode()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/svg+xml;base64,{data}">'
