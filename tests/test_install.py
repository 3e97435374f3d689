"""The package as a user installs it: a wheel built from the checkout, installed into a fresh virtual environment
(reusing the installed packages of the interpreter running the tests), driven from a directory outside the checkout."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

from benchmarks.drawing import draw_on_paper
from mnist_cnn import read_test_split

CLONED = ("pyproject.toml", "README.md", "mnist_cnn", "conf", "checkpoints/pretrained", "benchmarks", "tests")

pytestmark = pytest.mark.slow


def _site_packages() -> list[str]:
    """The folders this interpreter imports installed packages from: its site-packages (in a virtual environment, the
    environment's and those of the interpreter it was made from, if it sees them) and the user's."""
    paths = [*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    if site.ENABLE_USER_SITE:
        paths.append(site.getusersitepackages())
    return list(dict.fromkeys(path for path in paths if Path(path).is_dir()))


def _run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the built wheel, the python of a fresh venv with it installed)."""
    source, dist = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    for name in CLONED:  # what a clean clone holds, without build output or local runs
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(
            REPO / name,
            source / name,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}),
        )
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", dist, source, cwd=source)
    (wheel,) = dist.glob("mnist_cnn-*.whl")
    environment = tmp_path_factory.mktemp("venv")
    _run(sys.executable, "-m", "venv", "--without-pip", environment, cwd=environment)
    python = environment / "bin" / "python"
    # The new environment imports what this interpreter has installed (pip, torch, ...), after its own packages.
    # Listed as folders, their .pth files are not run: an editable install of this checkout stays out of sight.
    own = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=environment).stdout
    (Path(own.strip()) / "installed_here.pth").write_text("\n".join(_site_packages()) + "\n")
    install = ("install", "--quiet", "--no-deps", "--no-index", "--ignore-installed")  # beside what it sees installed
    _run(python, "-m", "pip", *install, wheel, cwd=environment)
    return wheel, python


def test_the_wheel_carries_every_package_the_configs_the_weights_and_the_serve_page(venv: tuple[Path, Path]) -> None:
    wheel, _ = venv
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {str(path.relative_to(REPO)) for path in (REPO / "mnist_cnn").rglob("__init__.py")}
    assert packages <= names  # a subpackage missing from pyproject.toml's list would be left out
    configs = {f"mnist_cnn/conf/{path.relative_to(REPO / 'conf')}" for path in (REPO / "conf").rglob("*.yaml")}
    weights = {f"mnist_cnn/checkpoints/pretrained/{path.name}" for path in (REPO / "checkpoints/pretrained").iterdir()
               if path.suffix in (".ckpt", ".json")}  # fmt: skip
    assert configs <= names and weights <= names
    static = REPO / "mnist_cnn" / "serving" / "static"
    page = {f"mnist_cnn/serving/static/{path.name}" for path in static.iterdir()}
    assert len(page) == 5 and page <= names  # index.html, page.js, page.css; docs.html, docs.js


def test_the_wheel_holds_no_benchmark_and_no_test_helper(venv: tuple[Path, Path]) -> None:
    wheel, _ = venv
    archive = zipfile.ZipFile(wheel)
    folders = {name.split("/")[0] for name in archive.namelist()}
    assert folders == {"mnist_cnn", f"{wheel.name.split('-py3')[0]}.dist-info"}  # no benchmarks/, no tests/
    code = "".join(archive.read(name).decode() for name in archive.namelist() if name.endswith(".py"))
    assert "draw_on_paper" not in code and "def running_server" not in code and "from benchmarks" not in code


def test_the_installed_commands_work_from_any_directory(
    venv: tuple[Path, Path], fake_root: Path, tmp_path: Path
) -> None:
    _, python = venv
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "MNIST_DATA_DIR")}
    env["MNIST_DATA_DIR"] = str(fake_root)
    where = _run(python, "-c", "import mnist_cnn; print(mnist_cnn.__file__)", cwd=tmp_path, env=env).stdout
    assert Path(where.strip()).is_relative_to(python.parent.parent)  # the installed copy, not the checkout

    tiny = ("model=lenet5", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "data.val_size=100")
    _run(python, "-m", "mnist_cnn.train", *tiny, cwd=tmp_path, env=env)
    (run_dir,) = (tmp_path / "checkpoints" / "lenet5").iterdir()
    assert (run_dir / "best.ckpt").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()

    evaluated = _run(python, "-m", "mnist_cnn.evaluate", "ckpt_path=lenet5", cwd=tmp_path, env=env)
    assert "accuracy" in evaluated.stdout and len(list((tmp_path / "evaluations").iterdir())) == 1

    images, labels = read_test_split(fake_root)
    draw_on_paper(images[0, 0].numpy(), (80, 80), 50, (15, 15)).save(tmp_path / "digit.png")
    predicted = _run(python, "-m", "mnist_cnn.predict", "inputs=digit.png", "output=out.csv", cwd=tmp_path, env=env)
    assert "digit.png" in predicted.stdout and (tmp_path / "out.csv").is_file()

    code = "from mnist_cnn import MNISTClassifier; print(MNISTClassifier.from_pretrained('lenet5').hparams.model_name)"
    loaded = _run(python, "-c", code, cwd=tmp_path, env=env)
    assert loaded.stdout.strip() == "lenet5"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoints", "digit.png", "evaluations", "out.csv"]
