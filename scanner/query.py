"""DuckDB over a results directory: views, catalogs, and the named SQL files of ``queries/``.

``connect(root)`` opens an in-memory DuckDB with these views:

- ``layers``, ``models``, ``spectra``: the rows each scan holds (``scanner.storage_layout``: per-model
  files of committed models, compacted rows of the others), read as Arrow datasets with the current schema
  (older scans get NULLs for new columns) and combined with ``UNION ALL BY NAME``; built by
  ``scanner.storage_views``, which skips files that cannot be read (with a warning naming them) and labels
  rows with their scan folder's name. When no file exists yet, the view is an empty table with the current
  schema, so every query still binds.
- ``catalog``: every ``catalogs/*.csv`` (validated by ``scanner.catalog``), one row per ``model_id``.
- ``models_with_accuracy``: ``models`` left-joined with ``catalog`` (family, dataset, top1, top5).
- ``layers_family``: ``layers`` with the model's catalog family (the id's source prefix when not in a
  catalog).
- ``layers_with_family``: ``layers_family`` with each layer's relative depth ``(layer_index + 0.5) / n``,
  ``n`` the model's layer rows (DuckDB does not drop an unused join, so queries without depth use
  ``layers_family``).

SQL files in ``queries/`` hold one statement with a header comment::

    -- name: phase_by_model
    -- purpose: one line
    -- param: scan_id = NULL  -- a scan id, or NULL for every scan
    -- output: model_id, n_layers, ...

and refer only to the views above. ``run_query`` binds ``$name`` parameters (defaults from the header).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from scanner import catalog as catalog_mod
from scanner import schema
from scanner import storage_views as scan_views
from scanner.errors import QueryError, StoreError
from scanner.storage import open_storage
from scanner.storage_verify import check_root

logger = logging.getLogger(__name__)

QUERIES_DIR = Path(__file__).resolve().parents[1] / "queries"

_JOINED_VIEWS = """
CREATE OR REPLACE VIEW models_with_accuracy AS
SELECT m.*, c.family, c.dataset, c.top1, c.top5, c.num_params AS catalog_num_params
FROM models AS m LEFT JOIN catalog AS c USING (model_id);

CREATE OR REPLACE VIEW layers_family AS
SELECT l.*, coalesce(c.family, split_part(l.model_id, ':', 1)) AS family
FROM layers AS l LEFT JOIN catalog AS c USING (model_id);

CREATE OR REPLACE VIEW layers_with_family AS  -- depth by a join on per-model counts: a window over l.* was 1.7x slower
SELECT l.*, (l.layer_index + 0.5) / n.n_layers AS depth
FROM layers_family AS l
LEFT JOIN (SELECT scan_id, model_id, count(*) AS n_layers FROM layers GROUP BY scan_id, model_id) AS n
  USING (scan_id, model_id);  -- LEFT: the rows of an inner join (every layer's model has a count), planned cheaper
"""


def catalog_table(catalogs_dir: str | os.PathLike[str] | None = None) -> pa.Table:
    """All catalogs of ``catalogs_dir`` (default: the repository's ``catalogs/``) as one Arrow table."""
    folder = Path(catalogs_dir) if catalogs_dir is not None else catalog_mod.CATALOGS_DIR
    entries = [e for path in sorted(folder.glob("*.csv")) for e in catalog_mod.load_catalog(path)]
    catalog_mod.check_unique(entries, f"the catalogs in {folder}")
    types = {
        "top1": pa.float64(), "top5": pa.float64(), "num_params": pa.int64(), "img_size": pa.int32(),
    }
    arrow_schema = pa.schema([(c, types.get(c, pa.string())) for c in catalog_mod.COLUMNS])
    rows = [{c: getattr(e, c) for c in catalog_mod.COLUMNS} for e in entries]
    return pa.Table.from_pylist(rows, schema=arrow_schema)


def connect(
    results_root: str | os.PathLike[str],
    *,
    scan_id: str | None = None,
    catalogs_dir: str | os.PathLike[str] | None = None,
    threads: int | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the views described in the module docstring.

    Args:
        results_root: the location holding ``<scan_id>/`` folders: a folder, a mounted folder, or an
            object-store URI (read through ``pyarrow.fs``; no DuckDB extension is downloaded).
        scan_id: restrict the views to one scan (default: every scan under the root).
        catalogs_dir: folder of catalog CSVs (default: the repository's ``catalogs/``).
        threads: DuckDB worker threads (default: DuckDB's choice).

    Raises:
        StoreError: ``results_root`` (or the named scan) does not exist, is a file, or is a scan folder.
    """
    storage = open_storage(results_root)
    check_root(storage, str(storage))
    scans = storage.list_dirs(storage.root)
    if scan_id is not None and scan_id not in scans:
        raise StoreError(f"no scan {scan_id!r} under {storage}; scans there: {scans or 'none'}")
    con = duckdb.connect(":memory:")
    con.execute("SET parquet_metadata_cache = true")  # footers read once per connection, not once per query
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    selects = scan_views.register_scans(con, storage, [scan_id] if scan_id else scans)
    for table, table_schema in schema.SCHEMAS.items():
        if selects[table]:
            con.execute(f"CREATE VIEW {table} AS " + "\nUNION ALL BY NAME\n".join(selects[table]))
        else:
            logger.info("no %s files under %s: the %s view is empty", table, storage, table)
            con.register(f"_empty_{table}", table_schema.empty_table())
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM _empty_{table}")
    con.register("_catalog", catalog_table(catalogs_dir))
    con.execute("CREATE VIEW catalog AS SELECT * FROM _catalog")
    con.execute(_JOINED_VIEWS)
    return con


@dataclass(frozen=True)
class QueryParam:
    """A ``$name`` parameter of a SQL file: its default (a SQL literal, None for NULL) and help text."""

    name: str
    default: str | None
    help: str


@dataclass(frozen=True)
class QueryInfo:
    """A parsed SQL file of ``queries/``."""

    name: str
    path: Path
    purpose: str
    params: tuple[QueryParam, ...]
    outputs: tuple[str, ...]
    sql: str


_PARAM = re.compile(r"^(?P<name>\w+)\s*=\s*(?P<default>.*?)\s*(?:--\s*(?P<help>.*))?$")


def parse_query(path: str | os.PathLike[str]) -> QueryInfo:
    """Parse the header comment (purpose, param, output lines) of one SQL file.

    Raises:
        QueryError: the header lacks ``purpose`` or ``output``, or a ``$parameter`` used in the SQL is
            not declared (or one declared is not used).
    """
    path = Path(path)
    text = path.read_text()
    purpose, outputs, params = "", [], []
    for line in text.splitlines():
        if not line.startswith("--"):
            continue
        key, _, value = line[2:].strip().partition(":")
        value = value.strip()
        if key == "purpose":
            purpose = value
        elif key == "output":
            outputs += [c.strip() for c in value.split(",") if c.strip()]
        elif key == "param":
            match = _PARAM.match(value)
            if not match:
                raise QueryError(f"{path}: bad param line {line!r}; write '-- param: name = default  -- help'")
            default = match["default"]
            params.append(QueryParam(match["name"], None if default.upper() == "NULL" else default, match["help"] or ""))
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    used = set(re.findall(r"\$(\w+)", body))
    declared = {p.name for p in params}
    if not purpose or not outputs or used != declared:
        raise QueryError(
            f"{path}: header must give '-- purpose:', '-- output:' and one '-- param:' per $parameter; "
            f"used {sorted(used)}, declared {sorted(declared)}"
        )
    return QueryInfo(path.stem, path, purpose, tuple(params), tuple(outputs), text)


def list_queries(folder: str | os.PathLike[str] | None = None) -> list[QueryInfo]:
    """Every ``*.sql`` file of ``folder`` (default: the repository's ``queries/``), parsed, by name."""
    return [parse_query(p) for p in sorted(Path(folder or QUERIES_DIR).glob("*.sql"))]


def _literal(value: str | None) -> Any:
    """A header default or a --param value (text) as a Python value: NULL, int, float or string."""
    if value is None or value.upper() == "NULL":
        return None
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def find_query(name: str, folder: str | os.PathLike[str] | None = None) -> QueryInfo:
    """The query called ``name`` (a file stem), or QueryError listing the available ones."""
    queries = {q.name: q for q in list_queries(folder)}
    if name not in queries:
        raise QueryError(f"no query named {name!r}; available: {', '.join(queries) or 'none'}")
    return queries[name]


def run_query(
    con: duckdb.DuckDBPyConnection,
    name: str,
    params: dict[str, Any] | None = None,
    *,
    folder: str | os.PathLike[str] | None = None,
) -> duckdb.DuckDBPyRelation:
    """Execute query ``name`` with ``$parameters`` bound (header defaults fill the ones not given).

    String values such as CLI ``k=v`` pairs are converted: ``NULL`` → None, numbers → int/float.

    Returns:
        A DuckDB relation: ``fetchall()``, ``to_arrow_table()``, ``df()``, ``columns``.

    Raises:
        QueryError: unknown query or a parameter the query does not declare.
    """
    return con.sql(find_query(name, folder).sql, params=bind_params(name, params, folder=folder))


def bind_params(name: str, params: dict[str, Any] | None = None, *,
                folder: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Every ``$parameter`` of query ``name`` as :func:`run_query` binds it: the given value converted
    (:func:`_bound`), else the header's default.

    Raises:
        QueryError: unknown query, a parameter the query does not declare, or a value of the wrong type.
    """
    info = find_query(name, folder)
    given = dict(params or {})
    unknown = sorted(set(given) - {p.name for p in info.params})
    if unknown:
        declared = ", ".join(f"{p.name} (default {p.default})" for p in info.params) or "none"
        raise QueryError(f"query {name!r} has no parameter(s) {unknown}; its parameters: {declared}")
    return {p.name: _bound(name, p, given[p.name]) if p.name in given else _literal(p.default) for p in info.params}


def _bound(query: str, param: QueryParam, value: Any) -> Any:
    """A given parameter value as the type of the header's default: a number where the default is one
    (``bins=abc`` is refused here, not by DuckDB's binder), text where it is text or NULL (``scan_id=nan`` and
    ``metric=5`` stay text); NULL is passed on (a query that cannot use it says so)."""
    default = _literal(param.default)
    literal = _literal(value) if isinstance(value, str) else value
    if literal is None:
        return None
    if isinstance(default, int | float):
        if isinstance(literal, str) or isinstance(default, int) and isinstance(literal, float):
            kind = "an integer" if isinstance(default, int) else "a number"
            raise QueryError(f"query {query!r}: {param.name} must be {kind} (default {param.default}); got {value!r}")
        return literal
    if isinstance(value, str) and not isinstance(literal, str):  # text expected: keep what was typed
        return value.strip()
    return literal
