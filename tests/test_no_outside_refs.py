"""No tracked file points at a file outside the repository (issue #14).

Code, comments, docstrings, tests, scripts, bench, READMEs and docs state a fact, formula or number inline or
point to a section of ``docs/decisions.md``; they never cite the research notes, reviews, design notes or the
shared folder's manifest that lived beside the repository while it was written (a reader of a clone has none of
them). Paths the code *reads at run time* from the shared data folder (``$ZOOSCAN_SHARED`` or ``../shared``:
``zoo/``, ``tables/``, ``datasets/``) are data, not references, and are allowed.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve().relative_to(REPO).as_posix()

# Each pattern names a file that is not in the repository, or a citation of one.
OUTSIDE = re.compile(
    r"research/"                                   # research/ww_anchor.md, ../shared/research/review/...
    r"|\bww_anchor\b|\bpapers\.md\b|\bray_duckdb\b"  # the research notes, with or without their folder
    r"|\bDESIGN\.md\b|\bMANIFEST(\.md)?\b"          # the shared folder's design note and data manifest
    r"|\breview/|\b(reliability|features|aesthetics|distributed|registry_weights)\.md\b"  # the reviews
    r"|\b(reliability|aesthetics|adversarial) review\b|\bthe review\b|\breview measured\b"
    r"|\bclosing\.md\b|/work/(notes|shared)\b|\bnotes/s\d"  # session notes
    r"|\.\./shared/(?!(zoo|tables|datasets)\b)[\w.]",  # anything under ../shared but the run-time data
)
# (path, exact matched text) pairs that are allowed although they match: run-time data only.
ALLOWED: set[tuple[str, str]] = set()


def _tracked_text_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return [name for name in out.decode().split("\0") if name and name != THIS]


def _hits() -> list[str]:
    hits = []
    for name in _tracked_text_files():
        path = REPO / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary (images, Parquet, checkpoints)
        text = data.decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            cited = [m.group(0) for m in OUTSIDE.finditer(line) if (name, m.group(0)) not in ALLOWED]
            if cited:
                hits.append(f"{name}:{number}: {', '.join(map(repr, cited))} in {line.strip()[:100]}")
    return hits


def test_pattern_catches_the_known_forms() -> None:
    for cited in ("(research/ww_anchor.md §3.4)", "see DESIGN.md, 'Lessons'", "ww_anchor §3.4",
                  "the shared folder's MANIFEST.md", "../shared/research/review/reliability.md",
                  "papers.md §1.2", "(§D8 of the reliability review)", "220 s measured by the review",
                  "a review measured a 99 s wait"):
        assert OUTSIDE.search(cited), cited
    for data in ("file:../shared/zoo/akamaster_resnet_cifar10/resnet20-12fca82f.th",
                 "../shared/tables/ww_trends.csv", "$ZOOSCAN_SHARED or ../shared", "docs/decisions.md",
                 "weightsManifest", "compacted/manifest.json", "research on heavy tails"):
        assert not OUTSIDE.search(data), data


def test_no_tracked_file_cites_a_file_outside_the_repository() -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    hits = _hits()
    assert not hits, ("these lines cite files outside the repository; state the fact inline or point to a "
                      "section of docs/decisions.md:\n" + "\n".join(hits))
