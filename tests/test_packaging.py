"""The project installs like a package: the sdist holds what a build needs, and the wheel built
from it runs every command from an empty folder, with no checkout on the path."""

import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

pytestmark = pytest.mark.slow  # (make test-fast leaves these out; make test runs them)

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("wavegen", "recipes", "pyproject.toml", "README.md", "LICENSE")  # what a build reads


def _run(command: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd, env=env)
    assert done.returncode == 0, f"{command}: {done.stdout[-1500:]}{done.stderr[-2500:]}"
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict:
    """The sdist built from a copy of the project, and the wheel built from that sdist (as
    ``python -m build`` does), without build isolation: setuptools comes from this venv."""
    pytest.importorskip("setuptools")
    tmp = tmp_path_factory.mktemp("dist")
    source = tmp / "src"
    for name in SOURCES:  # a copy: building writes build/ and *.egg-info beside the sources
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    built = _run(
        [
            sys.executable,
            "-c",
            "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))",
            str(tmp / "sdist"),
        ],
        cwd=source,
    )
    sdist = tmp / "sdist" / built.stdout.strip().splitlines()[-1]
    with tarfile.open(sdist) as archive:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # (Python >= 3.11.4)
        archive.extractall(tmp / "unpacked", **safe)
    (unpacked,) = (tmp / "unpacked").iterdir()
    wheel_build = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(unpacked),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp / "wheel"),
        ],
        cwd=tmp,
    )
    (wheel,) = (tmp / "wheel").glob("wavegen-*.whl")
    return {"sdist": sdist, "wheel": wheel, "stderr": wheel_build.stderr, "tmp": tmp}


def test_the_package_list_is_every_package_folder():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "wavegen").rglob("__init__.py")}
    assert sorted(declared) == sorted(found | {"wavegen.recipes"})


def test_the_sdist_carries_recipes_license_and_native_source(dist):
    names = {name.split("/", 1)[1] for name in tarfile.open(dist["sdist"]).getnames() if "/" in name}
    recipes = {p.name for p in (ROOT / "recipes").glob("*.toml")}
    assert recipes and {f"recipes/{name}" for name in recipes} <= names
    assert {"LICENSE", "wavegen/generate/native/wavenet.cpp", "pyproject.toml", "README.md"} <= names


def test_the_wheel_carries_recipes_license_and_native_source(dist):
    assert "Package would be ignored" not in dist["stderr"]  # every folder is a declared package
    names = zipfile.ZipFile(dist["wheel"]).namelist()
    assert "wavegen/generate/native/wavenet.cpp" in names and "wavegen/generate/native/__init__.py" in names
    assert {f"wavegen/recipes/{p.name}" for p in (ROOT / "recipes").glob("*.toml")} <= set(names)
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    shipped = {
        f"wavegen/shipped-models/{p.parent.name}/{p.name}" for p in (ROOT / "wavegen" / "shipped-models").glob("*/*")
    }
    assert shipped and shipped <= set(names)  # the models that ship, by name


def test_the_installed_wheel_runs_every_step_outside_the_checkout(dist, tmp_path):
    site, work = tmp_path / "site", tmp_path / "work"
    _run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(dist["wheel"])],
        cwd=tmp_path,
    )
    work.mkdir()
    # Only the installed copy: no checkout on the path, nor as the working folder.
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}

    def wavegen(*args: str) -> subprocess.CompletedProcess:
        return _run([sys.executable, "-m", "wavegen", *args], cwd=work, env=env)

    where = _run([sys.executable, "-c", "import wavegen; print(wavegen.__file__)"], cwd=work, env=env)
    assert Path(where.stdout.strip()).is_relative_to(site)
    wavegen("demo", "--steps", "5", "--seconds", "0.1", "--n", "1", "--quiet")
    assert list((work / "samples").glob("*.wav")) and (work / "samples" / "index.html").is_file()

    (work / "tones").mkdir()
    t = np.arange(16000) / 16000
    soundfile.write(work / "tones" / "a440.wav", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    wavegen("prepare", "tones", "--recipe", "tiny", "--out", "prepared", "--quiet")
    assert (work / "prepared").is_dir() and any((work / "prepared").iterdir())
    wavegen("train", "--recipe", "tiny", "--steps", "3", "--data", "prepared", "--run", "runs/tones", "--quiet")
    assert (work / "runs" / "tones" / "checkpoints" / "latest.pt").is_file()
    wavegen("synth", "--run", "runs/tones", "--seconds", "0.1", "--out", "out", "--quiet")
    assert list((work / "out").glob("*.wav"))
    wavegen("synth", "--model", "melodies", "--seconds", "0.1", "--out", "shipped", "--quiet")  # no training
    assert list((work / "shipped").glob("melodies-step2000-seed0.wav"))
