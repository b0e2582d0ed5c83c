"""The worker keeps a job's freed image buffers for the next job (runtime.keep_freed_memory)."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

# Two jobs in one pool thread, each allocating and writing a 24 MP preview's buffers; the
# minor page faults of each, counted by the thread itself.
JOBS = textwrap.dedent("""
    import resource, sys, threading
    from streams.worker.runtime import keep_freed_memory
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    faults = []
    def job():
        for _ in range(2):
            before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            decoded, resized = bytearray(18 << 20), bytearray(24 << 20)
            del decoded, resized
            faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
    t = threading.Thread(target=job)
    t.start()
    t.join()
    print(*faults)
""")


def faults_per_job(mode: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", JOBS, mode], capture_output=True, text=True, check=True)
    return [int(x) for x in out.stdout.split()]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_a_job_threads_second_job_faults_in_none_of_the_buffers_the_first_freed() -> None:
    pages = (42 << 20) // 4096
    first, second = faults_per_job("keep")
    assert first > pages // 2  # the first job maps its buffers
    assert second < pages // 100
    # without it, glibc's thread arena hands them back and the second job faults them in again
    assert faults_per_job("default")[1] > pages // 2
