"""Loops compiled by numba on their first use in a process.

numba holds about 110 MiB in each process that imports it (README, "Time and memory by size"),
so modules that the API imports too take their kernels through :func:`njit_lazily`: numba is
imported when a kernel first runs, not when the module is, and the machine code is cached on disk
(``cache=True``) after the first compilation. ``nogil=True``: callers may run kernels from
several threads.
"""

from __future__ import annotations

import functools


@functools.cache
def njit_lazily(kernel):
    """``kernel`` compiled with ``numba.njit(cache=True, nogil=True)`` (once per process)."""
    from numba import njit

    return njit(cache=True, nogil=True)(kernel)
