"""Process-wide memory settings."""

from __future__ import annotations

import ctypes
import ctypes.util

# glibc's mallopt parameters: the size from which allocations are mapped on their own, and
# how much free memory at the top of a heap makes glibc give it back.
_M_MMAP_THRESHOLD = -3
_M_TRIM_THRESHOLD = -1
LARGE_ALLOCATION = 1 << 20
TRIM_THRESHOLD = 2 * LARGE_ALLOCATION


def return_large_frees_to_the_os() -> bool:
    """Make glibc map every allocation of 1 MiB or more on its own, and unmap it when freed.

    By default glibc raises that threshold to the size of the largest block freed so far (up
    to 32 MiB), after which such blocks come from the heap and stay resident once freed. An
    scrypt password hash needs 16 MiB: one hash (the credential pool makes them) would keep
    16 MB resident for the life of the process. Setting the threshold fixes it (and turns the
    adjustment off). Returns False where the C library is not glibc.

    Turning the adjustment off also pins the trim threshold at its 128 KiB start, so a freed
    zlib compressor (~260 KiB; a starter kit makes one per file) would be handed back to the
    OS at once and faulted in again for the next file: three times the CPU for a zip. The
    trim threshold is set to twice the mmap threshold, as glibc's own adjustment keeps it.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, LARGE_ALLOCATION)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
