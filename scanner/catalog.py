"""Catalogs: CSV lists of models with their published accuracy, loaded as frozen entries.

A catalog is a CSV under ``catalogs/`` with the columns of ``CatalogEntry`` (``model_id``, ``family``
and ``dataset`` required; the rest may be empty). Cells are plain numbers (``1014.45``, never
``"1,014.45"``); an empty cell is a missing value. ``catalogs/README.md`` names the source of every number.

Model ids carry their source (docs/decisions.md, "Model ids") and are checked by
``scanner.sources.parse_model_id``: ``timm:<name>``, ``hf:<org/name>[@rev]``, ``file:<path>``,
``random:<source>/<name>``. A relative ``file:`` path resolves against the current directory first, then the
shared data folder (``$ZOOSCAN_SHARED`` when set, else ``../shared`` beside the repository root), as
``scanner.paths.resolve_data_path`` does for the file source, so the ids in committed catalogs do not depend on
the machine.

Families group models for correlations. ``family_of`` derives one from a model name by a documented
rule (see its docstring); catalogs store the result so that SQL can group by it.
"""

from __future__ import annotations

import csv
import fnmatch
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from scanner.errors import CatalogError, ModelIdError
from scanner.paths import REPO_ROOT, shared_dir
from scanner.sources import SOURCE_PREFIXES as SOURCES  # the one table of sources

CATALOGS_DIR = REPO_ROOT / "catalogs"
REQUIRED_COLUMNS = ("model_id", "family", "dataset")
# Fetch and provenance columns a zoo catalog may add (read by ``scanner.zoo.catalog``, ignored here).
ZOO_COLUMNS = ("registry", "package", "version", "member", "extractor", "files", "sha256", "licence", "task",
               "format", "metric", "metric_value", "higher_is_better", "metric_source", "default")


@dataclass(frozen=True)
class CatalogEntry:
    """One model of a catalog.

    Attributes:
        model_id: id with its source prefix, e.g. ``timm:resnet50.a1_in1k``.
        family: architecture family used to group correlations (``family_of`` or hand-assigned).
        dataset: evaluation dataset of the published accuracy (``imagenet-1k``, ``cifar-10``, ...); empty
            when none is published.
        top1: published top-1 accuracy in percent (None when not published).
        top5: published top-5 accuracy in percent (None when not published).
        num_params: number of parameters as published (None when unknown).
        source: where the numbers come from (file and commit; details in catalogs/README.md).
        notes: free text (caveats, test vs validation split).
        img_size: evaluation image size in pixels (None when not applicable).
    """

    model_id: str
    family: str
    dataset: str
    top1: float | None = None
    top5: float | None = None
    num_params: int | None = None
    source: str = ""
    notes: str = ""
    img_size: int | None = None


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(CatalogEntry))
_FLOATS = ("top1", "top5")
_INTS = ("num_params", "img_size")


def check_model_id(model_id: str) -> str:
    """Return ``model_id`` if ``scanner.sources.parse_model_id`` accepts it and its source can be catalogued.

    Raises:
        CatalogError: the id does not parse (the message lists the valid forms) or is an in-memory
            ``module:`` id, which cannot be scanned from a catalog.
    """
    from scanner.sources import parse_model_id

    try:
        ref = parse_model_id(model_id)
    except ModelIdError as exc:
        raise CatalogError(str(exc)) from exc
    if ref.source not in SOURCES:
        raise CatalogError(f"model id {model_id!r}: a catalog lists only {', '.join(SOURCES)} ids")
    return model_id


def resolve_file_path(model_id: str) -> Path:
    """The checkpoint path of a ``file:`` id; relative paths resolve against ``shared_dir()``."""
    check_model_id(model_id)
    source, _, name = model_id.partition(":")
    if source != "file":
        raise CatalogError(f"{model_id!r} is not a file: id")
    path = Path(name)
    return path if path.is_absolute() else shared_dir() / path


_PREFIXES = ("tf_", "gluon_", "legacy_", "ens_adv_", "adv_", "ig_", "ssl_", "swsl_", "bn_")
_ALIASES = {"resnetbc": "resnet", "preresnetbc": "preresnet", "hrnetv2": "hrnet"}


def family_of(name: str) -> str:
    """Architecture family of a model name (timm ``arch.tag`` or pytorchcv name), by a fixed rule.

    Rule: drop a source prefix (``timm:``), the pretrained tag (after the first '.') and one training-
    recipe prefix (tf_, gluon_, legacy_, adv_, ens_adv_, ig_, ssl_, swsl_, bn_); take the leading run of
    letters plus an immediately following version ``v<digits>`` (``mobilenetv3_large_100`` →
    ``mobilenetv3``, ``resnet50d`` → ``resnet``, ``vit_base_patch16_224`` → ``vit``); then map aliases
    that are one family in the papers' series (resnetbc → resnet, hrnetv2 → hrnet). Names that start
    with a digit or a short letter run keep their first '_'-separated part (``cs3darknet_m`` → ``cs3darknet``).

    Examples:
        >>> family_of("timm:resnet50.a1_in1k"), family_of("tf_efficientnet_b0.ns_jft_in1k")
        ('resnet', 'efficientnet')
    """
    arch = name.split(":", 1)[-1].split(".", 1)[0].lower()
    for prefix in _PREFIXES:
        if arch.startswith(prefix):
            arch = arch[len(prefix):]
            break
    letters, digits = re.match(r"([a-z]*)(\d*)", arch).groups()  # type: ignore[union-attr]
    family = letters + digits if letters.endswith("v") and digits else letters
    if len(family) < 3:
        family = arch.split("_", 1)[0]
    return _ALIASES.get(family, family)


def _parse_number(text: str, column: str, kind: type, where: str) -> float | int | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError as exc:
        raise CatalogError(f"{where}: column {column!r} must be a plain number or empty; got {text!r}") from exc
    if not math.isfinite(value):
        raise CatalogError(f"{where}: column {column!r} must be finite; got {text!r}")
    if kind is int:
        if value != int(value):
            raise CatalogError(f"{where}: column {column!r} must be an integer; got {text!r}")
        return int(value)
    return value


def _entry(row: dict[str, str], where: str) -> CatalogEntry:
    values: dict[str, object] = {}
    for column in COLUMNS:
        text = (row.get(column) or "").strip()
        if column in _FLOATS:
            values[column] = _parse_number(text, column, float, where)
        elif column in _INTS:
            values[column] = _parse_number(text, column, int, where)
        else:
            values[column] = text
    try:
        check_model_id(str(values["model_id"]))
    except CatalogError as exc:
        raise CatalogError(f"{where}: {exc}") from exc
    for column in ("top1", "top5"):
        value = values[column]
        if value is not None and not 0.0 <= float(value) <= 100.0:  # type: ignore[arg-type]
            raise CatalogError(f"{where}: {column} is an accuracy in percent (0-100); got {value}")
    return CatalogEntry(**values)  # type: ignore[arg-type]


def catalog_path(path_or_name: str | os.PathLike[str]) -> Path:
    """A path as given, or ``catalogs/<name>.csv`` for a bare name such as ``timm_imagenet``."""
    path = Path(path_or_name)
    if path.suffix == ".csv" or path.exists():
        return path
    candidate = CATALOGS_DIR / f"{path_or_name}.csv"
    if not candidate.exists():
        known = ", ".join(available_catalogs()) or "none"
        raise CatalogError(f"no catalog {str(path_or_name)!r}; give a CSV path or one of: {known}")
    return candidate


def available_catalogs(folder: Path = CATALOGS_DIR) -> list[str]:
    """Names of the catalogs shipped in ``folder`` (CSV stems)."""
    return sorted(p.stem for p in folder.glob("*.csv"))


def load_catalog(path_or_name: str | os.PathLike[str]) -> list[CatalogEntry]:
    """Read and validate a catalog CSV.

    Raises:
        CatalogError: missing required columns, unknown columns, a bad model id, a non-numeric or
            out-of-range number, or a duplicate model id (the message names the file and line).
    """
    path = catalog_path(path_or_name)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            unknown = [c for c in header if c not in COLUMNS and c not in ZOO_COLUMNS]
            if missing or unknown:
                raise CatalogError(
                    f"{path}: missing columns {missing} / unknown columns {unknown}; "
                    f"a catalog has the columns {list(COLUMNS)} ({list(REQUIRED_COLUMNS)} required)"
                )
            entries = [_entry(row, f"{path}:{line}") for line, row in enumerate(reader, start=2)]
    except FileNotFoundError as exc:
        raise CatalogError(f"catalog file {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise CatalogError(f"{path} is a folder; give a catalog CSV file or a name from zooscan ls") from exc
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8 "
                           "CSV") from exc
    check_unique(entries, str(path))
    return entries


def check_unique(entries: Iterable[CatalogEntry], where: str) -> None:
    """Raise CatalogError if a model id occurs twice."""
    seen: set[str] = set()
    repeated: set[str] = set()
    for entry in entries:
        (repeated if entry.model_id in seen else seen).add(entry.model_id)
    dupes = sorted(repeated)
    if dupes:
        raise CatalogError(f"{where}: duplicate model ids {dupes[:10]}; each model id may appear once")


def filter_entries(
    entries: Sequence[CatalogEntry],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    family: str | None = None,
    max_params: int | None = None,
) -> list[CatalogEntry]:
    """Entries matching the filters, in catalog order.

    Globs (fnmatch, case-sensitive) match the whole model id or the part after its ``<source>:``
    prefix, so ``resnet*`` and ``timm:resnet*`` both work. An entry passes when it matches any include
    glob (or none are given), no exclude glob, has ``family`` (when given) and at most ``max_params``
    parameters (entries with unknown size are dropped when ``max_params`` is given).
    """

    def matches(entry: CatalogEntry, globs: Sequence[str]) -> bool:
        name = entry.model_id.split(":", 1)[1]
        return any(fnmatch.fnmatchcase(entry.model_id, g) or fnmatch.fnmatchcase(name, g) for g in globs)

    return [
        e
        for e in entries
        if (not include or matches(e, include))
        and not matches(e, exclude)
        and (family is None or e.family == family)
        and (max_params is None or (e.num_params is not None and e.num_params <= max_params))
    ]


def write_catalog(path: str | os.PathLike[str], entries: Sequence[CatalogEntry]) -> None:
    """Write entries as a catalog CSV (plain numbers, empty cells for None)."""
    check_unique(entries, str(path))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for entry in entries:
            writer.writerow(["" if getattr(entry, c) is None else getattr(entry, c) for c in COLUMNS])
