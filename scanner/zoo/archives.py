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

    def names(self) -> list[str]:
        """Normalised member names (files only)."""
        if self._kind == "zip":
            with zipfile.ZipFile(self.path) as zf:
                return [i.filename for i in zf.infolist() if not i.is_dir()]
        with self._tar() as tf:
            return [self._tar_name(m.name) for m in tf.getmembers() if m.isfile()]

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
        with self._tar() as tf:
            for info in tf:
                if info.isfile() and self._tar_name(info.name) == member:
                    handle = tf.extractfile(info)
                    assert handle is not None
                    yield handle
                    return
        raise self._missing(member)

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

    @contextmanager
    def _tar(self) -> Iterator[tarfile.TarFile]:
        if self._kind == "tar":
            with tarfile.open(self.path, "r:*") as tf:
                yield tf
            return
        data = _deb_data(self.path)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
            yield tf


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
