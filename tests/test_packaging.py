"""pyproject.toml ships what the source tree holds.

core/, plugins/, envs/, conf/ and testing/ sit at the repository root and are mapped into the ``r1gym`` namespace by
``[tool.setuptools] package-dir``; setuptools ships only the packages listed and only the data files that
``package-data`` matches. A forgotten entry works in the editable install and breaks the wheel, so these
tests read the tree, not the installed package.
"""

from __future__ import annotations

import fnmatch
import importlib.resources
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
PACKAGE_DIR: dict[str, str] = SETUPTOOLS["package-dir"]
MAPPED = {folder: package for package, folder in PACKAGE_DIR.items()}  # "core" -> "r1gym.core"
SKIP = {"__pycache__"}


def _package_folders() -> dict[str, Path]:
    """Dotted package name -> folder, for every folder with an __init__.py under the mapped roots."""
    out = {}
    for folder, package in MAPPED.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT / folder)
            if SKIP.intersection(rel.parts):
                continue
            out[".".join([package, *rel.parts])] = init.parent
    return out


def _data_files() -> list[tuple[str, str]]:
    """(package, path relative to it) for every non-Python file that must ship (YAML, JSONL, ...)."""
    packages = _package_folders()
    out = []
    for folder, package in MAPPED.items():
        for f in sorted((ROOT / folder).rglob("*")):
            if not f.is_file() or f.suffix in {".py", ".pyc"} or SKIP.intersection(f.parts) or f.name.startswith("."):
                continue
            # the deepest listed package that contains the file owns it
            owner = max((p for p, d in packages.items() if f.is_relative_to(d)), key=len)
            out.append((owner, f.relative_to(packages[owner]).as_posix()))
    return out


def _matches_package_data(package: str, rel: str) -> bool:
    data: dict[str, list[str]] = SETUPTOOLS.get("package-data", {})
    for pkg, patterns in data.items():
        if pkg in ("", "*"):
            prefix = ""
        elif package == pkg or package.startswith(pkg + "."):
            prefix = package[len(pkg) + 1 :].replace(".", "/") if package != pkg else ""
        else:
            continue
        path = f"{prefix}/{rel}" if prefix else rel
        for pat in patterns:
            # setuptools globs: "**/" spans folders (also none), "*" stays within one
            if fnmatch.fnmatch(path, pat) or (pat.startswith("**/") and fnmatch.fnmatch(path, pat[3:])):
                return True
    return False


def test_roots_are_mapped():
    assert MAPPED == {"core": "r1gym.core", "plugins": "r1gym.plugins", "envs": "r1gym.envs", "conf": "r1gym.conf",
                      "testing": "r1gym.testing"}


@pytest.mark.parametrize("package", sorted(_package_folders()))
def test_every_package_folder_is_listed(package):
    assert package in SETUPTOOLS["packages"], f"add {package!r} to [tool.setuptools] packages in pyproject.toml"


def test_listed_packages_exist():
    missing = sorted(set(SETUPTOOLS["packages"]) - set(_package_folders()))
    assert not missing, f"listed in pyproject.toml but no folder with an __init__.py: {missing}"


@pytest.mark.parametrize("group", sorted(p.name for p in (ROOT / "conf").iterdir() if p.is_dir() and p.name not in SKIP))
def test_every_conf_group_is_a_package(group):
    assert (ROOT / "conf" / group / "__init__.py").is_file(), f"conf/{group} needs an __init__.py to ship in a wheel"


@pytest.mark.parametrize(("package", "rel"), _data_files(), ids=lambda x: str(x))
def test_every_data_file_matches_package_data(package, rel):
    assert _matches_package_data(package, rel), f"{package}/{rel} is not matched by [tool.setuptools.package-data]"


def test_matcher_rejects_what_setuptools_would_not_ship():
    """The check above can fail: a file type that no pattern names is reported."""
    assert _matches_package_data("r1gym.conf.env", "countdown.yaml")
    assert not _matches_package_data("r1gym.conf.env", "countdown.json")
    assert not _matches_package_data("r1gym.core", "notes.txt")


def test_installed_package_finds_its_data():
    conf = importlib.resources.files("r1gym.conf")
    assert conf.joinpath("config.yaml").is_file()
    assert conf.joinpath("env", "countdown.yaml").is_file()
    assert importlib.resources.files("r1gym.envs").joinpath("data", "sample_arithmetic.jsonl").is_file()


def test_console_script():
    assert PYPROJECT["project"]["scripts"]["r1gym"] == "r1gym.core.cli:main"


def test_pytest_plugin_entry_point():
    """pytest finds r1gym.testing through the ``pytest11`` group, in the installed metadata too."""
    from importlib.metadata import entry_points

    assert PYPROJECT["project"]["entry-points"]["pytest11"] == {"r1gym": "r1gym.testing.plugin"}
    installed = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert installed.get("r1gym") == "r1gym.testing.plugin", (
        "the installed r1gym lacks its pytest11 entry point: reinstall it (pip install -e .)")


def test_wheel_holds_every_package_and_data_file(tmp_path):
    """Build a wheel offline from a copy of the tree (no network: --no-index --no-build-isolation; ~2 s)."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    for name in ("README.md", "LICENSE"):  # a missing readme is only a warning for setuptools
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src)
    for folder in MAPPED:
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
           "--disable-pip-version-check", "--no-cache-dir", "-q", "-w", str(tmp_path / "dist"), str(src)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if res.returncode != 0 and "No module named" in res.stderr:
        pytest.skip(f"the build backend is not installed here: {res.stderr.strip().splitlines()[-1]}")
    assert res.returncode == 0, res.stdout + res.stderr
    (wheel,) = (tmp_path / "dist").glob("r1gym-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package, folder in _package_folders().items():
        assert f"{package.replace('.', '/')}/__init__.py" in names, f"{package} is not in the wheel"
    for package, rel in _data_files():
        assert f"{package.replace('.', '/')}/{rel}" in names, f"{package}/{rel} is not in the wheel"
