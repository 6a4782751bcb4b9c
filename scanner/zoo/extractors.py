"""Extractors: how the members of a package become weight files. One registration table, ``EXTRACTORS``.

An extractor gets the row, a function that opens a member (``open_member(name)``, a context manager giving a
binary stream; ``<package>!<path>`` names a member of another package of a multi-part row) and an empty
folder; it writes exactly the row's ``files`` there. It never imports or runs anything from the package: the
``nsfwjs`` one parses JavaScript object literals with ``js_literal`` instead of evaluating them.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO

from scanner.errors import SourceError
from scanner.zoo.catalog import ZooRow

OpenMember = Callable[[str], AbstractContextManager[IO[bytes]]]
Extractor = Callable[[ZooRow, OpenMember, Path], None]


def _argument(row: ZooRow) -> str:
    return row.extractor.partition(":")[2]


def _out(folder: Path, name: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def copy(row: ZooRow, open_member: OpenMember, folder: Path) -> None:
    """``files[i]`` is the bytes of ``members[i]`` (the common case)."""
    if len(row.members) != len(row.files):
        raise SourceError(f"{row.model_id}: copy needs one file per member ({len(row.members)} members, "
                          f"{len(row.files)} files)")
    for member, name in zip(row.members, row.files, strict=True):
        with open_member(member) as src, open(_out(folder, name), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


def concat(row: ZooRow, open_member: OpenMember, folder: Path) -> None:
    """``files[0]`` is the members concatenated in order (a model split into chunks)."""
    with open(_out(folder, row.files[0]), "wb") as dst:
        for member in row.members:
            with open_member(member) as src:
                shutil.copyfileobj(src, dst, 1 << 20)


def _inner_archive(row: ZooRow, open_member: OpenMember) -> IO[bytes]:
    buffer = io.BytesIO()
    for member in row.members:
        with open_member(member) as src:
            shutil.copyfileobj(src, buffer, 1 << 20)
    buffer.seek(0)
    return buffer


def zip_parts(row: ZooRow, open_member: OpenMember, folder: Path) -> None:
    """The members concatenated form one zip (a multi-part archive); ``files`` are paths inside it under
    the folder given as the argument (``zip_parts:all-mpnet-base-v2``)."""
    prefix = _argument(row)
    with zipfile.ZipFile(_inner_archive(row, open_member)) as zf:
        for name in row.files:
            inner = f"{prefix}/{name}" if prefix else name
            with zf.open(inner) as src, open(_out(folder, name), "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)


def tar_member(row: ZooRow, open_member: OpenMember, folder: Path) -> None:
    """The (single) member is a tar archive; ``files`` are paths inside it under the argument folder."""
    prefix = _argument(row)
    with tarfile.open(fileobj=_inner_archive(row, open_member), mode="r:*") as tf:
        for name in row.files:
            inner = f"{prefix}/{name}" if prefix else name
            try:
                src = tf.extractfile(inner)
            except KeyError:
                src = None
            if src is None:
                raise SourceError(f"{row.model_id}: {inner!r} is not a file in {row.members[0]}")
            with open(_out(folder, name), "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)


def tfjs_manifest(row: ZooRow, open_member: OpenMember, folder: Path) -> None:
    """A TF.js weights manifest without a model.json (face-api ships ``*-weights_manifest.json``, the bare
    list of weight groups): ``files[0]`` is written as the model.json ``{"weightsManifest": <that list>}``
    (sorted keys), the other members (the shards) are copied to the other files."""
    with open_member(row.members[0]) as src:
        manifest = json.load(src)
    _out(folder, row.files[0]).write_text(json.dumps({"weightsManifest": manifest}, sort_keys=True),
                                          encoding="utf-8")
    for member, name in zip(row.members[1:], row.files[1:], strict=True):
        with open_member(member) as src, open(_out(folder, name), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


_EXPORTS = re.compile(rb"exports=(?=[{\"])")


def nsfwjs(row: ZooRow, open_member: OpenMember, folder: Path) -> None:
    """nsfwjs ships each TF.js model as browserify bundles: ``model.min.js`` holds the model.json as a
    JavaScript object literal after ``exports=``, each ``group1-shard*.min.js`` a base64 string of the
    shard. Members map to files in order: ``model.min.js`` → ``model.json``, a shard → its decoded bytes."""
    for member, name in zip(row.members, row.files, strict=True):
        with open_member(member) as src:
            text = src.read()
        match = _EXPORTS.search(text)
        if match is None:
            raise SourceError(f"{row.model_id}: no 'exports=' in {member}; nsfwjs changed its bundle layout")
        body = text[match.end():].decode("utf-8")
        if body.startswith('"'):
            payload = base64.b64decode(body[1:body.index('"', 1)], validate=True)
            _out(folder, name).write_bytes(payload)
        else:
            value, _ = js_literal(body, 0)
            _out(folder, name).write_text(json.dumps(value, sort_keys=True), encoding="utf-8")


_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


def js_literal(text: str, pos: int) -> tuple[object, int]:
    """Parse one JavaScript literal (object, array, string, number, ``!0``/``!1``, true/false/null) at
    ``pos``; return it and the position after it. Keys may be bare identifiers. Nothing is evaluated."""
    if text[pos] == "{":
        return _js_object(text, pos + 1)
    if text[pos] == "[":
        items: list[object] = []
        pos += 1
        while text[pos] != "]":
            item, pos = js_literal(text, pos)
            items.append(item)
            pos += text[pos] == ","
        return items, pos + 1
    if text[pos] == '"':
        end = pos + 1
        while text[end] != '"':
            end += 2 if text[end] == "\\" else 1
        return json.loads(text[pos:end + 1]), end + 1
    return _js_scalar(text, pos)


def _js_object(text: str, pos: int) -> tuple[dict[str, object], int]:
    result: dict[str, object] = {}
    while text[pos] != "}":
        if text[pos] == '"':
            key, pos = js_literal(text, pos)
        else:
            match = _IDENT.match(text, pos) or _NUMBER.match(text, pos)
            if match is None:
                raise SourceError(f"unexpected {text[pos:pos + 20]!r} in a JavaScript object key")
            key, pos = match.group(), match.end()
        if text[pos] != ":":
            raise SourceError(f"expected ':' at {text[pos:pos + 20]!r}")
        result[str(key)], pos = js_literal(text, pos + 1)
        pos += text[pos] == ","
    return result, pos + 1


def _js_scalar(text: str, pos: int) -> tuple[object, int]:
    if text.startswith("!0", pos) or text.startswith("!1", pos):
        return text[pos + 1] == "0", pos + 2
    for word, value in (("true", True), ("false", False), ("null", None)):
        if text.startswith(word, pos):
            return value, pos + len(word)
    match = _NUMBER.match(text, pos)
    if match is None:
        raise SourceError(f"unexpected {text[pos:pos + 20]!r} in a JavaScript literal")
    number = match.group()
    return (int(number) if re.fullmatch(r"-?\d+", number) else float(number)), match.end()


EXTRACTORS: dict[str, Extractor] = {
    "copy": copy,
    "concat": concat,
    "zip_parts": zip_parts,
    "tar_member": tar_member,
    "nsfwjs": nsfwjs,
    "tfjs_manifest": tfjs_manifest,
}


def extractor_for(row: ZooRow) -> Extractor:
    """The extractor named by the row (the part before ``:``)."""
    name = row.extractor.partition(":")[0]
    try:
        return EXTRACTORS[name]
    except KeyError:
        raise SourceError(f"{row.model_id}: unknown extractor {name!r}; known: {', '.join(EXTRACTORS)}") from None
