"""Load an HTML page in headless Chromium (the Debian package) and report its images and errors.

``check_page`` copies the page beside itself with a small script that records every error event (script
errors, and images or styles that fail to load, caught in the capture phase) and ``console.error`` call,
and on ``load`` lists the images that did not render (``naturalWidth == 0``); Chromium's ``--dump-dom``
prints the DOM with that record. ``scripts/test.sh`` installs Chromium and sets ZOOSCAN_REQUIRE_BROWSER=1,
so there a missing browser fails the test instead of skipping it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

PROBE = """<script>
window.__errors=[];
window.addEventListener('error',function(e){window.__errors.push(e.message||('failed to load '+((e.target&&(e.target.src||e.target.href))||'?')))},true);
var __ce=console.error;console.error=function(){window.__errors.push('console.error: '+Array.from(arguments).join(' '));__ce.apply(console,arguments)};
window.addEventListener('load',function(){var bad=[];for(const i of document.images){if(!(i.complete&&i.naturalWidth>0))bad.push(i.alt||i.src.slice(0,80))}
var d=document.createElement('pre');d.id='zooscan-check';d.textContent=JSON.stringify({images:document.images.length,bad:bad,errors:window.__errors});document.body.appendChild(d)});
</script>"""


def chromium() -> str:
    """The Chromium executable, or skip (fail under ZOOSCAN_REQUIRE_BROWSER=1)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("ZOOSCAN_REQUIRE_BROWSER") == "1":
        pytest.fail("chromium is not installed; scripts/test.sh installs it (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def check_page(page: Path, profile_dir: Path, timeout: float = 120.0) -> dict:
    """{"images": n, "bad": [alt of images that did not render], "errors": [error messages]} of ``page``."""
    text = page.read_text(encoding="utf-8")
    probe = page.with_name(f"_probe_{page.name}")
    probe.write_text(text.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    try:
        done = subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             f"--user-data-dir={profile_dir / 'chromium-profile'}", "--virtual-time-budget=10000",
             "--dump-dom", probe.resolve().as_uri()],
            capture_output=True, text=True, timeout=timeout, check=False)
    finally:
        probe.unlink(missing_ok=True)
    found = re.search(r'<pre id="zooscan-check">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the page did not finish loading in Chromium (rc {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">"))
