"""Launch a script under ``torchrun`` for the tests, past torch's gloo exit abort.

torch's gloo backend now and then aborts one rank at exit, after the script finished
and ``destroy_process_group()`` returned ("terminate called without an active
exception", SIGABRT): 1 launch in 15 to 1 in 3 of a two-rank CPU script here (more on a
loaded machine), a DDP script without per-triton too (docs/troubleshooting.md).
:func:`run_torchrun` relaunches only when that abort is the failure and
``complete(done)`` says the script's own work was all done; any other failure is
returned as it is.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence

__all__ = ["ATTEMPTS", "gloo_exit_abort", "run_torchrun"]

#: launches at most, the first included
ATTEMPTS = 5


def gloo_exit_abort(done: subprocess.CompletedProcess) -> bool:
    """The launcher failed because a rank aborted in gloo's teardown."""
    output = done.stdout + done.stderr
    return "terminate called without an active exception" in output and "SIGABRT" in output


def run_torchrun(
    cmd: Sequence[str],
    complete: Callable[[subprocess.CompletedProcess], bool],
    **kwargs,
) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True, **kwargs)``, relaunched (up to
    :data:`ATTEMPTS` in all) while it failed only by :func:`gloo_exit_abort` after
    ``complete``."""
    for _ in range(ATTEMPTS):
        done = subprocess.run(list(cmd), capture_output=True, text=True, **kwargs)
        if done.returncode == 0 or not (gloo_exit_abort(done) and complete(done)):
            break
    return done
