"""The project's normal install ships what the native engine needs to build on a fresh machine."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_carries_the_native_source(tmp_path):
    pytest.importorskip("setuptools")
    source = tmp_path / "src"
    shutil.copytree(ROOT / "wavegen", source / "wavegen", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    assert "Package would be ignored" not in built.stderr  # every folder is a declared package
    (wheel,) = (tmp_path / "dist").glob("wavegen-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "wavegen/generate/native/wavenet.cpp" in names and "wavegen/generate/native/__init__.py" in names
