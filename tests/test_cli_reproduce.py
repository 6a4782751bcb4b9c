"""``zooscan reproduce`` writes under results/ unless told otherwise (it once overwrote experiments/)."""

from __future__ import annotations

from pathlib import Path

from scanner.cli import build_parser
from scanner.commands.reproduce import output_dir


def parse(*argv: str):
    return build_parser().parse_args(["reproduce", "batch-size", *argv])


def test_default_output_is_not_the_committed_experiments_folder():
    for model in ("minialexnet", "mlp3"):
        out = output_dir(parse("--model", model))
        assert out == Path("results") / f"batch_size_{model}"
        assert "experiments" not in out.parts


def test_explicit_output_is_kept():
    assert output_dir(parse("--out", "experiments/batch_size")) == Path("experiments/batch_size")
