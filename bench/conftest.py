"""pytest hooks shared by the benchmark suites.

An interrupted run (Ctrl-C, ``timeout -s INT``) must still write the benchmarks
that finished: pytest-benchmark would fail to serialise the one that was cut off
(no timed round yet), so it is dropped before the JSON is written.
"""

from __future__ import annotations

import pytest


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int):
    bench_session = getattr(session.config, "_benchmarksession", None)
    if bench_session is not None:
        finished = [b for b in bench_session.benchmarks if b.stats and "median_s" in b.extra_info]
        dropped = len(bench_session.benchmarks) - len(finished)
        if dropped:
            print(f"\n[bench] {dropped} unfinished benchmark(s) left out of the result file")
        bench_session.benchmarks[:] = finished
    yield
