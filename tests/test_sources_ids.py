"""Model ids: one parser, canonical ids, filesystem-safe keys, errors that list the valid forms."""

from __future__ import annotations

import pytest

from scanner.errors import ModelIdError
from scanner.sources import open_source, parse_model_id


@pytest.mark.parametrize(
    ("text", "source", "name", "revision", "options"),
    [
        ("timm:resnet50.a1_in1k", "timm", "resnet50.a1_in1k", None, ()),
        ("timm:resnet50.a1_in1k?file=/tmp/w.pth", "timm", "resnet50.a1_in1k", None, (("file", "/tmp/w.pth"),)),
        ("hf:sentence-transformers/all-MiniLM-L6-v2", "hf", "sentence-transformers/all-MiniLM-L6-v2", None, ()),
        ("hf:org/name@v1.0", "hf", "org/name", "v1.0", ()),
        ("hf:gpt2", "hf", "gpt2", None, ()),
        ("file:ckpt/model.safetensors", "file", "ckpt/model.safetensors", None, ()),
        ("random:timm/resnet18?seed=3", "random", "timm/resnet18", None, (("seed", "3"),)),
        ("random:transformers/bert?num_hidden_layers=2&hidden_size=64", "random", "transformers/bert", None,
         (("hidden_size", "64"), ("num_hidden_layers", "2"))),
    ],
)
def test_parse_model_id_fields(text: str, source: str, name: str, revision: str | None, options: tuple) -> None:
    ref = parse_model_id(text)
    assert (ref.source, ref.name, ref.revision, ref.options) == (source, name, revision, options)


@pytest.mark.parametrize(
    "text",
    ["timm:resnet50.a1_in1k", "hf:org/name@rev", "file:/abs/path/x.pt", "random:timm/resnet50",
     "random:transformers/bert", "random:transformers/bert?hidden_size=64&seed=1"],
)
def test_model_id_round_trips(text: str) -> None:
    assert parse_model_id(text).model_id == text
    assert parse_model_id(parse_model_id(text).model_id) == parse_model_id(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("foo:bar", "unknown prefix 'foo'"),
        ("/data/model.safetensors", 'prefix it with "file:"'),
        ("model.pt", 'prefix it with "file:"'),
        ("hf-hub:org/name", 'use "hf:"'),
        ("timm:", "nothing after"),
        ("hf:org/name/extra", "<org>/<name>"),
        ("random:keras/resnet", "not a valid random name"),
        ("random:timm/resnet?seed", "not key=value"),
    ],
)
def test_bad_ids_raise_with_the_valid_forms(text: str, expected: str) -> None:
    with pytest.raises(ModelIdError) as info:
        parse_model_id(text)
    message = str(info.value)
    assert expected in message
    assert "timm:resnet50.a1_in1k" in message and "file:" in message and "random:timm/" in message


def test_open_source_refuses_module_ids_and_other_objects() -> None:
    with pytest.raises(ModelIdError, match="pass the torch.nn.Module object"):
        open_source("module:MyNet")
    with pytest.raises(TypeError, match="model id, a ModelRef or a torch.nn.Module"):
        open_source(42)  # type: ignore[arg-type]


def test_importing_sources_and_layers_loads_no_framework() -> None:
    import subprocess
    import sys

    heavy = "('torch', 'timm', 'transformers', 'safetensors', 'huggingface_hub')"
    code = f"import sys, scanner.sources, scanner.layers; print([m for m in {heavy} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_sources_come_from_one_table_with_valid_examples() -> None:
    from scanner import catalog, sources

    assert catalog.SOURCES == sources.SOURCE_PREFIXES == tuple(s.prefix for s in sources.SOURCES)
    for source in sources.SOURCES:
        ref = parse_model_id(source.example)
        assert ref.source == source.prefix
        assert source.example in "\n".join(sources.VALID_FORMS)
        module, _, function = source.opener.partition(":")
        assert module.startswith("scanner.sources.") and function


@pytest.mark.parametrize("alias", ["file:a/../a/x.safetensors", "file:a//x.safetensors", "file:./a/x.safetensors",
                                   "file:a/./x.safetensors"])
def test_file_aliases_canonicalise_to_one_id(alias: str) -> None:
    """D9: aliases of one file passed the catalog duplicate check and became separate models."""
    assert parse_model_id(alias).model_id == "file:a/x.safetensors"
