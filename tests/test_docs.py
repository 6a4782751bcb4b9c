"""Every command of every README is run, or listed in NOT_RUN with the reason (and which test covers it).

Commands are the lines of fenced ``bash``/``sh`` blocks (unlabelled blocks too, when their lines start like a
command), the fenced ``python`` and ``sql`` blocks, and in bench/README.md (whose table cells hold commands) the
inline code spans that start with ``zooscan``, ``python``, ``bash`` or ``.venv/bin/python`` (optionally after
``VAR=value`` and ``nice``). Elsewhere inline code is option syntax in prose, not a command. They run
in README order in a sandbox: a temporary folder holding links to the repository's catalogs/, queries/, scripts/,
bench/, infra/ and experiments/, with ``../shared`` linked to the shared data, so ``results/`` and every other
output lands in the sandbox. ``export`` lines set the environment of later commands; ``source
.venv/bin/activate`` puts the venv first on PATH.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
READMES = ("README.md", "queries/README.md", "catalogs/README.md", "bench/README.md", "infra/README.md")
INLINE_COMMANDS = ("bench/README.md",)
LINKED = ("catalogs", "queries", "scripts", "infra", "experiments", "scanner", "tests", "pyproject.toml")
COPIED = ("bench",)  # copied without results/, so nothing a command writes lands in the repository
CLUSTER = "needs a Ray cluster; run by the cluster tests (tests/test_cluster*.py, tests/test_infra.py)"
# regex on the command text -> why it is not run here (and where it is covered instead)
NOT_RUN: dict[str, str] = {
    r"^bash scripts/run\.sh": "reinstalls .venv and scans the whole zoo; its zooscan commands are the ones below",
    r"^bash scripts/test\.sh": "is this test suite (it runs test_docs.py)",
    r"--address \S+|^ray start |^ray job |^infra/submit\.sh|^sleep |^kill %": CLUSTER,
    r"zooscan zoo fetch": "downloads the registry zoo from package registries (network); tests/test_zoo*.py fetch from "
                          "local registries",
    r"registry_zoo": "needs the fetched registry zoo (zooscan zoo fetch, ~360 MB); scripts/run.sh runs it",
    r"&\s*$": "starts a background daemon (a test must not leave processes behind)",
    r"^docker ": "builds and pushes an image to a registry; tests/test_infra.py checks the Dockerfile",
    r"^zooscan reproduce batch-size": "trains for minutes; a reduced run is in tests/test_experiments.py",
    r"gpu_esd_check\.py|gpu_scan_check\.py|gpu_check\.sh": "GPU benchmark; tests/test_bench_smoke.py runs the CPU "
                                                           "smoke form",
    r"bench/\w+\.(py|sh)": "a benchmark (minutes to hours on 2 cores, writes bench/results/); tests/test_bench*.py "
                          "run their smoke forms",
    r"\.\.\.|…|<(?!scan_id>)[a-z_ ]+>": "a template with placeholders (…, <you>, <time>), not a runnable command",
    r"^source ": "shell state: applied to the later commands (the venv's bin first on PATH)",
    r"^export ": "shell state: applied to the later commands",
}


@dataclass(frozen=True)
class Command:
    readme: str
    kind: str  # "shell", "python" or "sql"
    text: str


_INLINE = re.compile(r"`((?:[A-Z_]+=\S+ )*(?:nice )?(?:\.venv/bin/)?(?:zooscan|python|bash) [^`]+)`")
_SHELL_START = re.compile(r"^(zooscan|python|bash|\.venv/|infra/|docker|ray |export |source |[A-Z_]+=)")


def _shell_lines(block: str) -> list[str]:
    lines, current = [], ""
    for raw in block.splitlines():
        line = raw.rstrip()
        if current:
            current += " " + line.strip()
        else:
            current = line.strip()
        if current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        text = re.sub(r"\s+#.*$", "", current).strip() if not current.startswith("#") else ""
        if text:
            lines.append(text)
        current = ""
    return lines


def readme_commands() -> list[Command]:
    """Every command of the READMEs, in order."""
    out = []
    for readme in READMES:
        text = (REPO / readme).read_text(encoding="utf-8")
        fenced = list(re.finditer(r"```(\w*)\n(.*?)```", text, re.S))
        for match in fenced:
            lang, block = match.group(1), match.group(2)
            if lang in ("bash", "sh", "shell", "console") or (lang == "" and all(
                    _SHELL_START.match(line.strip()) for line in _shell_lines(block))):
                out += [Command(readme, "shell", line) for line in _shell_lines(block)]
            elif lang == "python":
                out.append(Command(readme, "python", block))
            elif lang == "sql":
                out.append(Command(readme, "sql", block))
        if readme in INLINE_COMMANDS:  # commands in table cells; elsewhere inline code is option syntax in prose
            prose = re.sub(r"```.*?```", "", text, flags=re.S)
            out += [Command(readme, "shell", m.group(1).strip()) for m in _INLINE.finditer(prose)]
    return out


def why_not_run(command: Command) -> str | None:
    for pattern, reason in NOT_RUN.items():
        if re.search(pattern, command.text, re.M):
            return reason
    return None


def test_every_readme_command_is_run_or_has_a_reason():
    commands = readme_commands()
    assert len(commands) > 10
    assert any(c.text.startswith("zooscan report") for c in commands)
    listed = [(c.readme, c.text.splitlines()[0][:90], why_not_run(c)) for c in commands]
    print("\n".join(f"{'RUN ' if not why else 'SKIP'} {readme}: {text}" + (f"  [{why}]" if why else "")
                    for readme, text, why in listed))
    unused = [p for p in NOT_RUN if not any(re.search(p, c.text, re.M) for c in commands)]
    if unused:
        import warnings

        warnings.warn(f"NOT_RUN entries that match no README command: {unused}", stacklevel=1)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    root = tmp_path_factory.mktemp("docs")
    work = root / "repo"
    work.mkdir()
    for name in LINKED:
        (work / name).symlink_to(REPO / name)
    for name in COPIED:
        shutil.copytree(REPO / name, work / name, ignore=shutil.ignore_patterns("results", "__pycache__"))
        (work / name / "results").mkdir()
    shared = Path(os.environ.get("ZOOSCAN_SHARED", REPO.parent / "shared")).resolve()
    (root / "shared").symlink_to(shared)
    return work


def _env(extra: dict[str, str], venv_first: bool) -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           **extra}
    bin_dir = str(Path(sys.executable).parent)
    if venv_first:  # `source .venv/bin/activate`: the venv running these tests
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return env


def _run(command: Command, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    if command.kind == "python":
        script = command.text.replace("<scan_id>", "first")
        return subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=600, check=False)
    if command.kind == "sql":
        script = ("import duckdb, sys\ncon = duckdb.connect()\n"
                  "for stmt in [s for s in sys.stdin.read().split(';') if s.strip() and "
                  "not all(l.strip().startswith('--') for l in s.strip().splitlines())]:\n"
                  "    print(con.sql(stmt))\n")
        return subprocess.run([sys.executable, "-c", script], input=command.text, cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=600, check=False)
    text = command.text
    if text.startswith("zooscan "):
        text = f"{shlex.quote(sys.executable)} -m scanner {text[len('zooscan '):]}"
    process = subprocess.Popen(text, shell=True, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=900)
    finally:  # never leave the command's processes behind (its own process group)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(text, process.returncode, out, err)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # two scans and two reports: ~3 min on a quiet 2-core machine
def test_readme_commands_run(sandbox):
    """Run every command not in NOT_RUN, in README order, in one sandbox; each must exit 0."""
    extra: dict[str, str] = {}
    venv_first = False
    ran = []
    for command in readme_commands():
        text = command.text
        if command.kind == "shell" and text.startswith("export "):
            for pair in shlex.split(text[len("export "):]):
                key, _, value = pair.partition("=")
                extra[key] = os.path.expandvars(value.replace("$PWD", str(sandbox)))
        if command.kind == "shell" and text.startswith("source ") and ".venv/bin/activate" in text:
            venv_first = True
        if why_not_run(command):
            continue
        started = time.perf_counter()
        done = _run(command, sandbox, _env(extra, venv_first))
        print(f"{time.perf_counter() - started:6.1f} s  {command.readme}: {text.splitlines()[0][:100]}")
        assert done.returncode == 0, (f"{command.readme}: {text[:200]}\nexit {done.returncode}\n"
                                      f"stdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-3000:]}")
        ran.append(text)
    assert any(t.startswith("zooscan report") for t in ran) and any(t.startswith("zooscan scan") for t in ran)
    assert (sandbox / "results" / "first" / "report" / "index.html").is_file()


def test_first_ten_minutes_covers_scan_query_report_and_offline_use():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## First ten minutes"):]
    section = section[: section.index("\n## ", 5)]
    for needle in ("zooscan analyze", "zooscan scan", "zooscan query", "zooscan report", "HF_HUB_OFFLINE=1",
                   "--cache-dir", "scanner.get_summary", "scanner.describe"):
        assert needle in section, needle
