"""The torchrun relaunch of tests/ranks.py retries only the gloo exit abort after a complete run."""

from __future__ import annotations

import sys

from .ranks import ATTEMPTS, run_torchrun

# fails with the gloo abort signature the first ``fails`` launches (a counter file), then exits 0
FAKE = """
import pathlib, sys
counter = pathlib.Path(sys.argv[1])
n = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(n + 1))
print("work done" if sys.argv[3] == "complete" else "half")
if n < int(sys.argv[2]):
    print("terminate called without an active exception" if sys.argv[4] == "gloo" else "boom",
          file=sys.stderr)
    print("exitcode  : -6 (SIGABRT)", file=sys.stderr)
    sys.exit(1)
"""


def _launch(tmp_path, fails: int, complete: str, failure: str):
    counter = tmp_path / "n"
    cmd = [sys.executable, "-c", FAKE, str(counter), str(fails), complete, failure]
    done = run_torchrun(cmd, lambda d: "work done" in d.stdout)
    return done, int(counter.read_text())


def test_a_gloo_exit_abort_after_complete_work_is_relaunched(tmp_path):
    done, launches = _launch(tmp_path, 1, "complete", "gloo")
    assert done.returncode == 0 and launches == 2


def test_it_gives_up_after_the_attempts(tmp_path):
    done, launches = _launch(tmp_path, ATTEMPTS + 1, "complete", "gloo")
    assert done.returncode == 1 and launches == ATTEMPTS


def test_other_failures_and_incomplete_runs_are_not_relaunched(tmp_path):
    done, launches = _launch(tmp_path, 1, "complete", "other")
    assert done.returncode == 1 and launches == 1
    sub = tmp_path / "partial"
    sub.mkdir()
    done, launches = _launch(sub, 1, "partial", "gloo")
    assert done.returncode == 1 and launches == 1
