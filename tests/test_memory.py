"""A password hash (16 MiB of scrypt work memory) does not stay resident afterwards, and
middle-sized allocations are not handed back and faulted in again each time."""

from __future__ import annotations

import subprocess
import sys

from tests.support import ROOT

PROGRAM = """
import threading
from cmhost.engines import pki
from cmhost.memory import return_large_frees_to_the_os

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024

assert return_large_frees_to_the_os()
before = rss_mb()
thread = threading.Thread(target=lambda: [pki.hash_password("pw") for _ in range(4)])
thread.start()
thread.join()
print(rss_mb() - before)
"""


def test_scrypt_memory_goes_back_to_the_os() -> None:
    out = subprocess.run([sys.executable, "-c", PROGRAM], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=60).stdout
    assert float(out) < 8.0  # without the setting: about 16 MB more


CHURN = """
import resource
import threading
import zlib
from cmhost.memory import return_large_frees_to_the_os

assert return_large_frees_to_the_os()
faults = []

def churn():
    for _ in range(20):
        zlib.compressobj().compress(b"warm up")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(300):  # a zip writes each file through a new compressor (~260 KiB)
        zlib.compressobj().compress(b"starter kit file")
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

thread = threading.Thread(target=churn)
thread.start()
thread.join()
print(faults[0])
"""


def test_freed_compressors_are_reused_not_faulted_in_again() -> None:
    out = subprocess.run([sys.executable, "-c", CHURN], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=60).stdout
    assert int(out) < 1000  # trimmed at 128 KiB: ~5,700 (each compressor faulted in again)
