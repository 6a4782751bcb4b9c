"""User errors end in one ``error:`` line (no traceback) and a non-zero exit; --debug shows the traceback.

The cases are issue 14's D8 (17 user inputs that ended in a traceback, found by an adversarial run) plus the papercuts of
issue 13 that concern the CLI: ``ls | head``, the empty correlation, ``analyze`` output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.bench_report_scale import write_zoo
from scanner.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, *, contains: str = "") -> None:
    assert rc in (1, 2), rc
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert contains in errors[0], errors[0]


@pytest.fixture(scope="module")
def small_scan(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    scan_dir, catalog = write_zoo(root, n_models=3, n_families=1, n_layers=4, n_evals=32)
    return scan_dir, catalog


def test_catalog_not_utf8(capsys, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"model_id,family,dataset\nfile:x\xff.pt,f,d\n")
    rc, _, err = run_cli(capsys, "scan", str(bad), "--results", str(tmp_path / "r"), "--serial")
    assert_one_line_error(rc, err, contains="not UTF-8")


def test_catalog_is_a_folder(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "ls", str(tmp_path))
    assert_one_line_error(rc, err, contains="is a folder")


def test_results_is_a_file(capsys, tmp_path):
    results = tmp_path / "results_is_file"
    results.write_text("x")
    rc, _, err = run_cli(capsys, "scan", "--models", "file:/nonexistent.safetensors", "--results", str(results),
                         "--serial")
    assert_one_line_error(rc, err)


def test_results_under_proc(capsys):
    rc, _, err = run_cli(capsys, "scan", "--models", "file:/nonexistent.safetensors", "--results",
                         "/proc/zooscan_results", "--serial")
    assert_one_line_error(rc, err)


def test_read_only_results_is_one_line(capsys, tmp_path, monkeypatch):
    """Root ignores file modes here, so the PermissionError a read-only folder gives is injected."""
    import scanner.store

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "ro" / "s" / "scan.json"))

    monkeypatch.setattr(scanner.store.ResultStore, "open_scan", refuse)
    rc, _, err = run_cli(capsys, "scan", "--models", "file:/nonexistent.safetensors", "--results",
                         str(tmp_path / "ro"), "--scan-id", "s", "--serial")
    assert_one_line_error(rc, err, contains="Permission denied")


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    import scanner.store

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(scanner.store.ResultStore, "open_scan", refuse)
    with pytest.raises(PermissionError):
        main(["--debug", "scan", "--models", "file:/x.safetensors", "--results", str(tmp_path), "--serial"])


@pytest.mark.parametrize("params", [
    ["--param", "metric=nosuch"],
])
def test_rank_models_bad_metric(capsys, small_scan, params):
    scan_dir, _ = small_scan
    rc, _, err = run_cli(capsys, "query", "rank_models", "--results", str(scan_dir.parent), *params)
    assert_one_line_error(rc, err, contains="unknown metric")


@pytest.mark.parametrize("query, params, says", [
    ("alpha_histogram", ["bins=abc"], "bins must be an integer (default 20)"),
    ("alpha_histogram", ["bins=1e11"], "bins must be an integer"),
    ("alpha_histogram", ["lo=1", "hi=1"], "bins must be >= 1 and hi > lo"),
    ("alpha_histogram", ["bins=0"], "bins must be >= 1 and hi > lo"),
    ("alpha_histogram", ["metric=bogus"], "unknown metric bogus"),
    ("alpha_histogram", ["lo=x"], "lo must be a number"),
    ("alpha_quantiles", ["group_by=bogus"], "unknown group_by bogus"),
    ("phase_by_depth", ["buckets=0"], "buckets must be >= 1"),
    ("metric_accuracy_correlation", ["min_models=abc"], "min_models must be an integer"),
    ("alpha_histogram", ["bins=NULL"], "bins must be >= 1 and hi > lo; got bins=NULL"),
    ("alpha_histogram", ["metric=NULL"], "unknown metric NULL"),
    ("phase_by_depth", ["buckets=NULL"], "buckets must be >= 1; got NULL"),
    ("rank_models", ["metric=NULL"], "unknown metric NULL"),
])
def test_bad_query_parameters_are_refused_naming_the_parameter(capsys, small_scan, query, params, says):
    """A value the query cannot use is one line naming it, never a silent fallback (metric=alpha_hat once gave the
    alpha histogram) or a DuckDB binder error."""
    scan_dir, _ = small_scan
    argv = ["query", query, "--results", str(scan_dir.parent)]
    for p in params:
        argv += ["--param", p]
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 1
    assert_one_line_error(rc, err, contains=says)


def test_alpha_histogram_of_alpha_hat_is_that_of_alpha_weighted(capsys, small_scan):
    scan_dir, _ = small_scan
    outputs = {}
    for metric in ("alpha", "alpha_weighted", "alpha_hat"):
        rc, out, _ = run_cli(capsys, "query", "alpha_histogram", "--results", str(scan_dir.parent), "--param",
                             f"metric={metric}", "--param", "lo=-10", "--format", "csv")
        assert rc == 0
        outputs[metric] = out
    assert outputs["alpha_hat"] == outputs["alpha_weighted"] != outputs["alpha"]


def test_report_on_a_missing_scan(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "report", str(tmp_path / "no_such_scan"))
    assert_one_line_error(rc, err, contains="does not exist")


def test_report_on_a_torn_scan(capsys, small_scan, tmp_path):
    import shutil

    scan_dir, catalog = small_scan
    copy = tmp_path / "results" / scan_dir.name
    shutil.copytree(scan_dir, copy)
    victim = sorted((copy / "models").glob("*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:40])
    rc, _, err = run_cli(capsys, "report", str(copy), "--catalog", str(catalog), "-o", str(tmp_path / "rep"),
                         "--jobs", "1")
    assert_one_line_error(rc, err)
    shutil.rmtree(copy)  # a torn layers file of a committed model: the fix is named
    shutil.copytree(scan_dir, copy)
    layers = sorted((copy / "layers").glob("*.parquet"))[0]
    layers.write_bytes(layers.read_bytes()[:40])
    rc, _, err = run_cli(capsys, "report", str(copy), "--catalog", str(catalog), "-o", str(tmp_path / "rep"))
    assert_one_line_error(rc, err, contains=f"zooscan verify --results {copy.parent} --scan-id {copy.name} --repair")


def test_report_of_a_model_not_in_the_scans_is_refused(capsys, small_scan, tmp_path):
    scan_dir, catalog = small_scan
    rc, out, err = run_cli(capsys, "report", str(scan_dir), "--catalog", str(catalog), "-o", str(tmp_path / "rep"),
                           "--model", "file:no/such/model.safetensors")
    assert rc == 2 and out == "" and not (tmp_path / "rep").exists()
    assert_one_line_error(rc, err, contains="'file:no/such/model.safetensors' is not in the scans given")


def test_retry_failed_over_a_torn_models_file(capsys, tmp_path):
    results = tmp_path / "results"
    argv = ["scan", "--models", "file:/nonexistent.safetensors", "--results", str(results), "--scan-id", "s",
            "--serial"]
    assert main(argv) in (0, 3)  # 3: the scan finished with failed models (the only model fails)
    capsys.readouterr()
    for f in (results / "s" / "models").glob("*.parquet"):
        f.write_bytes(f.read_bytes()[:40])
    rc, _, err = run_cli(capsys, *argv, "--retry-failed")
    assert "Traceback" not in err
    assert rc in (0, 3) or len([x for x in err.splitlines() if x.startswith("error:")]) == 1


def test_analyze_csv_into_a_missing_folder_fails_before_the_analysis(capsys, tmp_path):
    rc, out, err = run_cli(capsys, "analyze", "random:timm/resnet18", "--csv", str(tmp_path / "no" / "x.csv"))
    assert_one_line_error(rc, err, contains="does not exist")
    assert out == ""  # nothing analysed


def test_analyze_with_device_cuda_and_no_cuda_is_refused_before_the_analysis(capsys, monkeypatch):
    """As ``scan`` does: computing on the host when the GPU was asked for would be a silent substitution."""
    import torch

    import scanner

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc, out, err = run_cli(capsys, "analyze", "random:timm/test_resnet", "--device", "cuda")
    assert rc == 1 and out == ""  # as scan: a setup error
    assert_one_line_error(rc, err, contains="torch sees no CUDA device")
    with pytest.raises(scanner.errors.ConfigError, match="torch sees no CUDA device"):
        scanner.analyze("random:timm/test_resnet", device="cuda")


def test_analyze_of_a_missing_file_is_one_line_without_an_empty_table(capsys):
    rc, out, err = run_cli(capsys, "analyze", "file:/nonexistent/model.safetensors")
    assert rc == 1 and out == ""
    assert_one_line_error(rc, err, contains="nonexistent")


def test_ls_into_a_closed_pipe_is_quiet():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(f"{sys.executable} -m scanner ls timm_imagenet | head -n 2", shell=True,
                          capture_output=True, text=True, env=env, cwd=Path(__file__).parents[1], check=False)
    assert len(done.stdout.splitlines()) == 2
    assert "BrokenPipeError" not in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_empty_correlation_explains_why(capsys, small_scan):
    scan_dir, catalog = small_scan
    rc, out, err = run_cli(capsys, "query", "metric_accuracy_correlation", "--results", str(scan_dir.parent),
                           "--catalogs", str(catalog.parent), "--param", "min_models=5")
    assert rc == 0 and "(0 rows)" in out
    assert "note: no family has min_models=5" in err and "min_models=3" in err
    rc, out, _ = run_cli(capsys, "query", "metric_accuracy_correlation", "--results", str(scan_dir.parent),
                         "--catalogs", str(catalog.parent), "--param", "min_models=3")
    assert rc == 0 and "(0 rows)" not in out


def test_empty_correlation_hint_counts_models_per_scan_and_dataset(capsys, small_scan, tmp_path):
    """Two copies of a 3-model scan: the query groups by scan, so the largest group has 3 models, not 6; a dataset
    filter applies to the hint too."""
    import shutil

    scan_dir, catalog = small_scan
    root = tmp_path / "results"
    shutil.copytree(scan_dir, root / "a")
    shutil.copytree(scan_dir, root / "b")
    base = ["query", "metric_accuracy_correlation", "--results", str(root), "--catalogs", str(catalog.parent)]
    rc, out, err = run_cli(capsys, *base, "--param", "min_models=5")
    assert rc == 0 and "(0 rows)" in out and "with 3: rerun with --param min_models=3" in err
    rc, out, _ = run_cli(capsys, *base, "--param", "min_models=3")
    assert rc == 0 and "(0 rows)" not in out  # the advice works
    rc, out, err = run_cli(capsys, *base, "--param", "dataset=imagenet-1k")
    assert "(0 rows)" in out and "no scanned model with dataset=imagenet-1k has a published top-1" in err


def test_every_query_named_in_a_help_text_exists():
    """scan --help once named a query 'status' that does not exist."""
    import re

    from scanner.cli import COMMANDS, EPILOG, build_parser
    from scanner.query import list_queries

    names = {q.name for q in list_queries()}
    build_parser()
    texts = [EPILOG] + [getattr(__import__(module, fromlist=["EPILOG"]), "EPILOG", "") or ""
                        for module, _ in COMMANDS.values()]
    named = {m for text in texts for m in re.findall(r"zooscan query ([a-z_]+)", text)}
    assert named and named <= names, named - names


@pytest.fixture(scope="module")
def mha_file(tmp_path_factory):
    """A checkpoint with a fused attention in-projection (split into q, k, v) and biases."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"mha": torch.nn.MultiheadAttention(48, 4), "fc": torch.nn.Linear(48, 96)})
    path = tmp_path_factory.mktemp("ckpt") / "mha.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def test_analyze_hides_skipped_tensors_and_shows_the_analysed_matrix(capsys, mha_file):
    rc, out, _ = run_cli(capsys, "analyze", f"file:{mha_file}", "--no-randomize")
    assert rc == 0
    rows = [line for line in out.splitlines() if line.startswith("mha.") or line.startswith("fc")]
    assert not any("skipped" in line for line in rows)
    assert "skipped tensor(s) not listed" in out
    q_row = next(line for line in rows if line.startswith("mha.in_proj_weight.q") or ".q " in line)
    assert "48x48" in q_row and "144x48" not in q_row  # the analysed piece, not the fused tensor
    rc, out, _ = run_cli(capsys, "analyze", f"file:{mha_file}", "--no-randomize", "--show-skipped")
    assert rc == 0 and "skipped: " in out and "not listed" not in out


def test_analyze_progress_lines():
    import io
    from types import SimpleNamespace

    from scanner.commands.analyze import LayerProgress

    stream = io.StringIO()
    progress = LayerProgress(stream, interval=0.0)
    for i in range(3):
        progress(SimpleNamespace(status=SimpleNamespace(value="ok" if i else "skipped"), layer_name=f"l{i}"))
    progress.finish()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("analyze: 1 tensors read, 0 analysed") and "2 analysed" in lines[2]
    assert lines[-1].startswith("analyze: done, 3 tensors")
    quiet = io.StringIO()
    slow = LayerProgress(quiet, interval=3600.0)
    slow(SimpleNamespace(status=SimpleNamespace(value="ok"), layer_name="x"))
    slow.finish()
    assert quiet.getvalue() == ""  # short runs stay quiet


def test_cache_dir_named_by_hub_errors_is_an_option():
    """The hub error says 'point --cache-dir … at it': the commands that read hub weights must have it."""
    from scanner.cli import build_parser

    hub_text = (Path(__file__).parents[1] / "scanner" / "sources" / "hub.py").read_text(encoding="utf-8")
    assert "--cache-dir" in hub_text
    parser = build_parser()
    for command in ("analyze", "scan"):
        args = parser.parse_args([command, "--cache-dir", "/tmp/hub", *(["x"] if command == "analyze" else
                                                                         ["--results", "r"])])
        assert args.cache_dir == "/tmp/hub"


def test_a_text_file_named_pt_is_one_line_without_torchs_advice(capsys, tmp_path):
    """torch 2.6+ wraps its weights-only refusal in a paragraph suggesting weights_only=False (which zooscan never
    does); the row's reason and the error keep torch's own reason, on one line."""
    fake = tmp_path / "text.pt"
    fake.write_text("not a pickle\n")
    rc, out, err = run_cli(capsys, "analyze", f"file:{fake}")
    assert rc == 1 and out == ""
    assert_one_line_error(rc, err, contains="not a torch checkpoint, or a corrupt one")
    assert "weights_only" not in err and "file an issue" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("model_id, says", [("foo:bar", "unknown prefix 'foo'"), ("", "empty model id"),
                                            ("odd/text.pt", 'prefix it with "file:"')])
def test_a_bad_model_id_is_one_line_with_the_valid_forms(capsys, model_id, says):
    rc, _, err = run_cli(capsys, "analyze", model_id)
    assert_one_line_error(rc, err, contains=says)
    assert "valid forms: timm:" in err and len(err.strip().splitlines()) == 1


def test_reasons_are_one_line_wherever_they_come_from():
    from scanner.executors import ModelError
    from scanner.records import LayerResult, ModelResult, Status

    paragraph = "first line\n\nsecond  line\r\n"
    assert LayerResult("m", 0, "w", "linear", (2, 2), Status.FAILED, paragraph).reason == "first line second line"
    assert ModelResult("m", "file", Status.FAILED, paragraph).reason == "first line second line"
    assert ModelError("RuntimeError", paragraph).reason == "first line second line"
    assert ModelResult("m", "file", Status.FAILED, "kept  as  is").reason == "kept  as  is"


def test_sql_errors_are_one_line_and_a_missing_table_lists_the_views(capsys, small_scan):
    scan_dir, _ = small_scan
    rc, _, err = run_cli(capsys, "sql", "selec x", "--results", str(scan_dir.parent))
    assert_one_line_error(rc, err, contains="syntax error")
    assert len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(capsys, "sql", "select * from nosuch", "--results", str(scan_dir.parent))
    assert_one_line_error(rc, err, contains="the views are catalog, layers,")
    assert "_live" not in err
    rc, _, err = run_cli(capsys, "sql", "select nosuchfunction(1)", "--results", str(scan_dir.parent))
    assert_one_line_error(rc, err, contains="nosuchfunction")
    assert "the views are" not in err


@pytest.mark.parametrize("params", [["metric=5"], ["group_by=1"], ["scan_id=nan"]])
def test_a_number_given_for_a_text_parameter_stays_text(capsys, small_scan, params):
    """metric=5 reaches the query's own check as the text '5'; scan_id=nan is a scan id, not a float."""
    scan_dir, _ = small_scan
    query = {"metric": "alpha_histogram", "group_by": "alpha_quantiles", "scan_id": "status_overview"}[
        params[0].split("=")[0]]
    rc, out, err = run_cli(capsys, "query", query, "--results", str(scan_dir.parent), "--param", params[0])
    if params[0].startswith("scan_id"):
        assert rc == 1 and "no scan" in err or rc == 0 and "(0 rows)" in out
    else:
        assert_one_line_error(rc, err, contains=f"unknown {params[0].split('=')[0]} {params[0].split('=')[1]}")


def test_min_evals_named_by_the_skip_reason_is_an_option_and_the_summary_says_when_no_fit_is_reliable(capsys,
                                                                                                        tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    path = tmp_path / "tiny.safetensors"
    save_file({"fc.weight": np.random.default_rng(0).standard_normal((12, 3)).astype(np.float32)}, str(path))
    rc, out, _ = run_cli(capsys, "analyze", f"file:{path}", "--show-skipped", "--no-randomize")
    assert rc == 1 and "lower min_evals (--min-evals) to analyse it anyway" in out  # no analysable layer: failed
    rc, out, _ = run_cli(capsys, "analyze", f"file:{path}", "--min-evals", "2", "--no-randomize")
    assert rc == 0 and "ok 1" in out
    assert "alpha: no reliable power-law fit" in out and "alpha mean  median" not in out


def test_analyze_csv_has_every_column_and_a_folder_is_refused_first(capsys, tmp_path):
    import csv

    import numpy as np
    from safetensors.numpy import save_file

    from scanner.schema import LAYERS as LAYERS_SCHEMA

    path = tmp_path / "tiny.safetensors"
    save_file({"fc.weight": np.random.default_rng(0).standard_normal((12, 3)).astype(np.float32)}, str(path))
    rc, out, err = run_cli(capsys, "analyze", f"file:{path}", "--csv", str(tmp_path))
    assert_one_line_error(rc, err, contains="is a folder; give a file name")
    assert rc == 2 and out == ""  # refused before the analysis
    rc, _, _ = run_cli(capsys, "analyze", f"file:{path}", "--min-evals", "2", "--no-randomize", "--csv",
                       str(tmp_path / "layers.csv"))
    with open(tmp_path / "layers.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    nested = {f.name for f in LAYERS_SCHEMA if f.type.num_fields or str(f.type).startswith("list")} - {"shape"}
    assert rc == 0 and set(rows[0]) == set(LAYERS_SCHEMA.names) - nested and rows[0]["shape"] == "12x3"


def test_a_missing_catalogs_folder_and_an_empty_scan_id_are_refused(capsys, small_scan, tmp_path):
    scan_dir, _ = small_scan
    rc, _, err = run_cli(capsys, "query", "status_overview", "--results", str(scan_dir.parent), "--catalogs",
                         str(tmp_path / "nope"))
    assert_one_line_error(rc, err, contains="is not a folder")
    assert rc == 2
    rc, _, err = run_cli(capsys, "scan", "--models", "random:timm/test_vit", "--results", str(tmp_path), "--scan-id",
                         " ", "--serial")
    assert_one_line_error(rc, err, contains="--scan-id is empty")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_sql_with_a_repeated_column_name_keeps_both_columns(capsys, small_scan, fmt):
    """SELECT a.x, b.x gives two columns named x: the table output crashed and JSON kept one of them."""
    import json

    from scanner.commands.query import distinct_names

    scan_dir, _ = small_scan
    rc, out, err = run_cli(capsys, "sql", "select 1 as x, 2 as x, 3 as x_1", "--results", str(scan_dir.parent),
                           "--format", fmt)
    assert rc == 0 and "Traceback" not in err
    if fmt == "json":
        assert json.loads(out) == [{"x": 1, "x_2": 2, "x_1": 3}]
    else:
        assert "x_2" in out and "x_1" in out
    assert distinct_names(["a", "a", "a_1", "b", "a"]) == ["a", "a_2", "a_1", "b", "a_3"]
