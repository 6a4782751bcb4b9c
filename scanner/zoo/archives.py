"""Read members of a downloaded package without unpacking it to disk or running anything in it.

Member names are normalised so that catalogs do not depend on the archive's top folder:

- wheel (``.whl``, a zip): the path inside the zip (``silero_vad/data/silero_vad.onnx``);
- sdist and npm tarball (``.tar.gz`` / ``.tgz``): the path without its first component (``pkg-1.0/`` or
  npm's ``package/``);
- Debian package (``.deb``, an ``ar`` archive): the path inside ``data.tar.{xz,gz,bz2}`` without ``./``.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from scanner.errors import SourceError


class Archive:
    """Members of one downloaded package file, by normalised name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        name = path.name
        if name.endswith((".whl", ".zip")):
            self._kind = "zip"
        elif name.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")):
            self._kind = "tar"
        elif name.endswith(".deb"):
            self._kind = "deb"
        else:
            raise SourceError(f"{path}: unknown package file type; expected .whl, .tar.gz, .tgz or .deb")

        self._tar_index: tuple[tarfile.TarFile, dict[str, tarfile.TarInfo]] | None = None

    def names(self) -> list[str]:
        """Normalised member names (files only)."""
        if self._kind == "zip":
            with zipfile.ZipFile(self.path) as zf:
                return [i.filename for i in zf.infolist() if not i.is_dir()]
        return list(self._tar_members()[1])

    @contextmanager
    def open(self, member: str) -> Iterator[IO[bytes]]:
        """A binary stream of one member.

        Raises:
            SourceError: the member is not in the archive (the message lists near names).
        """
        if self._kind == "zip":
            with zipfile.ZipFile(self.path) as zf:
                try:
                    info = zf.getinfo(member)
                except KeyError:
                    raise self._missing(member) from None
                with zf.open(info) as handle:
                    yield handle
            return
        tf, members = self._tar_members()
        if member not in members:
            raise self._missing(member)
        extracted = tf.extractfile(members[member])
        assert extracted is not None
        yield extracted

    def read(self, member: str) -> bytes:
        with self.open(member) as handle:
            return handle.read()

    def copy(self, member: str, dest: IO[bytes]) -> None:
        with self.open(member) as handle:
            shutil.copyfileobj(handle, dest, 1 << 20)

    def _missing(self, member: str) -> SourceError:
        stem = Path(member).name
        near = [n for n in self.names() if Path(n).name == stem][:3]
        hint = f"; same file name at {near}" if near else ""
        return SourceError(f"{self.path.name} has no member {member!r}{hint}: the package changed, fix the row")

    def _tar_name(self, name: str) -> str:
        name = name.removeprefix("./")
        if self._kind == "deb":
            return name
        return name.split("/", 1)[1] if "/" in name else name

    def _tar_members(self) -> tuple[tarfile.TarFile, dict[str, tarfile.TarInfo]]:
        """The tar decompressed once into an anonymous temporary file (random access to every member
        afterwards: a compressed tar would be decompressed from the start for each member)."""
        if self._tar_index is None:
            tf = tarfile.open(fileobj=_decompressed(self.path, self._kind), mode="r:")  # noqa: SIM115 (kept open)
            members = {self._tar_name(m.name): m for m in tf.getmembers() if m.isfile()}
            self._tar_index = (tf, members)
        return self._tar_index


def _decompressed(path: Path, kind: str) -> IO[bytes]:
    """An anonymous temporary file holding the uncompressed tar of a .tar.* package or of a .deb's data."""
    import bz2
    import gzip
    import lzma

    raw: IO[bytes] = io.BytesIO(_deb_data(path)) if kind == "deb" else open(path, "rb")  # noqa: SIM115
    with raw:
        magic = raw.read(6)
        raw.seek(0)
        if magic[:2] == b"\x1f\x8b":
            stream: IO[bytes] = gzip.GzipFile(fileobj=raw)  # type: ignore[assignment]
        elif magic[:3] == b"BZh":
            stream = bz2.BZ2File(raw)
        elif magic == b"\xfd7zXZ\x00":
            stream = lzma.LZMAFile(raw)  # noqa: SIM115 (closed with raw)
        else:
            stream = raw
        plain = tempfile.TemporaryFile()  # noqa: SIM115 (returned; removed when closed)
        shutil.copyfileobj(stream, plain, 1 << 20)
    plain.seek(0)
    return plain


def _deb_data(path: Path) -> bytes:
    """The ``data.tar.*`` member of a Debian ``ar`` archive (format: 8-byte magic, 60-byte headers)."""
    with open(path, "rb") as handle:
        if handle.read(8) != b"!<arch>\n":
            raise SourceError(f"{path}: not a Debian package (no ar magic)")
        while header := handle.read(60):
            if len(header) < 60:
                break
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip())
            body = handle.read(size)
            if size % 2:
                handle.read(1)
            if name.startswith("data.tar"):
                if name.endswith(".zst"):
                    raise SourceError(f"{path}: data.tar.zst is not readable without zstandard")
                return body
    raise SourceError(f"{path}: no data.tar member in the Debian package")
