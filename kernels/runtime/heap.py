"""Keep freed memory in the process, so a new array does not page-fault on every write.

glibc's malloc hands blocks above a threshold to the OS when they are freed
(an mmap of their own, or a trim of the heap's top) and fetches fresh pages
for the next one. A fresh page costs a page fault on its first write: 2 us per
4 KB page on this project's machine (a VM), against 0.08 ms to write 4 MB of
pages already held. Each U-Net forward makes a few dozen activation arrays of
0.1-3 MB, so at batch 64 it took ~1300 page faults (~2.6 ms of ~40 ms), a
train step at batch 32 ~1500, and 20-step DDIM sampling ~19000.

keep_freed_memory() raises both of glibc's thresholds (mallopt), once: blocks
up to MMAP_MAX_BYTES come from the heap, and the heap keeps up to
TRIM_BYTES free at its top; freed blocks are then reused instead of returned.
route.py calls it when a NumPy array first goes to a CPU kernel. It
changes the whole process's malloc (so torch in the same process gains too),
and it is skipped off glibc and when MINIDIFF_KEEP_FREED_MEMORY=0.
"""
import ctypes
import ctypes.util
import os
import platform

_ENV = "MINIDIFF_KEEP_FREED_MEMORY"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3      # glibc's mallopt parameter numbers (malloc.h)
MMAP_MAX_BYTES = 32 << 20                        # the largest mmap threshold glibc accepts on 64-bit
TRIM_BYTES = 256 << 20
_state = {"done": False, "applied": False}


def keep_freed_memory():
    """Raise glibc's mmap and trim thresholds once; True if they are (now or before) raised."""
    if _state["done"]:
        return _state["applied"]
    _state["done"] = True
    if os.environ.get(_ENV, "1").strip() == "0" or platform.system() != "Linux" \
            or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_MAX_BYTES) == 1
        ok = libc.mallopt(M_TRIM_THRESHOLD, TRIM_BYTES) == 1 and ok
    except (OSError, AttributeError):
        return False
    _state["applied"] = ok
    return ok
