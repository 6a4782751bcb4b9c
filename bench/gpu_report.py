"""Write ``gpu_<device>.md`` from the outputs of ``gpu_esd_check.py`` and ``gpu_scan_check.py`` (one folder).

Usage: python bench/gpu_report.py OUT_DIR [--seconds S] [--results bench/results]

The device name comes from the ESD check's environment (e.g. "NVIDIA H200" → ``gpu_nvidia_h200.md``; a CPU
smoke run → ``gpu_cpu.md``). The file holds the targets (met / not met / not measured), the total wall time
of ``gpu_check.sh`` against its 5-minute budget, and both reports verbatim.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

BUDGET_S = 300.0


def device_slug(environment: dict) -> str:
    name = str(environment.get("gpu") or environment.get("device") or "cpu")
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "cpu"


def target_lines(esd: dict | None) -> list[str]:
    """The target table from the ESD check's JSON (its ``targets`` rows are recomputed here)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu_esd_check import TARGETS, targets

    rows = ["| target | measured s | limit s | status |", "|---|---|---|---|"]
    measured = targets(esd) if esd else []
    for name, value, limit in measured:
        rows.append(f"| {name} | {value:.3f} | {limit} | {'met' if value <= limit else 'NOT met'} |")
    labels = {"resnet50": "resnet50 full ESD (batched)", "vit_large_patch16_224": "vit_large_patch16_224 full ESD "
              "(batched)", "llm_7b": "7B-class LLM ESD (measured)"}
    for key, limit in TARGETS.items():
        if not any(name == labels[key] for name, _, _ in measured):
            rows.append(f"| {labels[key]} | — | {limit} | not measured in this run |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=None, help="wall time of the whole check")
    parser.add_argument("--results", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    esd_json = args.out / "gpu_esd_check.json"
    esd = json.loads(esd_json.read_text()) if esd_json.exists() else None
    environment = esd["environment"] if esd else {"device": "unknown"}
    texts = {name: (args.out / name).read_text() if (args.out / name).exists() else "(missing: the step failed)\n"
             for name in ("gpu_esd_check.txt", "gpu_scan_check.txt")}
    budget = ("" if args.seconds is None else
              f"- wall time of `bash bench/gpu_check.sh`: {args.seconds:.0f} s (budget {BUDGET_S:.0f} s: "
              f"{'within' if args.seconds <= BUDGET_S else 'OVER'})")
    lines = [f"# GPU checks on {environment.get('gpu') or environment.get('device')}", "",
             f"- written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by bench/gpu_check.sh",
             *[f"- {key}: {value}" for key, value in environment.items()], budget, "",
             "## Targets (issue 15)", "", *target_lines(esd), "",
             "## gpu_esd_check", "", "```", texts["gpu_esd_check.txt"].rstrip(), "```", "",
             "## gpu_scan_check", "", "```", texts["gpu_scan_check.txt"].rstrip(), "```", ""]
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / f"gpu_{device_slug(environment)}.md"
    path.write_text("\n".join(line for line in lines if line is not None) + "\n")
    print(f"wrote {path}")
    return 0 if esd else 1


if __name__ == "__main__":
    raise SystemExit(main())
