"""Typed structures for the result files the dashboard reads.

Formats: docs/design.md, "Benchmark result files" and docs/design.md, "Closeness records".

The TypedDicts describe the JSON as written; the dataclasses are what the loaders
return after checking it. Nothing here imports torch, triton or streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypedDict

# re-exported: the one definition is shared with the monitor
from per_triton.api.monitor_schema import ClosenessRecord as ClosenessRecord

# --- pytest-benchmark JSON (--benchmark-json) ------------------------------------


class MachineInfo(TypedDict, total=False):
    """``machine_info``: pytest-benchmark's keys plus the ones our suites add."""

    node: str
    machine: str
    system: str
    python_version: str
    gpu: str  # GPU name, or "cpu"
    torch: str
    triton: str | None
    cuda: str | None
    command: str  # the exact command line that produced the file


class CommitInfo(TypedDict, total=False):
    """``commit_info`` as pytest-benchmark writes it."""

    id: str
    time: str
    dirty: bool
    branch: str
    project: str


class Stats(TypedDict, total=False):
    """A benchmark's ``stats`` (seconds); only the keys the dashboard uses."""

    min: float
    max: float
    mean: float
    median: float
    q1: float
    q3: float
    rounds: int


class TrainingExtra(TypedDict):
    """``extra_info`` of the training suite: seconds per training iteration."""

    suite: Literal["training"]
    model: str
    method: str  # vanilla, bn, vcl, l1, l2, per, per_exact, per_torch
    batch: int
    dtype: str  # "float32" or "bf16-autocast"
    num_slices: int
    device: str
    median_s: float
    p20_s: float
    p80_s: float


class KernelExtra(TypedDict, total=False):
    """``extra_info`` of the kernel suite."""

    suite: Literal["kernel"]
    provider: str  # one of per_triton.bench.providers.PROVIDERS
    mode: str  # forward, backward, full
    b: int
    d: int
    s: int
    dtype: str
    peak_mem_bytes: int
    median_s: float
    p20_s: float
    p80_s: float
    floor_s: float  # fused only


class Benchmark(TypedDict):
    """One entry of ``benchmarks``."""

    name: str
    fullname: str
    group: str | None
    stats: Stats
    extra_info: dict[str, object]


class BenchmarkFile(TypedDict):
    """A whole pytest-benchmark JSON file."""

    machine_info: MachineInfo
    commit_info: CommitInfo
    benchmarks: list[Benchmark]
    datetime: str
    version: str


class TrainingRow(TypedDict):
    """What the dashboard keeps of one training benchmark."""

    model: str
    method: str
    batch: int
    dtype: str
    num_slices: int | None
    median_s: float
    p20_s: float
    p80_s: float


class KernelRow(TypedDict):
    """What the dashboard keeps of one kernel benchmark."""

    provider: str
    mode: str
    b: int
    d: int
    s: int
    dtype: str
    peak_mem_bytes: int | None
    floor_s: float | None
    median_s: float
    p20_s: float
    p80_s: float


class CpuRow(TypedDict):
    """What the dashboard keeps of one cpu-suite benchmark (per_triton's CPU path against
    plain torch, side by side): listed on the Runs page, not plotted."""

    b: int
    d: int
    s: int
    threads: int
    sampler: str | None  # the CPU stream's sampler, where the file records it
    per_triton_median_s: float
    torch_median_s: float
    ratio: float  # per_triton / torch medians


# --- closeness records (bench/results/closeness/) ---------------------------------


# ClosenessRecord: per_triton/api/monitor_schema.py is the one definition (shared
# with the monitor); a null statistic is read as NaN here.


class SummaryRow(TypedDict):
    """One entry of ``closeness/summary.json``."""

    method: str
    seed: int
    test_accuracy: float
    final_loss: float


# --- what the loaders return ------------------------------------------------------

#: "committed": in the results folder; "local": in its ``local/`` folder (the user's own
#: runs, :data:`per_triton.paths.LOCAL_RESULTS`); "extra": given with --extra.
Source = Literal["committed", "local", "extra", "uploaded"]


@dataclass(frozen=True)
class Problem:
    """A file (or part of one) that could not be used, and why."""

    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


@dataclass
class Run:
    """One checked pytest-benchmark file: its context and its usable rows."""

    name: str  # file name relative to where it was found
    source: Source
    gpu: str
    torch: str
    triton: str
    cuda: str
    command: str
    commit: str
    dirty: bool
    datetime: str
    benchmarks: int
    sampler: str = "-"  # the CPU sampler(s) the file records, "-" where none
    training: list[TrainingRow] = field(default_factory=list)
    kernel: list[KernelRow] = field(default_factory=list)
    cpu: list[CpuRow] = field(default_factory=list)

    @property
    def suites(self) -> str:
        """The suites of its usable benchmarks ("training", "kernel, training", "cpu")."""
        rows = {"cpu": self.cpu, "kernel": self.kernel, "training": self.training}
        return ", ".join(name for name, found in rows.items() if found) or "-"

    @property
    def label(self) -> str:
        """Short name for legends: GPU and file."""
        return f"{self.gpu} | {self.name}"
