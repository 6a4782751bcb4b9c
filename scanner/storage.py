"""Where results live: a local folder (or POSIX mount) or an object store, behind one small interface.

``open_storage(location)`` resolves a ``--results`` value:

- a path without a scheme (``results``, ``/mnt/shared/results``) or a ``file://`` URI: :class:`LocalStorage`;
- any URI that ``pyarrow.fs.FileSystem.from_uri`` resolves (``s3://bucket/prefix``, ``gs://…``,
  ``hdfs://…``; options such as ``?endpoint_override=…&scheme=http`` pass through): :class:`ObjectStorage`;
- anything else that looks like a scheme (``foo://x``, ``s3:/x``) is an error, never a local folder.

Paths are ``PurePath`` objects: ``pathlib.Path`` for local storage, ``PurePosixPath`` (``bucket/prefix/…``)
for object stores, so ``.name``, ``.parent`` and ``/`` work on both.

Atomic writes: locally a file is written to ``<name>.tmp-<host>_<pid>_<uuid>`` in its final folder, fsynced
and renamed (the writer is in the name, so cleanup can tell a dead writer's file from a live one's); on an
object store a file is serialised in memory and uploaded in one write (one PUT, or one multipart upload
completed at close), so a crashed upload leaves no object.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from scanner.errors import StoreError

if TYPE_CHECKING:
    import pyarrow.fs as pafs

TMP_MARK = ".tmp-"
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):/")
Writer = Callable[[IO[bytes]], Any]


def writer_id() -> str:
    """``<host>_<pid>``: who writes, as put in tmp-file and lock names (hosts may contain ``_``; pids not)."""
    return f"{socket.gethostname()}_{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (signal 0 probes without signalling; EPERM means it exists)."""
    try:
        os.kill(pid, 0)  # pragma: no mutate (a mutated signal number would signal a live process)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _pafs() -> Any:
    """``pyarrow.fs``, imported on first use (the pid and tmp-name helpers above need no pyarrow)."""
    import pyarrow.fs

    return pyarrow.fs


def tmp_writer(name: str) -> tuple[str, int] | None:
    """(host, pid) of the writer of tmp file ``name``, or None when the name has no writer in it."""
    _, mark, tail = name.partition(TMP_MARK)
    parts = tail.rsplit("_", 2)
    if not mark or len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


@dataclass(frozen=True)
class Entry:
    """A file found by ``Storage.list_files``: its path, size in bytes and modification time (POSIX seconds)."""

    path: PurePath
    size: int
    mtime: float

    @property
    def name(self) -> str:
        return self.path.name


class Storage:
    """The operations the results store needs; see :class:`LocalStorage` and :class:`ObjectStorage`."""

    root: PurePath
    arrow_fs: pafs.FileSystem
    is_local: bool

    def __str__(self) -> str:
        return str(self.root)

    def arrow_path(self, path: PurePath) -> str:
        """``path`` as ``arrow_fs`` names it."""
        return str(path)

    def read_bytes(self, path: PurePath) -> bytes:
        """The whole file; FileNotFoundError when it does not exist."""
        try:
            with self.arrow_fs.open_input_stream(self.arrow_path(path)) as stream:
                return stream.read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            if any(text in str(exc).lower() for text in ("not found", "no such", "does not exist")):
                raise FileNotFoundError(str(path)) from exc
            raise

    def read_tail(self, path: PurePath, size: int, count: int) -> bytes:
        """The last ``count`` bytes of a file of ``size`` bytes (one ranged read)."""
        with self.arrow_fs.open_input_file(self.arrow_path(path)) as handle:
            return handle.read_at(min(count, size), max(0, size - count))

    def list_files(self, folder: PurePath) -> list[Entry]:
        """The files directly in ``folder``, by name ([] when it does not exist)."""
        fs = _pafs()
        selector = fs.FileSelector(self.arrow_path(folder), allow_not_found=True)
        infos = self.arrow_fs.get_file_info(selector)
        return sorted(
            (Entry(folder / PurePosixPath(i.path).name, i.size or 0, i.mtime.timestamp() if i.mtime else 0.0)
             for i in infos if i.type == fs.FileType.File),
            key=lambda e: e.name,
        )

    def list_dirs(self, folder: PurePath) -> list[str]:
        """Names of the sub-folders of ``folder`` (object stores: common prefixes)."""
        fs = _pafs()
        selector = fs.FileSelector(self.arrow_path(folder), allow_not_found=True)
        infos = self.arrow_fs.get_file_info(selector)
        return sorted(PurePosixPath(i.path).name for i in infos if i.type == fs.FileType.Directory)

    def exists(self, path: PurePath) -> bool:
        return self.arrow_fs.get_file_info(self.arrow_path(path)).type == _pafs().FileType.File

    def is_dir(self, path: PurePath) -> bool:
        return self.arrow_fs.get_file_info(self.arrow_path(path)).type == _pafs().FileType.Directory

    def delete(self, path: PurePath) -> None:
        """Remove a file; a missing file is not an error."""
        with contextlib.suppress(FileNotFoundError):
            self.arrow_fs.delete_file(self.arrow_path(path))

    def move(self, source: PurePath, target: PurePath) -> None:
        """Rename (local) or copy then delete (object store)."""
        self.makedirs(target.parent)
        self.arrow_fs.move(self.arrow_path(source), self.arrow_path(target))

    def makedirs(self, folder: PurePath) -> None:
        raise NotImplementedError

    def write_atomic(self, path: PurePath, write: Writer) -> None:
        """Call ``write(handle)`` so that ``path`` appears whole or not at all."""
        raise NotImplementedError

    def create_exclusive(self, path: PurePath, data: bytes) -> bool:
        """Write ``data`` to ``path`` unless it exists; True when this call created it."""
        raise NotImplementedError


class LocalStorage(Storage):
    """A local folder or POSIX mount (NFS, EFS, Lustre): tmp file + fsync + rename."""

    is_local = True

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._arrow_fs: pafs.FileSystem | None = None

    @property
    def arrow_fs(self) -> pafs.FileSystem:
        """A ``pyarrow.fs.LocalFileSystem``, made on first use (local writes and listings need no pyarrow)."""
        if self._arrow_fs is None:
            self._arrow_fs = _pafs().LocalFileSystem()
        return self._arrow_fs

    def arrow_path(self, path: PurePath) -> str:
        return str(Path(path).absolute())

    def makedirs(self, folder: PurePath) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)

    def list_files(self, folder: PurePath) -> list[Entry]:
        found = []
        base = Path(folder)
        try:
            with os.scandir(folder) as it:
                for item in it:
                    try:
                        if item.is_file(follow_symlinks=False):
                            stat = item.stat()
                            found.append(Entry(base / item.name, stat.st_size, stat.st_mtime))
                    except FileNotFoundError:  # removed while listing
                        continue
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(found, key=lambda e: e.name)

    def list_dirs(self, folder: PurePath) -> list[str]:
        try:
            return sorted(p.name for p in Path(folder).iterdir() if p.is_dir())
        except (FileNotFoundError, NotADirectoryError):
            return []

    def exists(self, path: PurePath) -> bool:
        return Path(path).is_file()

    def is_dir(self, path: PurePath) -> bool:
        return Path(path).is_dir()

    def read_bytes(self, path: PurePath) -> bytes:
        return Path(path).read_bytes()

    def read_tail(self, path: PurePath, size: int, count: int) -> bytes:
        fd = os.open(path, os.O_RDONLY)
        try:
            return os.pread(fd, min(count, size), max(0, size - count))
        finally:
            os.close(fd)

    def move(self, source: PurePath, target: PurePath) -> None:
        self.makedirs(target.parent)
        os.replace(source, target)

    def delete(self, path: PurePath) -> None:
        Path(path).unlink(missing_ok=True)

    def _write_tmp(self, path: Path, write: Writer) -> Path:
        tmp = path.with_name(f"{path.name}{TMP_MARK}{writer_id()}_{uuid.uuid4().hex[:12]}")
        try:
            with open(tmp, "wb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def write_atomic(self, path: PurePath, write: Writer) -> None:
        path = Path(path)
        tmp = self._write_tmp(path, write)
        try:
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    def create_exclusive(self, path: PurePath, data: bytes) -> bool:
        """A complete file appears under ``path`` only if none was there: ``link(2)`` refuses an existing name."""
        path = Path(path)
        tmp = self._write_tmp(path, lambda handle: handle.write(data))
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)
        return True


class ObjectStorage(Storage):
    """An object store through ``pyarrow.fs`` (S3, GCS, …): each file is one PUT, which is atomic.

    ``create_exclusive`` checks then writes; it is exclusive only under the scan lock
    (``scanner.storage_lock``), which every writer takes before creating ``scan.json``.
    """

    is_local = False

    def __init__(self, arrow_fs: pafs.FileSystem, root: str, uri: str) -> None:
        self.arrow_fs = arrow_fs
        self.root = PurePosixPath(root)
        self.uri = uri

    def __str__(self) -> str:
        return self.uri

    def makedirs(self, folder: PurePath) -> None:  # object stores have no folders
        return None

    def write_atomic(self, path: PurePath, write: Writer) -> None:
        """Serialise into memory, then upload in one write: a failure while writing uploads nothing.

        (Closing a ``pyarrow.fs`` output stream completes the upload, so writing straight into it would
        publish half a file when ``write`` raised; pyarrow exposes no abort.)
        """
        import pyarrow as pa

        buffer = pa.BufferOutputStream()
        write(buffer)
        data = buffer.getvalue()
        with self.arrow_fs.open_output_stream(self.arrow_path(path)) as stream:
            stream.write(data)

    def create_exclusive(self, path: PurePath, data: bytes) -> bool:
        if self.exists(path):
            return False
        self.write_atomic(path, lambda handle: handle.write(data))
        return True


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_storage(location: str | os.PathLike[str] | Storage) -> Storage:
    """The storage behind a ``--results`` value (see the module docstring).

    Raises:
        StoreError: the value has a scheme that ``pyarrow.fs`` does not resolve (or resolves to nothing).
    """
    if isinstance(location, Storage):
        return location
    text = os.fspath(location)
    match = _SCHEME.match(text)
    if match is None:
        return LocalStorage(text)
    scheme = match["scheme"].lower()
    import pyarrow as pa

    fs = _pafs()
    if scheme == "file":
        return LocalStorage(fs.FileSystem.from_uri(text)[1])
    if not text.startswith(f"{match['scheme']}://"):
        raise StoreError(f"results location {text!r} looks like a URI with one slash; write {scheme}://…")
    try:
        arrow_fs, root = fs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
        raise StoreError(
            f"cannot open results location {text!r} ({exc}); use a local path, a mounted folder, or an "
            "object-store URI that pyarrow.fs resolves (s3://bucket/prefix, gs://bucket/prefix)"
        ) from exc
    if isinstance(arrow_fs, fs.LocalFileSystem):
        return LocalStorage(root)
    if not root.strip("/"):
        raise StoreError(f"results location {text!r} names no bucket; write {scheme}://bucket/prefix")
    return ObjectStorage(arrow_fs, root.rstrip("/"), text.split("?", 1)[0].rstrip("/"))
