"""The CPU stream's sampler (per_triton/core/normals.py, normals_c.py, normals_torch.py,
philox_normals.c).

Oracles: the torch implementation of the same operations (bit for bit), the C source
compiled for other instruction sets and without optimisation (bit for bit), the
Random123 known-answer vectors for Philox4x32-10, and N(0, 1) by moments, KS and
independence tests.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from per_triton.core import normals, normals_c, normals_torch

KEY = 0x0123456789ABCDEF


def test_c_sampler_is_built_here():
    """CI and this machine have a C compiler: the fast path is what the tests exercise."""
    assert normals.backend() == "c"


@pytest.mark.parametrize(
    ("row0", "rows", "col0", "cols"),
    [(0, 1, 0, 1), (0, 5, 0, 17), (3, 7, 5, 30), (0, 64, 0, 4096), (1000, 3, 2**20 + 1, 999)],
)
def test_c_and_torch_implementations_agree_bit_for_bit(row0, rows, col0, cols):
    c = normals.normals(KEY, rows, cols, row0, col0)
    t = normals_torch.normals_block(*normals_torch.key_words(KEY), row0, rows, col0, cols)
    assert torch.equal(c, t)


def test_philox_matches_the_random123_known_answers():
    """Philox4x32-10 known-answer tests (Random123's kat_vectors)."""
    cases = [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        (
            (0xFFFFFFFF,) * 4,
            (0xFFFFFFFF, 0xFFFFFFFF),
            (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD),
        ),
        (
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
            (0xA4093822, 0x299F31D0),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        ),
    ]
    for counter, key, expected in cases:
        c = [torch.tensor([x], dtype=torch.int64) for x in counter]
        c0, c1, c2, c3 = c
        out = _philox4(key, c0, c1, c2, c3)
        assert tuple(int(x) for x in out) == expected


def _philox4(key, c0, c1, c2, c3):
    """The fallback's rounds with a full counter (the stream itself fixes c2 = c3 = 0)."""
    m32 = 0xFFFFFFFF
    k0, k1 = key
    for _ in range(10):
        p0, p1 = c0 * 0xD2511F53, c2 * 0xCD9E8D57
        n0 = ((p1 >> 32) & m32) ^ c1 ^ k0
        n2 = ((p0 >> 32) & m32) ^ c3 ^ k1
        c1, c3, c0, c2 = p1 & m32, p0 & m32, n0, n2
        k0, k1 = (k0 + 0x9E3779B9) & m32, (k1 + 0xBB67AE85) & m32
    return c0, c1, c2, c3


def test_fallback_rounds_are_the_stream_rounds():
    """The known-answer rounds above equal the stream's with counter (j // 4, k, 0, 0)."""
    k0, k1 = normals_torch.key_words(KEY)
    groups = torch.arange(8, dtype=torch.int64)
    rows = torch.full_like(groups, 3)
    ours = normals_torch.philox(k0, k1, groups, rows)
    zeros = torch.zeros_like(groups)
    assert all(
        torch.equal(a, b)
        for a, b in zip(ours, _philox4((k0, k1), groups, rows, zeros, zeros), strict=True)
    )


@pytest.mark.parametrize(
    "flags", [["-O0"], ["-O3", "-DPER_NO_CLONES"], ["-O2", "-DPER_NO_CLONES", "-mavx2"]]
)
def test_other_builds_of_the_c_source_give_the_same_bits(tmp_path: Path, flags):
    """Vector width and optimisation level never change a value (no FMA, no libm)."""
    cc = normals_c.compiler()
    assert cc is not None
    if "-mavx2" in flags and not _x86():
        flags = flags[:-1]
    lib_path = tmp_path / "n.so"
    base = [f for f in normals_c.CFLAGS if not f.startswith("-O")]
    subprocess.run([*cc, *flags, *base, "-o", str(lib_path), str(normals_c.SOURCE)], check=True)
    lib = ctypes.CDLL(str(lib_path))
    rows, cols = 9, 1003
    out = torch.empty(rows, cols)
    k0, k1 = normals_torch.key_words(KEY)
    lib.per_triton_normals(
        ctypes.c_uint32(k0),
        ctypes.c_uint32(k1),
        ctypes.c_int64(2),
        ctypes.c_int64(rows),
        ctypes.c_int64(3),
        ctypes.c_int64(cols),
        ctypes.c_void_p(out.data_ptr()),
        ctypes.c_int64(cols),
    )
    assert torch.equal(out, normals.normals(KEY, rows, cols, 2, 3))


def _x86() -> bool:
    import platform

    return platform.machine() in ("x86_64", "AMD64")


def test_fill_writes_into_a_column_range_of_a_wider_matrix():
    wide = torch.full((6, 40), 7.0)
    normals.fill(KEY, 0, 10, wide[:, 10:30])
    assert torch.equal(wide[:, 10:30], normals.normals(KEY, 6, 20, 0, 10))
    assert (wide[:, :10] == 7).all() and (wide[:, 30:] == 7).all()


def test_fill_rejects_bad_outputs():
    with pytest.raises(ValueError, match="out"):
        normals.fill(KEY, 0, 0, torch.empty(3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="stride"):
        normals.fill(KEY, 0, 0, torch.empty(4, 3).T)


def test_normals_are_standard_normal():
    v = normals.normals(KEY, 512, 4096).double().flatten().numpy()
    n = v.size
    assert abs(v.mean()) < 5 / np.sqrt(n)
    assert abs(v.var() - 1) < 5 * np.sqrt(2 / n)
    assert abs(stats.skew(v)) < 5 * np.sqrt(6 / n)
    assert abs(stats.kurtosis(v)) < 5 * np.sqrt(24 / n)
    assert stats.kstest(v, "norm").pvalue > 1e-4
    # Box-Muller with a 24-bit u: |v| <= sqrt(-2 ln 2**-24)
    assert np.abs(v).max() <= np.sqrt(-2 * np.log(2.0**-24)) + 1e-6


def test_tails_match_the_normal_within_sampling_error():
    """Counts beyond 2, 3 and 4 sigma against the binomial spread of N(0, 1)."""
    v = normals.normals(KEY + 1, 1024, 8192).double().flatten().numpy()
    n = v.size
    for z in (2.0, 3.0, 4.0):
        p = 2 * stats.norm.sf(z)
        count = np.count_nonzero(np.abs(v) > z)
        assert abs(count - n * p) < 5 * np.sqrt(n * p * (1 - p)) + 1, (z, count, n * p)


def test_lanes_pairs_rows_and_keys_are_uncorrelated():
    """The four lanes of a Philox group, the two members of a Box-Muller pair, adjacent
    rows and neighbouring keys: correlations within 5 standard errors of 0."""
    v = normals.normals(KEY, 256, 8192).double().numpy()
    lanes = v.reshape(256, -1, 4)
    bound = 5 / np.sqrt(lanes[..., 0].size)
    corr = np.corrcoef(lanes.reshape(-1, 4).T)
    assert np.abs(corr - np.eye(4)).max() < bound
    # z0^2 and z1^2 share the radius: Box-Muller makes them independent all the same
    assert abs(np.corrcoef(lanes[..., 0].ravel() ** 2, lanes[..., 1].ravel() ** 2)[0, 1]) < bound
    assert abs(np.corrcoef(v[:-1].ravel(), v[1:].ravel())[0, 1]) < 5 / np.sqrt(v[1:].size)
    w = normals.normals(KEY + 1, 256, 8192).double().numpy()
    assert abs(np.corrcoef(v.ravel(), w.ravel())[0, 1]) < 5 / np.sqrt(v.size)


def test_without_a_compiler_the_torch_fallback_warns_and_draws_the_same(tmp_path: Path):
    """No compiler on PATH and none cached: a RuntimeWarning, backend "torch", same values."""
    env = {
        **os.environ,
        "PATH": str(tmp_path),
        "CC": "",
        "PER_TRITON_CACHE_DIR": str(tmp_path / "cache"),
        "TMPDIR": str(tmp_path),
    }
    code = (
        "import warnings, torch\n"
        "from per_triton.core import normals\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    b = normals.backend()\n"
        "print(b, any('C sampler' in str(x.message) for x in w))\n"
        f"torch.save(normals.normals({KEY}, 5, 33, 1, 2), {str(tmp_path / 'v.pt')!r})\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["torch", "True"]
    assert torch.equal(torch.load(tmp_path / "v.pt"), normals.normals(KEY, 5, 33, 1, 2))


def test_sampler_choice_is_validated_and_c_demands_a_compiler(tmp_path: Path):
    for value, expected in (("gpu", "auto, c or torch"), ("c", "C sampler failed")):
        env = {
            **os.environ,
            "PATH": str(tmp_path),
            "CC": "",
            "PER_TRITON_CPU_SAMPLER": value,
            "PER_TRITON_CACHE_DIR": str(tmp_path / "cache"),
        }
        code = "from per_triton.core import normals; normals.backend()"
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert out.returncode != 0 and expected in out.stderr, out.stderr


def test_build_is_cached_and_reused(tmp_path: Path):
    """The shared object is built once per source, compiler and platform."""
    cc = normals_c.compiler()
    assert cc is not None
    env = {**os.environ, "PER_TRITON_CACHE_DIR": str(tmp_path)}
    code = "from per_triton.core import normals; print(normals.backend())"
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert out.stdout.strip() == "c", out.stderr
    built = list(tmp_path.glob("philox_normals-*.so"))
    assert len(built) == 1 and shutil.which(cc[0])


def test_an_unwritable_cache_folder_falls_back_to_the_temp_folder(tmp_path: Path):
    """A cache path that cannot be a folder (under a file): built under $TMPDIR instead."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    env = {
        **os.environ,
        "PER_TRITON_CACHE_DIR": str(blocker / "cache"),
        "TMPDIR": str(tmp_path / "tmp"),
    }
    (tmp_path / "tmp").mkdir()
    code = "from per_triton.core import normals; print(normals.backend())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "c", out.stderr
    assert list((tmp_path / "tmp").glob("per_triton-*/philox_normals-*.so"))


def _backend_in_subprocess(env_extra: dict, tmp_path: Path) -> tuple[str, str]:
    """``normals.backend()`` and the warnings' text in a fresh interpreter."""
    env = {
        **os.environ,
        "PER_TRITON_CACHE_DIR": str(tmp_path / "cache"),
        "TMPDIR": str(tmp_path),
        **env_extra,
    }
    code = (
        "import warnings\n"
        "from per_triton.core import normals\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    b = normals.sampler()\n"
        "print(b)\n"
        "print(' | '.join(str(x.message) for x in w))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    backend, warned = (out.stdout.splitlines() + ["", ""])[:2]
    return backend, warned


def test_a_temp_folder_others_can_write_is_not_used(tmp_path: Path):
    """Cache folder unusable and the per-user temp folder world-writable (someone else
    could have planted a library there): nothing is loaded from it."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    shared = tmp_path / "tmp" / f"per_triton-{os.getuid()}"
    shared.mkdir(parents=True)
    shared.chmod(0o777)
    backend, warned = _backend_in_subprocess(
        {"PER_TRITON_CACHE_DIR": str(blocker / "c"), "TMPDIR": str(tmp_path / "tmp")}, tmp_path
    )
    assert backend == "torch" and "not private" in warned, warned
    assert not list(shared.iterdir())


def test_a_library_that_draws_other_numbers_is_refused(tmp_path: Path):
    """A file under the sampler's name that is not the sampler: the known-answer check
    refuses it, with a warning, and the torch implementation draws the stream."""
    cc = normals_c.compiler()
    cache = tmp_path / "cache"
    cache.mkdir()
    fake = tmp_path / "fake.c"
    fake.write_text(
        "#include <stdint.h>\n"
        "void per_triton_normals(uint32_t a, uint32_t b, int64_t r0, int64_t rows, int64_t c0,"
        " int64_t cols, float *out, int64_t ld) {"
        " for (int64_t r = 0; r < rows; r++) for (int64_t c = 0; c < cols; c++)"
        " out[r * ld + c] = 0.0f; }\n"
    )
    target = cache / normals_c.library_name(cc)
    subprocess.run([*cc, "-shared", "-fPIC", "-o", str(target), str(fake)], check=True)
    backend, warned = _backend_in_subprocess({}, tmp_path)
    assert backend == "torch" and "known-answer" in warned, warned


def test_an_unknown_cc_is_named_in_the_warning(tmp_path: Path):
    backend, warned = _backend_in_subprocess({"CC": "/nonexistent/cc"}, tmp_path)
    assert backend == "torch" and "CC='/nonexistent/cc'" in warned, warned
    assert "set CC to an installed compiler" in warned


def test_cc_may_be_a_command_with_arguments(tmp_path: Path):
    cc = normals_c.compiler()
    backend, warned = _backend_in_subprocess({"CC": f"{cc[0]} -O2"}, tmp_path)
    assert backend == "c-built", warned


NO_COMPILER = {"CC": ""}  # plus PATH: an empty folder (below)


def _no_compiler(tmp_path: Path, **extra: str) -> dict:
    """PATH without cc/gcc/clang (an empty folder), CC unset, clean cache and temp folders."""
    empty = tmp_path / "empty-path"
    empty.mkdir(exist_ok=True)
    return {**NO_COMPILER, "PATH": str(empty), **extra}


def _bits_in_subprocess(env_extra: dict, tmp_path: Path, pythonpath: str | None = None):
    """(sampler name, a block of the stream) drawn in a fresh interpreter."""
    env = {
        **os.environ,
        "PER_TRITON_CACHE_DIR": str(tmp_path / "cache"),
        "TMPDIR": str(tmp_path),
        **env_extra,
    }
    env["PYTHONPATH"] = pythonpath or str(Path(__file__).resolve().parents[1])
    out_file = tmp_path / "v.pt"
    code = (
        "import torch\n"
        "from per_triton.core import normals\n"
        "print(normals.sampler())\n"
        f"torch.save(normals.normals({KEY}, 7, 1001, 3, 5), {str(out_file)!r})\n"
    )
    run = subprocess.run  # cwd: not the checkout, whose per_triton '' would put first
    out = run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[-1], torch.load(out_file), out.stderr


def test_a_cached_library_is_used_without_a_compiler(tmp_path: Path):
    """Built once with the compiler; then, with no compiler on PATH, the cached library
    loads ("c-cached"), without a warning, and draws the same bits as the torch oracle."""
    built, _, _ = _bits_in_subprocess({}, tmp_path)
    assert built == "c-built"
    name, v, err = _bits_in_subprocess(_no_compiler(tmp_path), tmp_path)
    assert name == "c-cached" and "unavailable" not in err, err
    oracle = normals_torch.normals_block(*normals_torch.key_words(KEY), 3, 7, 5, 1001)
    assert torch.equal(v, oracle)


@pytest.mark.slow
def test_the_wheel_carries_the_sampler_which_loads_without_a_compiler(tmp_path: Path):
    """``pip wheel`` of the project gives a platform wheel with the compiled sampler; its
    package, with no compiler on PATH and empty caches, uses it ("c-packaged"), same bits."""
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*cmd, "-w", str(tmp_path / "w"), str(root)], check=True, timeout=600)
    (wheel,) = (tmp_path / "w").glob("per_triton-*.whl")
    assert "abi3-linux" in wheel.name or sys.platform != "linux", wheel.name
    import zipfile

    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    for so in (tmp_path / "site" / "per_triton" / "core").glob("*.so"):
        so.chmod(0o755)
    env = _no_compiler(tmp_path, PER_TRITON_PACKAGED_SAMPLER="1")
    name, v, err = _bits_in_subprocess(env, tmp_path, str(tmp_path / "site"))
    assert name == "c-packaged" and "unavailable" not in err, err
    assert torch.equal(v, normals_torch.normals_block(*normals_torch.key_words(KEY), 3, 7, 5, 1001))


def test_warning_without_a_compiler_says_so(tmp_path: Path):
    backend, warned = _backend_in_subprocess(_no_compiler(tmp_path), tmp_path)
    assert backend == "torch", warned
    assert "no C compiler found" in warned and "install a C compiler" in warned, warned


def test_warning_with_a_compiler_but_nothing_writable_says_so(tmp_path: Path):
    """Both folders blocked (paths under a file): the warning says a compiler IS installed
    and names the folders, instead of advising to install one."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = {"PER_TRITON_CACHE_DIR": str(blocker / "c"), "TMPDIR": str(tmp_path / "t")}
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / f"per_triton-{os.getuid()}").write_text("")  # a file, not a folder
    backend, warned = _backend_in_subprocess(env, tmp_path)
    assert backend == "torch", warned
    assert "a C compiler is installed" in warned and str(blocker / "c") in warned, warned
    assert "install a C compiler" not in warned and "PER_TRITON_CACHE_DIR" in warned, warned


def test_warning_when_the_build_fails_gives_the_compilers_message(tmp_path: Path):
    fake = tmp_path / "badcc"
    fake.write_text("#!/bin/sh\necho 'fatal error: no space left on the disk' >&2\nexit 3\n")
    fake.chmod(0o755)
    backend, warned = _backend_in_subprocess({"CC": str(fake)}, tmp_path)
    assert backend == "torch", warned
    assert "failed (exit 3)" in warned and "no space left on the disk" in warned, warned


@pytest.mark.slow
@pytest.mark.parametrize("compiler", [True, False], ids=["compiler", "no-compiler"])
def test_cpu_bench_result_records_the_sampler(tmp_path: Path, compiler: bool):
    """`per-triton bench --suite cpu`: every benchmark, the machine_info and the Markdown
    table name the sampler that ran ("torch" with no compiler and empty caches)."""
    env = {**os.environ, "PER_TRITON_CACHE_DIR": str(tmp_path / "cache"), "TMPDIR": str(tmp_path)}
    env = {**env, **({} if compiler else _no_compiler(tmp_path))}
    env = {k: v for k, v in env.items() if not k.startswith("PYTEST_XDIST")}
    out = tmp_path / "cpu.json"
    args = ["bench", "--suite", "cpu", "--quick", "--out", str(out), "-k", "b8-d650-s64-t1"]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "per_triton.cli", *args],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    expected = "c-built" if compiler else "torch"
    assert [b["extra_info"]["sampler"] for b in data["benchmarks"]] == [expected]
    assert data["machine_info"]["sampler"] == expected
    assert f"CPU sampler: {expected}" in out.with_suffix(".md").read_text()
