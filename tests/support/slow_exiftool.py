"""A PATH on which ``exiftool`` is the real one behind a proxy that can slow its next call
down: a long job on demand, for tests of what status says while a job runs."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

PROXY = r'''#!{python}
"""exiftool, slowed down once: the next -execute after {flag} appears waits {delay} s
(and removes the flag). Everything else passes through."""
import os, subprocess, sys, time
real = subprocess.Popen([{real!r}, *sys.argv[1:]], stdin=subprocess.PIPE)
buf = b""
while True:
    chunk = os.read(0, 65536)
    if not chunk:
        break
    buf += chunk
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        if line.startswith(b"-execute") and os.path.exists({flag!r}):
            os.remove({flag!r})
            time.sleep({delay})
        real.stdin.write(line + b"\n")
        real.stdin.flush()
real.stdin.close()
sys.exit(real.wait())
'''


def slow_exiftool(tmp_path: Path, delay_s: float) -> tuple[dict[str, str], Path]:
    """A PATH on which ``exiftool`` runs the real one, and the flag that slows its next call."""
    real = shutil.which("exiftool")
    assert real, "exiftool is not installed"
    bindir = tmp_path / "slowbin"
    bindir.mkdir()
    flag = tmp_path / "slow-next-call"
    script = bindir / "exiftool"
    script.write_text(PROXY.format(python=sys.executable, delay=delay_s, flag=str(flag), real=real))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}, flag
