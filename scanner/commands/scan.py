"""``zooscan scan``: scan a catalog (or model ids) on Ray, or serially, into a results directory."""

from __future__ import annotations

import argparse
import hashlib
import sys
from typing import Any

EPILOG = """examples:
  zooscan scan catalogs/cifar10_resnet.csv --results results            # a local Ray of its own
  zooscan scan --models random:timm/resnet18 timm:resnet50.a1_in1k --results results --serial
  zooscan scan timm_imagenet --results results --address HEAD:6379 --device cuda --timeout-per-model 900
  zooscan scan timm_imagenet --results results --scan-id s-imagenet-1 --retry-failed   # resume, redo failures

Rerunning the same command resumes: models whose models/ row is committed are skipped. Without --scan-id the
scan id is derived from the options and the model list, so an identical rerun finds the same folder. Only
this process writes results (workers send them back), so cluster nodes need no shared filesystem.
Failed models are rows (status failed, error_class, reason): query them with
  zooscan query status_overview --results results
Exit status: 0 when the scan finished with at most --max-failed-fraction of its models failed (default 0),
3 when more failed, 130 after Ctrl-C (committed models stay; rerun to resume), 1 on a setup error (no catalog
or models, or a catalog, model id, results folder, Ray cluster or option value it cannot use), 2 when the
arguments do not parse.
"""


def add_cache_arguments(parser: argparse.ArgumentParser, *, scan: bool = True) -> None:
    """--cache-dir (and, for scan, --cache-max-gb, --keep-weights, --prefetch): ``scanner.cache_cli``."""
    from scanner.cache_cli import add_cache_arguments as add

    add(parser, scan=scan)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``ScanConfig`` options (all but --device and --threads change results); shared with ``zooscan analyze``."""
    from scanner.config import CONV_MODES, DEVICES, FIT_MODES, QKV_MODES

    parser.add_argument("--fit", choices=FIT_MODES, default="robust",
                        help="power-law fit: robust (default) or reference (weightwatcher 0.7.7's alpha)")
    parser.add_argument("--conv", choices=CONV_MODES, default="pooled",
                        help="conv kernels: one pooled ESD per layer (default) or one per kernel position")
    parser.add_argument("--qkv", choices=QKV_MODES, default="split",
                        help="fused attention projections (qkv, c_attn, in_proj): split into q, k, v (default) or "
                             "analysed as one matrix, as weightwatcher does (with --fit reference: a row for every layer it fits)")
    parser.add_argument("--no-randomize", dest="randomize", action="store_false",
                        help="skip the shuffled-matrix test (about halves the eigenvalue work)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle (default 0)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where eigenvalues are computed: auto (GPU if present), cpu or cuda")
    parser.add_argument("--max-layer-bytes", type=int, default=2 << 30, metavar="B",
                        help="skip tensors whose declared size exceeds B bytes, before reading them (default 2 GiB)")
    parser.add_argument("--min-evals", type=int, default=10, metavar="N",
                        help="skip layers with fewer than N eigenvalues, too few for a spectral fit (default 10)")
    parser.add_argument("--max-evals", type=int, default=None, metavar="N",
                        help="skip layers with more than N eigenvalues (checked from the shape first; default none)")
    parser.add_argument("--threads", type=int, default=0, metavar="N",
                        help="CPU layers solved at once per model (default 0: $OMP_NUM_THREADS, else all CPUs; "
                             "does not change results)")


def config_from_args(args: argparse.Namespace) -> Any:
    from scanner.cache_cli import cache_options
    from scanner.config import ScanConfig

    return ScanConfig(fit=args.fit, conv=args.conv, qkv=args.qkv, randomize=args.randomize, seed=args.seed, device=args.device,
                      threads=args.threads, max_layer_bytes=args.max_layer_bytes, min_evals=args.min_evals,
                      max_evals=args.max_evals,
                      **cache_options(args))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("catalog", nargs="?", help="catalog name (catalogs/<name>.csv) or a CSV path")
    parser.add_argument("--models", nargs="+", metavar="ID", default=[],
                        help="model ids to scan (timm:…, hf:…, file:…, random:timm/…), instead of or with a catalog")
    parser.add_argument("--results", required=True, metavar="DIR", help="results root; the scan goes to DIR/<scan-id>/")
    parser.add_argument("--scan-id", metavar="ID", help="scan folder name (default: derived from options and models)")
    ray_group = parser.add_argument_group("execution")
    ray_group.add_argument("--address", help="Ray cluster to join (auto, host:port, ray://…); default: a local Ray "
                                             "of its own (never a 'ray start' cluster found on this machine)")
    ray_group.add_argument("--num-cpus", type=int, metavar="N", help="CPUs of the local Ray (default: all)")
    ray_group.add_argument("--num-gpus", type=float, metavar="N", help="GPUs of the local Ray (default: detected)")
    ray_group.add_argument("--max-in-flight", type=int, metavar="N",
                           help="models submitted and unfinished at most (default: 2 per spectrum worker)")
    ray_group.add_argument("--timeout-per-model", type=float, metavar="S",
                           help="abandon a model after S seconds as failed and stop its worker (default: none; "
                                "with --serial each model then runs in a child process)")
    ray_group.add_argument("--wait-for-gpus", type=float, metavar="S", default=600.0,
                           help="wait up to S seconds for a node able to compute, e.g. the first GPU node of an "
                                "autoscaling cluster with --device cuda (default 600)")
    ray_group.add_argument("--stall-minutes", type=float, metavar="M", default=2.0,
                           help="print a heartbeat naming the models in flight after M minutes without a "
                                "finished model (default 2)")
    ray_group.add_argument("--max-failed-fraction", type=float, metavar="F", default=0.0,
                           help="exit 3 when more than this fraction of the scan's models failed (default 0)")
    ray_group.add_argument("--serial", action="store_true", help="no Ray: one model after another on this machine")
    ray_group.add_argument("--no-handover", dest="handover", action="store_false",
                           help="with a local Ray: start it at once and compute nothing in this process (by "
                                "default the first models are scanned here until Ray's workers are up, and Ray is "
                                "not started at all when the models still waiting would take under about 12 s here)")
    ray_group.add_argument("--retry-failed", action="store_true", help="also redo models an earlier run recorded as failed")
    add_config_arguments(parser)
    add_cache_arguments(parser)


def default_scan_id(config_hash: str, model_ids: list[str]) -> str:
    """``scan-<config hash>-<8 hex of the model list>``: the same command resumes the same folder."""
    digest = hashlib.sha256("\n".join(model_ids).encode()).hexdigest()[:8]
    return f"scan-{config_hash}-{digest}"


def run(args: argparse.Namespace) -> int:
    import os

    from scanner import runner
    from scanner.catalog import load_catalog
    from scanner.errors import ScannerError
    from scanner.faults import FAULT_DIR_ENV, FAULTS_ENV, LOGICAL_GPUS_ENV, parse_faults

    try:
        config = config_from_args(args)
        model_ids = list(args.models)
        catalog_info: dict[str, Any] = {"path": args.catalog or "", "models_arg": len(args.models)}
        if args.catalog:
            model_ids = [entry.model_id for entry in load_catalog(args.catalog)] + model_ids
        if not model_ids:
            print("error: give a catalog or --models ID ...; see zooscan ls for the shipped catalogs", file=sys.stderr)
            return 1
        if args.scan_id is not None and not args.scan_id.strip():
            print("error: --scan-id is empty; give a name, or leave the option out for an id derived from the options "
                  "and models", file=sys.stderr)
            return 1
        catalog_info["n_models"] = len(model_ids)
        catalog_info["models_sha256"] = hashlib.sha256("\n".join(model_ids).encode()).hexdigest()
        options = runner.RunOptions(
            results=args.results, scan_id=args.scan_id or default_scan_id(config.config_hash(), model_ids),
            address=args.address, num_cpus=args.num_cpus, num_gpus=args.num_gpus, max_in_flight=args.max_in_flight,
            timeout_per_model=args.timeout_per_model, retry_failed=args.retry_failed,
            wait_for_gpus=args.wait_for_gpus, stall_s=60.0 * args.stall_minutes,
            max_failed_fraction=args.max_failed_fraction, faults=parse_faults(os.environ.get(FAULTS_ENV)),
            fault_dir=os.environ.get(FAULT_DIR_ENV, ""), logical_gpus=os.environ.get(LOGICAL_GPUS_ENV) == "1",
            handover=args.handover)
        print(f"scan {options.scan_id}: {len(model_ids)} models -> {args.results.rstrip('/')}/{options.scan_id}",
              file=sys.stderr)
        if args.serial:
            stats = runner.run_serial(model_ids, config, options, catalog_info=catalog_info, stream=sys.stderr)
        else:
            from scanner.distributed import run_ray

            stats = run_ray(model_ids, config, options, catalog_info=catalog_info, stream=sys.stderr)
    except runner.ScanInterrupted as stop:
        print(stop.stats.summary_line(options.scan_id), flush=True)
        sys.stderr.flush()
        os._exit(runner.EXIT_INTERRUPTED)  # not sys.exit: a running eigensolve's threads would be waited for
    except ScannerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(stats.summary_line(options.scan_id))
    return stats.exit_status
