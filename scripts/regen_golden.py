"""Regenerate tests/golden/resnet20.json: rescan the CIFAR ResNet-20 and pin every layers/models column.

Run from anywhere: ``python scripts/regen_golden.py``. The golden test never writes the file; run this only
when a change of the numbers is intended, and say in the commit which columns moved and why (the test's
failure message lists them). Needs the shared data folder ($ZOOSCAN_SHARED or ../shared).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    sys.path.insert(0, str(REPO))  # the golden helpers live with the tests (tests/golden/resnet20.py)
    from tests.golden import resnet20

    try:
        old = resnet20.read_golden()
    except FileNotFoundError:
        old = None
    golden = resnet20.write_golden()
    print(f"wrote {resnet20.GOLDEN} ({len(golden['layers'])} layer rows, {len(golden['model'])} model columns)")
    if old is not None:
        diff = resnet20.compare(old, golden["layers"], golden["model"])
        print("\n".join(diff.moved + diff.notes()) if diff.failed or diff.notes() else "no column moved")
    return 0


if __name__ == "__main__":
    sys.exit(main())
