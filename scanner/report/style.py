"""The CSS the two report pages share (``scanner.report.html``: one scan; ``scanner.report.site``: a zoo);
each page adds only its own rules (cell alignment, phase badges, verdict boxes)."""

from __future__ import annotations

from scanner.report.plots import PHASE_COLORS

BASE = (
    "body{font-family:system-ui,Helvetica,Arial,sans-serif;margin:20px;color:#222;max-width:1400px}"
    "h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:26px}"
    "h3{font-size:14px;margin:14px 0 4px}table{border-collapse:collapse;font-size:12px;margin:6px 0}"
    "th,td{border:1px solid #ddd;padding:2px 6px}th{background:#f3f3f3}img{max-width:100%}"
    "td a{white-space:nowrap}.note{color:#555;font-size:12px}"
)
"""Page, headings, tables, images, notes; model and layer links stay on one line (ids wrap at hyphens)."""

PHASES = "".join(f".{phase}{{background:{color}}}" for phase, color in PHASE_COLORS.items())
"""One class per phase (its plot colour), for phase badges."""
