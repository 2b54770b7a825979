"""A job process dies with the shell that Snakemake started it from.

Snakemake runs each job as `bash -c "... python -m harness.jobs.X --job ... > log"`. When
Snakemake gives up on a job it kills that shell; without this the python process would
keep running and later write a complete output that the rerun trusts. On Linux the kernel
sends the job SIGTERM when its parent exits (prctl PR_SET_PDEATHSIG); elsewhere nothing
changes (documented limitation).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send `sig` to this process when its parent exits; True if armed."""
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)
    return True
