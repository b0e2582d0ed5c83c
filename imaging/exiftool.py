"""One long-lived exiftool process (``-stay_open`` through pyexiftool), shared by a worker's threads.

Calls are serialised by a lock and bounded by a deadline; a process that hangs or dies is
killed and the next call starts a fresh one. File names go to exiftool as absolute paths
(so ``-o.jpg`` can never read as an option), and names exiftool's argument file cannot carry
(a newline would split the argument) are reached through a symlink with a plain name.
"""

from __future__ import annotations

import itertools
import json
import os
import selectors
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import exiftool as pyexiftool

from .errors import ExiftoolTimeout, StorageUnavailable

_SEQ = itertools.count(1)
VERSION_TIMEOUT_S = 20.0  # the start-up "-ver" round trip


class ExiftoolFailed(Exception):
    """exiftool ran but could not read the file (status != 0 and no output); never escapes imaging."""


@dataclass(frozen=True)
class Output:
    stdout: bytes
    stderr: str
    status: int


class _TimedExifTool(pyexiftool.ExifTool):  # type: ignore[misc]
    """pyexiftool's process handling with a read that has a deadline and notices a dead child.

    pyexiftool's own ``execute`` blocks in ``select`` with no timeout and spins on EOF, so a
    hung or killed exiftool would hold the worker thread for ever; and ``select`` refuses
    descriptors above 1023, which a long-lived process reaches (epoll has no such limit).
    """

    def _parse_ver(self) -> str:
        # pyexiftool asks for the version through its own select-based execute at start.
        return self.execute_until([b"-ver"], time.monotonic() + VERSION_TIMEOUT_S).stdout.decode().strip()

    def execute_until(self, params: list[bytes], deadline: float) -> Output:
        n = next(_SEQ)
        ready = f"{{ready{n}}}".encode()
        post = f"post{n}".encode()
        cmd = b"\n".join([*params, b"-echo4", f"=${{status}}={post.decode()}".encode(),
                          f"-execute{n}".encode()]) + b"\n"
        proc = self._process
        proc.stdin.write(cmd)
        proc.stdin.flush()
        out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
        bufs: dict[int, bytearray] = {out_fd: bytearray(), err_fd: bytearray()}
        ends = {out_fd: ready, err_fd: post}
        with selectors.DefaultSelector() as sel:
            for fd in (out_fd, err_fd):
                sel.register(fd, selectors.EVENT_READ)
            pending = {out_fd, err_fd}
            while pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("exiftool did not answer in time")
                for key, _ in sel.select(left):
                    fd = int(key.fd)
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        raise EOFError("exiftool exited")
                    bufs[fd] += chunk
                    # only the tail: stripping the whole buffer per chunk is quadratic in a
                    # preview's MBs
                    if bufs[fd][-(len(ends[fd]) + 64):].rstrip().endswith(ends[fd]):
                        pending.discard(fd)
                        sel.unregister(fd)
        stdout = bytes(bufs[out_fd]).rstrip()[: -len(ready)]
        stderr = bytes(bufs[err_fd]).rstrip()[: -len(post)].decode("utf-8", "replace")
        # stderr ends "=STATUS="; what precedes it is exiftool's own messages
        body, _, status = stderr[:-1].rpartition("=")
        return Output(stdout, body.rstrip(), int(status) if status.isdigit() else 1)

    def kill(self) -> None:
        proc = self._process
        if proc is not None:
            proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        self._flag_running_false()


def _alive(et: _TimedExifTool) -> bool:
    proc = et._process
    return bool(et._running) and proc is not None and proc.poll() is None


@contextmanager
def _safe_name(path: Path) -> Iterator[bytes]:
    raw = os.fsencode(os.path.abspath(path))
    if b"\n" not in raw and b"\r" not in raw:
        yield raw
        return
    with tempfile.TemporaryDirectory(prefix="exiftool-") as tmp:
        link = os.path.join(tmp, "file" + "".join(c for c in path.suffix if c.isalnum() or c == "."))
        os.symlink(os.path.abspath(path), link)
        yield os.fsencode(link)


class Exiftool:
    """Thread-safe handle on one exiftool process; started on first use."""

    def __init__(self, timeout_s: float, executable: str = "exiftool") -> None:
        self.timeout_s = timeout_s
        self.executable = executable
        self._lock = threading.Lock()
        self._et: _TimedExifTool | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        """The running exiftool's process id (for operators and tests), None before first use."""
        et = self._et
        return int(et._process.pid) if et is not None and _alive(et) else None

    def _ensure(self) -> _TimedExifTool:
        old = self._et
        if old is not None and not _alive(old):
            # Killed from outside (OOM killer, an operator): reap it and close its pipes
            # here. pyexiftool's own check warns and leaves the pipes to the GC, which
            # then closes descriptor numbers a newer exiftool may own by then.
            old.kill()
            self._et = None
        if self._et is None:
            try:
                et = _TimedExifTool(executable=self.executable, common_args=[])
                et.run()
            except (OSError, RuntimeError, ValueError) as exc:
                raise ExiftoolTimeout(f"exiftool could not be started: {exc}") from None
            if old is not None:
                self.restarts += 1
            self._et = et
        return self._et

    def run(self, args: list[str], path: Path) -> Output:
        """Run exiftool with ``args`` on ``path``; ExiftoolTimeout if it hangs, dies or stays busy."""
        deadline = time.monotonic() + self.timeout_s
        if not self._lock.acquire(timeout=self.timeout_s):
            raise ExiftoolTimeout(f"exiftool busy for over {self.timeout_s:g} s")
        try:
            et = self._ensure()
            with _safe_name(path) as name:
                try:
                    return et.execute_until([a.encode() for a in args] + [name], deadline)
                except (TimeoutError, EOFError, OSError) as exc:
                    et.kill()
                    raise ExiftoolTimeout(
                        f"exiftool failed on {path.name}: {exc} (limit {self.timeout_s:g} s); restarted"
                    ) from None
        finally:
            self._lock.release()

    def json(self, args: list[str], path: Path) -> dict[str, Any]:
        out = self.run(["-j", *args], path)
        try:
            rows = json.loads(out.stdout.decode("utf-8", "replace")) if out.stdout else []
        except ValueError:
            rows = []
        row: dict[str, Any] = rows[0] if rows and isinstance(rows[0], dict) else {}
        error = row.get("Error") or row.get("ExifTool:Error")
        if "not found" in out.stderr.lower():
            raise StorageUnavailable(f"{path.name}: {out.stderr.strip()}")
        if not row or error:
            raise ExiftoolFailed(str(error or out.stderr.strip() or f"exiftool status {out.status}"))
        return row

    def binary(self, tag: str, path: Path) -> bytes:
        out = self.run(["-b", f"-{tag}"], path)
        if not out.stdout:
            raise ExiftoolFailed(out.stderr.strip() or f"no {tag} in the file")
        return out.stdout

    def close(self) -> None:
        with self._lock:
            if self._et is not None and _alive(self._et):
                try:
                    self._et.terminate(timeout=5)
                except (OSError, ValueError):
                    self._et.kill()
            elif self._et is not None:
                self._et.kill()  # died: reap it, close its pipes
            self._et = None
