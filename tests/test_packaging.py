"""Packaging as a user meets it: one version, the metadata and files of the wheel,
types a checker can read, dependencies that leave torch alone, the CLI's
``--version`` and a subcommand's own usage on a bad flag, Triton only for CUDA."""

from __future__ import annotations

import email.parser
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import per_triton
from per_triton.cli import SUBCOMMANDS, main
from per_triton.core import triton_support

ROOT = Path(__file__).resolve().parents[1]


# -- the CLI ------------------------------------------------------------------------------


def test_version_flag_prints_the_package_version(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"per-triton {per_triton.__version__}\n"


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_a_bad_flag_prints_that_subcommands_usage(
    command: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--no-such-flag"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.startswith(f"usage: per-triton {command} ")
    assert f"per-triton {command}: error: unrecognized arguments: --no-such-flag" in err


def test_a_flag_prefix_is_not_taken_for_the_flag(capsys: pytest.CaptureFixture) -> None:
    """``--suit`` is a typo, not ``--suite``: argparse's prefix matching is off."""
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--suit", "cpu"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --suit cpu" in capsys.readouterr().err


# -- one version source -----------------------------------------------------------------


def test_the_version_is_written_once() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    assert "version" not in project and "version" in project["dynamic"]
    dynamic = pyproject["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "per_triton.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:\w+\d*)?", per_triton.__version__)
    literal = re.compile(r"""^\s*(__version__|version)\s*=\s*["']\d""", re.M)
    sources = [*ROOT.glob("*.toml"), *ROOT.glob("*.cfg"), *(ROOT / "per_triton").rglob("*.py")]
    written = [p.relative_to(ROOT) for p in sources if literal.search(p.read_text())]
    assert written == [Path("per_triton/__init__.py")]


# -- the wheel ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*cmd, "-w", str(out), str(ROOT)], check=True, capture_output=True)
    (path,) = out.glob("per_triton-*.whl")
    return path


def _metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(zf.read(name).decode())


def test_wheel_ships_py_typed_license_and_one_version(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "per_triton/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    meta = _metadata(wheel)
    assert meta["Version"] == per_triton.__version__
    assert wheel.name.startswith(f"per_triton-{per_triton.__version__}-")
    assert meta["License-Expression"] == "MIT" and "Typing :: Typed" in meta.get_all("Classifier")
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_wheel_requires_no_triton_and_no_torchvision_outside_extras(wheel: Path) -> None:
    requires = _metadata(wheel).get_all("Requires-Dist")
    base = [r for r in requires if "extra ==" not in r]
    assert sorted(base) == ["numpy>=1.24", "torch>=2.11"]
    triton = [r for r in requires if r.startswith("triton")]
    assert triton == ['triton>=3.6; platform_system == "Linux" and extra == "cuda"']
    # no extra names torch, torchvision or timm (which requires torchvision, which pins
    # one torch release): an extra can never swap the user's torch
    pins = re.compile(r"(torch|torchvision|torchaudio|timm)\b")
    assert not [r for r in requires if pins.match(r) and "extra ==" in r]


def test_a_type_checker_reads_the_installed_packages_annotations(
    wheel: Path, tmp_path: Path
) -> None:
    """mypy on code using the installed wheel sees real signatures, not ``Any``."""
    pytest.importorskip("mypy")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip())
    zipfile.ZipFile(wheel).extractall(site)
    (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch, numpy
    (tmp_path / "use.py").write_text("import per_triton as pt\nreveal_type(pt.per_loss)\n")
    # torch's own sources are skipped (fast); per_triton's annotations are what is checked
    ini = "[mypy]\n[mypy-torch.*,numpy.*]\nfollow_imports = skip\n"
    (tmp_path / "mypy.ini").write_text(ini)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--no-incremental"]
        + ["--python-executable", str(python), "use.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'Revealed type is "def (h: ' in done.stdout and "num_slices: int" in done.stdout


# -- Triton only where it is used -------------------------------------------------------


_BLOCK_TRITON = """
import sys
class _NoTriton:
    def find_spec(self, name, *args):
        if name == "triton" or name.startswith("triton."):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, _NoTriton())
"""


def _without_triton(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("TRITON_INTERPRET", None)
    return subprocess.run(
        [sys.executable, "-c", _BLOCK_TRITON + code], env=env, capture_output=True, text=True
    )


def test_the_cpu_path_runs_without_triton_installed() -> None:
    done = _without_triton(
        "import torch, per_triton as pt\n"
        "h = torch.randn(8, 16, requires_grad=True)\n"
        "pt.per_loss(h, num_slices=8).backward()\n"
        "pt.per_loss(h, estimator='exact').backward()\n"
        "m = torch.nn.Sequential(torch.nn.Linear(16, 4), torch.nn.ReLU())\n"
        "pt.regularize(m, num_slices=8); m(h).sum().backward()\n"
        "pt.sliced_wasserstein_to_normal(h.detach(), 8, seed=0)\n"
        "assert 'triton' not in sys.modules\n"
    )
    assert done.returncode == 0, done.stderr


def test_cuda_kernels_without_triton_say_what_to_install() -> None:
    # the first CUDA call: the op's registered CUDA kernel, reached without a GPU by
    # redispatching CPU tensors to the CUDA key
    done = _without_triton(
        "import torch\nfrom per_triton.core import ops\n"
        "cuda = torch._C.DispatchKeySet(torch._C.DispatchKey.CUDA)\n"
        "h, seed = torch.zeros(1, 4), torch.zeros(1, dtype=torch.int64)\n"
        "torch.ops.per_triton.per_fwd.default.redispatch(cuda, h, seed, 4, 'ieee')\n"
    )
    assert done.returncode != 0
    assert "ImportError: per_triton's CUDA kernels need triton >= 3.6" in done.stderr
    assert "per-triton[cuda]" in done.stderr and "CPU tensors need no Triton" in done.stderr


@pytest.mark.parametrize(
    ("version", "ok"), [("3.5.1", False), ("2.3.0", False), ("3.6.0", True), ("3.10.0+git", True)]
)
def test_triton_version_floor(version: str, ok: bool) -> None:
    if ok:
        triton_support.require_triton(version)
        return
    with pytest.raises(ImportError, match=rf"triton >= 3\.6, found triton {re.escape(version)}"):
        triton_support.require_triton(version)
