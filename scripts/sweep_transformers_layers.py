"""Sweep transformers architectures (random init from a tiny config) through scanner.layers; one CSV row each.

Usage:
    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python scripts/sweep_transformers_layers.py \
        --out bench/results/transformers_layer_sweep.csv

Every model type in MODEL_TYPES is built with ``random:transformers/<type>?<TINY>`` (the tiny overrides are
ignored by configs that do not have those keys, e.g. vision CNNs and composite models, which keep their
defaults). Models whose meta-device parameter count exceeds --max-params are listed, not built.
If the tiny config is rejected, the type's default config is used (column "config").
Columns as in sweep_timm_layers.py (arch is the model type), plus config.
"""

from __future__ import annotations

import argparse
import csv
import logging
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sweep_timm_layers import FIELDS, _alarm, _Timeout, census

from scanner.sources import parse_model_id

TINY = "hidden_size=64&num_hidden_layers=2&num_attention_heads=4&intermediate_size=128&vocab_size=1000"
MODEL_TYPES = [
    "albert", "bart", "bert", "big_bird", "blenderbot", "bloom", "camembert", "clip", "codegen", "convbert",
    "convnext", "ctrl", "deberta", "deberta-v2", "deit", "dinov2", "distilbert", "electra", "efficientnet",
    "falcon", "funnel", "gemma", "gemma2", "gpt2", "gpt_bigcode", "gpt_neo", "gpt_neox", "gptj", "layoutlm",
    "levit", "llama", "longformer", "m2m_100", "mamba", "marian", "mbart", "mistral", "mixtral", "mobilebert",
    "mobilevit", "mpnet", "mpt", "mt5", "opt", "pegasus", "phi", "phi3", "poolformer", "qwen2", "qwen2_moe",
    "regnet", "resnet", "roberta", "rwkv", "segformer", "siglip", "squeezebert", "swin", "t5", "vit", "wav2vec2",
    "whisper", "xlm-roberta", "xlnet", "yolos",
]


def meta_params(model_id: str) -> int:
    import torch
    from transformers import AutoConfig, AutoModel

    from scanner.sources.synthetic import _parse_value

    ref = parse_model_id(model_id)
    overrides = {k: _parse_value(v) for k, v in ref.options if k != "seed"}
    config = AutoConfig.for_model(ref.name.split("/", 1)[1], **overrides)
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    return sum(p.numel() for p in model.parameters())


def sweep_one(model_type: str, max_params: float, timeout: int) -> dict[str, object]:
    """Census with the tiny config; if that config is rejected, with the type's default config."""
    row: dict[str, object] = {"arch": model_type}
    start = time.perf_counter()
    signal.alarm(timeout)
    try:
        for config, model_id in (("tiny", f"random:transformers/{model_type}?{TINY}"),
                                 ("default", f"random:transformers/{model_type}")):
            row["config"] = config
            try:
                row["params"] = meta_params(model_id)
            except Exception as exc:  # a config that rejects the tiny sizes: try the default
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                continue
            row.pop("error", None)
            if row["params"] > max_params:
                row["error"] = f"not built: {row['params']} params > --max-params {max_params:.0f}"
            else:
                row.update(census(model_id))
            break
    except _Timeout:
        row["error"] = f"timeout after {timeout} s"
    except Exception as exc:  # record and go on
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    finally:
        signal.alarm(0)
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-params", type=float, default=300e6)
    parser.add_argument("--timeout", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("bench/results/transformers_layer_sweep.csv"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.ERROR)
    signal.signal(signal.SIGALRM, _alarm)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, [*FIELDS, "config"])
        writer.writeheader()
        for i, model_type in enumerate(MODEL_TYPES):
            row = sweep_one(model_type, args.max_params, args.timeout)
            writer.writerow(row)
            handle.flush()
            print(f"[{i + 1}/{len(MODEL_TYPES)}] {model_type}: {row.get('n_layers', '-')} layers "
                  f"{row.get('error', '')}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
