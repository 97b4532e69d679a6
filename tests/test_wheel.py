"""The built wheel installs only the project's own top-level names, and everything under the folders.

``setup.py`` maps ``agent/`` -> ``commune_agent``, ``collector/`` -> ``commune_collector``,
``common/`` -> ``commune_common``; nothing generic (``common``, ``tests``, ``testsupport``) may reach
site-packages, and no package or data file under those folders may be left out.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"agent": "commune_agent", "collector": "commune_collector", "common": "commune_common"}


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Paths inside a wheel built by pip from a copy of the tracked files (the tree stays untouched)."""
    src = tmp_path_factory.mktemp("src")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def _shipped(path: str) -> str | None:
    """Where a tracked file under the folders should be in the wheel, or None when it is not package data."""
    folder, _, rest = path.partition("/")
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["*"]
    if path.endswith(".py") or any(fnmatch.fnmatch(Path(path).name, p) for p in patterns):
        return f"{FOLDERS[folder]}/{rest}"
    return None


def test_the_wheel_installs_only_the_projects_own_top_level_names(wheel_names: set[str]) -> None:
    top = {name.split("/")[0] for name in wheel_names if not name.split("/")[0].endswith(".dist-info")}
    assert top == set(FOLDERS.values())


def test_every_module_and_data_file_under_the_folders_is_in_the_wheel(wheel_names: set[str]) -> None:
    tracked = subprocess.run(["git", "ls-files", *FOLDERS], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    expected = {shipped for path in tracked if (shipped := _shipped(path))}
    assert len(expected) > 150  # the folders were read
    assert expected - wheel_names == set()
    packages = {str(p.parent.relative_to(ROOT)) for f in FOLDERS for p in (ROOT / f).rglob("__init__.py")}
    for package in packages:
        folder, _, rest = package.partition("/")
        assert f"{FOLDERS[folder]}/{rest + '/' if rest else ''}__init__.py" in wheel_names, package
