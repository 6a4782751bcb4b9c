"""Catalogs: shipped CSVs match their published sources, validation errors name the fix, filters, ls."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from scanner import catalog
from scanner.catalog import CatalogEntry, family_of, filter_entries, load_catalog
from scanner.cli import main
from scanner.errors import CatalogError

SHARED = catalog.shared_dir()
needs_shared = pytest.mark.skipif(not (SHARED / "tables").is_dir(), reason="../shared (real data) not present")
HEADER = "model_id,family,dataset,top1,top5,num_params,source,notes,img_size\n"


@pytest.mark.parametrize("name", catalog.available_catalogs())
def test_shipped_catalogs_load_with_plain_numbers(name) -> None:
    entries = load_catalog(name)
    assert entries
    text = catalog.catalog_path(name).read_text()
    assert '"1,' not in text  # no thousands separators in numeric cells
    assert all(e.family for e in entries)
    if "registry" in text.splitlines()[0].split(","):  # a zoo catalog: provenance in registry/package/version
        import csv

        rows = list(csv.DictReader(catalog.catalog_path(name).open(encoding="utf-8")))
        assert all(r["registry"] and r["package"] and r["version"] for r in rows)
    else:
        assert all(e.source for e in entries)


def test_shipped_catalog_sizes() -> None:
    assert len(load_catalog("cifar10_resnet")) == 4
    assert len(load_catalog("ai8x_maxim")) == 6
    assert {e.dataset for e in load_catalog("hf_text")} == {""}


@needs_shared
def test_timm_catalog_matches_the_published_table() -> None:
    with open(SHARED / "tables" / "timm" / "results-imagenet.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    best: dict[str, dict] = {}
    for row in rows:
        if row["model"] not in best or float(row["top1"]) > float(best[row["model"]]["top1"]):
            best[row["model"]] = row
    entries = {e.model_id: e for e in load_catalog("timm_imagenet")}
    assert len(entries) == len(best)
    for name, row in best.items():
        entry = entries[f"timm:{name}"]
        assert entry.top1 == float(row["top1"]) and entry.top5 == float(row["top5"])
        assert entry.num_params == round(float(row["param_count"].replace(",", "")) * 1e6)
        assert entry.img_size == int(row["img_size"])
    assert entries["timm:eva_giant_patch14_560.m30m_ft_in22k_in1k"].num_params == 1_014_450_000


@needs_shared
def test_file_ids_resolve_to_the_shared_checkpoints() -> None:
    for name in ("cifar10_resnet", "ai8x_maxim"):
        for entry in load_catalog(name):
            assert catalog.resolve_file_path(entry.model_id).is_file(), entry.model_id
    accuracies = [e.top1 for e in load_catalog("cifar10_resnet")]
    assert accuracies == [91.73, 92.63, 93.10, 93.39]  # 100 − akamaster README test errors


def test_file_ids_follow_zooscan_shared(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("ZOOSCAN_SHARED", str(tmp_path))
    assert catalog.resolve_file_path("file:zoo/x.pt") == tmp_path / "zoo" / "x.pt"
    assert catalog.resolve_file_path("file:/abs/x.pt") == Path("/abs/x.pt")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("model_id,family\ntimm:a,a\n", "missing columns"),
        ("model_id,family,dataset,colour\ntimm:a,a,d,red\n", "unknown columns"),
        (HEADER + "resnet50,a,d,,,,,,\n", "unknown prefix"),
        (HEADER + 'timm:a,a,d,70,,"1,014",,,\n', "plain number"),
        (HEADER + "timm:a,a,d,170,,,,,\n", "0-100"),
        (HEADER + "timm:a,a,d,70,,12.5,,,\n", "integer"),
        (HEADER + "timm:a,a,d,70,,,,,\ntimm:a,a,d,71,,,,,\n", "duplicate"),
    ],
)
def test_validation_errors_name_the_problem(tmp_path, body, match) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(CatalogError, match=match):
        load_catalog(path)


def test_unknown_catalog_name_lists_the_known_ones() -> None:
    with pytest.raises(CatalogError, match="timm_imagenet"):
        load_catalog("no_such_catalog")


def test_empty_cells_are_none(tmp_path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(HEADER + "hf:org/name,bert,,,,,,,\n")
    assert load_catalog(path) == [CatalogEntry("hf:org/name", "bert", "")]


def test_filters() -> None:
    entries = [
        CatalogEntry("timm:resnet18.a1_in1k", "resnet", "imagenet-1k", num_params=11_700_000),
        CatalogEntry("timm:resnet50.a1_in1k", "resnet", "imagenet-1k", num_params=25_600_000),
        CatalogEntry("timm:vit_small_patch16_224.augreg_in1k", "vit", "imagenet-1k", num_params=22_000_000),
        CatalogEntry("hf:org/bert", "bert", ""),
    ]
    ids = lambda found: [e.model_id for e in found]  # noqa: E731
    assert ids(filter_entries(entries, include=["resnet*"])) == ids(entries[:2])
    assert ids(filter_entries(entries, include=["timm:*"], exclude=["*vit*"])) == ids(entries[:2])
    assert ids(filter_entries(entries, family="vit")) == ids(entries[2:3])
    assert ids(filter_entries(entries, max_params=23_000_000)) == ids([entries[0], entries[2]])


@pytest.mark.parametrize(
    ("name", "family"),
    [("timm:resnet50.a1_in1k", "resnet"), ("tf_efficientnet_b0.ns_jft_in1k", "efficientnet"),
     ("mobilenetv3_large_100.ra_in1k", "mobilenetv3"), ("resnetbc14b", "resnet"), ("bn_vgg11b", "vgg"),
     ("hrnetv2_w18", "hrnet"), ("vit_base_patch16_224", "vit"), ("cs3darknet_m", "cs3darknet")],
)
def test_family_rule(name, family) -> None:
    assert family_of(name) == family


def test_ls_command(capsys) -> None:
    assert main(["ls", "cifar10_resnet", "--format", "ids", "--include", "*resnet2*"]) == 0
    assert capsys.readouterr().out.splitlines() == ["file:zoo/akamaster_resnet_cifar10/resnet20-12fca82f.th"]
    assert main(["ls", "timm_imagenet", "--family", "vgg"]) == 0
    out = capsys.readouterr().out
    assert "timm:vgg16" in out and "(8 models)" in out
    assert main(["ls", "no_such"]) == 1
