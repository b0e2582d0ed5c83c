"""Local filesystem storage: the uploads, previews and permanent areas under one root.

Paths are deterministic per UUID (``<area>/ab/cd/<uuid>...``), so a repeated job writes the
same files again instead of new ones; every write goes to a temp file in the target folder
and is renamed into place, so a reader never sees half a file and a crash leaves no debris
under a final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import SourceMissing, StorageUnavailable, UnsafePath
from .events import check_relative_path

UPLOADS = "uploads"
PREVIEWS = "previews"
THUMBNAILS = "thumbnails"
ENHANCED = "enhanced"
ORIGINALS = "originals"
AREAS = (UPLOADS, PREVIEWS, THUMBNAILS, ENHANCED, ORIGINALS)

def shard(uuid: str) -> str:
    """Two folder levels from the UUID, so no folder grows to millions of files."""
    return f"{uuid[0:2]}/{uuid[2:4]}"


def _wrap_os_error(exc: OSError, what: str) -> Exception:
    # Any OS error on our own storage (full disk, unmounted or read-only volume, lost NFS
    # handle, a file where a folder should be) may clear up: retry, then dead-letter.
    return StorageUnavailable(f"{what}: {exc}")


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()

    def ensure(self) -> None:
        try:
            for area in AREAS:
                (self.root / area).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _wrap_os_error(exc, f"cannot create storage areas under {self.root}") from exc

    # -- paths -------------------------------------------------------------------------
    def resolve(self, relative: str) -> Path:
        """The absolute path of a storage-relative path; refuses anything that escapes."""
        try:
            rel = check_relative_path(relative)
        except ValueError as exc:
            raise UnsafePath(str(exc)) from None
        path = self.root / rel
        # A symlink inside the root may still point out of it.
        real_root = os.path.realpath(self.root)
        real = os.path.realpath(path)
        if real != real_root and not real.startswith(real_root + os.sep):
            raise UnsafePath(f"path {relative!r} resolves outside the storage root")
        return path

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def upload_path(self, uuid: str, filename: str) -> Path:
        suffix = Path(filename).suffix.lower()[:10]
        return self.root / UPLOADS / shard(uuid) / f"{uuid}{suffix}"

    def preview_path(self, uuid: str) -> Path:
        return self.root / PREVIEWS / shard(uuid) / f"{uuid}.jpg"

    def thumbnail_path(self, uuid: str) -> Path:
        return self.root / THUMBNAILS / shard(uuid) / f"{uuid}.jpg"

    def enhanced_path(self, uuid: str) -> Path:
        return self.root / ENHANCED / shard(uuid) / f"{uuid}.jpg"

    def original_dir(self, uuid: str) -> Path:
        return self.root / ORIGINALS / shard(uuid) / uuid

    def original_path(self, uuid: str, filename: str) -> Path:
        suffix = Path(filename).suffix.lower()[:10]
        return self.original_dir(uuid) / f"original{suffix}"

    def metadata_path(self, uuid: str) -> Path:
        return self.original_dir(uuid) / "metadata.json"

    def own_upload(self, uuid: str, relative: str) -> Path:
        """The upload an event names, if it is this image's own upload slot
        (``uploads/<shard>/<uuid><suffix>``, as ``upload_path`` makes it): an event may not
        point a job at another image's files, the previews or the permanent area."""
        path = self.resolve(relative)
        if path != self.upload_path(uuid, path.name) or path.stem != uuid:
            raise UnsafePath(f"path {relative!r} is not the upload of {uuid} "
                             f"(expected {UPLOADS}/{shard(uuid)}/{uuid}.<ext>)")
        return path

    def source_for(self, uuid: str, relative: str) -> Path:
        """The file to read for a job: the image's own upload, or its own permanent original
        once ingested. Nothing else, and no symlink (one could point anywhere in the root)."""
        upload = self.own_upload(uuid, relative)
        if self._confined_file(upload, self.root / UPLOADS / shard(uuid)):
            return upload
        d = self.original_dir(uuid)
        if d.is_dir():
            for p in sorted(d.glob("original*")):
                if self._confined_file(p, d):
                    return p
        if not self.root.is_dir():
            raise StorageUnavailable(f"storage root {self.root} is not available")
        raise SourceMissing(f"no file at {relative!r} and no permanent original for {uuid}")

    def _confined_file(self, path: Path, folder: Path) -> bool:
        """Is ``path`` a regular file, itself no symlink, in ``folder`` as it really is?"""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _wrap_os_error(exc, f"cannot read {self.relative(path)}") from exc
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePath(f"{self.relative(path)} is a symlink; jobs read only real files")
        if not stat.S_ISREG(st.st_mode):
            return False
        # Every folder on the way must be what it says, not a symlink to elsewhere (even
        # to another image's folder inside the root).
        real_root = os.path.realpath(self.root)
        if os.path.realpath(folder) != os.path.join(real_root, os.path.relpath(folder, self.root)):
            raise UnsafePath(f"{self.relative(path)} lies outside its area (a symlinked folder)")
        return True

    def is_upload(self, path: Path) -> bool:
        return path.is_relative_to(self.root / UPLOADS)

    # -- writes ----------------------------------------------------------------------
    @contextmanager
    def atomic_path(self, dest: Path) -> Iterator[Path]:
        """Yield a temp path beside ``dest``; rename it over ``dest`` when the block succeeds."""
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.{_WRITER}.",
                                            suffix=".tmp")
            os.close(fd)
        except OSError as exc:
            raise _wrap_os_error(exc, f"cannot write {self.relative(dest)}") from exc
        tmp = Path(tmp_name)
        try:
            yield tmp
            os.replace(tmp, dest)
        except OSError as exc:
            raise _wrap_os_error(exc, f"cannot write {self.relative(dest)}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        self.sweep(dest)

    def sweep(self, *dests: Path) -> int:
        """Remove temp files beside ``dests`` left by writers on this host that died mid-write
        (a SIGKILL between the temp write and the rename). A writer still alive, or one on
        another host sharing the volume, keeps its temp file. Returns how many went."""
        removed = 0
        for dest in dests:
            try:
                siblings = list(dest.parent.glob(f".{dest.name}.*.tmp"))
            except OSError:
                continue
            for tmp in siblings:
                writer = _writer_of(tmp.name[len(dest.name) + 2:])
                if writer is None or writer[0] != _HOST or _alive(writer[1]):
                    continue
                try:
                    tmp.unlink()
                    removed += 1
                except OSError:
                    pass
        return removed

    def write_bytes(self, dest: Path, data: bytes) -> None:
        with self.atomic_path(dest) as tmp, open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    def write_once(self, dest: Path, data: bytes) -> bytes:
        """Write ``dest`` unless it exists; returns what ``dest`` holds afterwards (``data``,
        or what a concurrent writer put there first). Atomic like ``write_bytes``."""
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.{_WRITER}.",
                                            suffix=".tmp")
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.link(tmp, dest)  # fails if dest exists: the first writer wins
                return data
            except FileExistsError:
                return dest.read_bytes()
            finally:
                tmp.unlink(missing_ok=True)
                # Like write_bytes: a writer killed mid-write left its temp file beside dest.
                self.sweep(dest)
        except OSError as exc:
            raise _wrap_os_error(exc, f"cannot write {self.relative(dest)}") from exc

    def write_json(self, dest: Path, obj: Any) -> None:
        self.write_bytes(dest, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def copy_in(self, src: Path, dest: Path) -> str:
        """Copy ``src`` to ``dest`` atomically; returns the sha256 of what was written."""
        digest = hashlib.sha256()
        with self.atomic_path(dest) as tmp:
            try:
                with open(src, "rb") as fin, open(tmp, "wb") as fout:
                    while chunk := fin.read(1 << 20):
                        digest.update(chunk)
                        fout.write(chunk)
                    fout.flush()
                    os.fsync(fout.fileno())
            except FileNotFoundError:
                raise SourceMissing(f"file vanished while copying: {src}") from None
            shutil.copystat(src, tmp, follow_symlinks=False)
        return digest.hexdigest()


_HOST = socket.gethostname().replace(".", "_")[:64]
_WRITER = f"{_HOST}-{os.getpid()}"


def _writer_of(rest: str) -> tuple[str, int] | None:
    """``<host>-<pid>.<random>.tmp`` -> (host, pid); None for a name not made by us."""
    head = rest.split(".", 1)[0]
    host, sep, pid = head.rpartition("-")
    return (host, int(pid)) if sep and pid.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, someone else's
    return True


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
