"""A password hash (16 MiB of scrypt work memory) does not stay resident afterwards."""

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
