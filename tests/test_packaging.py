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


def _third_party_imports(roots=("core", "plugins", "envs", "conf", "testing")) -> dict[str, dict[str, bool]]:
    """Top-level module -> {"file:line": imported when the file is imported} for every absolute import of a module
    outside the standard library and r1gym, read from the source (AST). An import inside a function, under
    ``if TYPE_CHECKING`` or in a ``try`` that handles ImportError is lazy (False)."""
    import ast

    def lazy_parents(tree: ast.AST):
        lazy: set[int] = set()

        def visit(node: ast.AST, is_lazy: bool) -> None:
            if isinstance(node, (ast.Import, ast.ImportFrom)) and is_lazy:
                lazy.add(id(node))
            for child in ast.iter_child_nodes(node):
                child_lazy = is_lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) and child in node.body:
                    child_lazy = True
                if isinstance(node, ast.Try) and child in node.body and any(
                        h.type is not None and "ImportError" in ast.unparse(h.type) for h in node.handlers):
                    child_lazy = True
                visit(child, child_lazy)

        visit(tree, False)
        return lazy

    found: dict[str, dict[str, bool]] = {}
    for root in roots:
        for path in sorted((ROOT / root).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            lazy = lazy_parents(tree)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in ("r1gym", "__future__"):
                        where = f"{path.relative_to(ROOT)}:{node.lineno}"
                        found.setdefault(top, {})[where] = id(node) not in lazy
    return found


def _distribution_names(module: str) -> set[str]:
    """The installed distributions that provide ``module`` (normalised); the module's own name when none is
    installed here (vllm on a CPU machine)."""
    import importlib.metadata
    import re

    dists = importlib.metadata.packages_distributions().get(module) or [module]
    return {re.sub(r"[-_.]+", "-", d).lower() for d in dists}


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    """(the dependencies, {extra: its requirements}) of pyproject.toml, as normalised distribution names."""
    import re

    from packaging.requirements import Requirement

    def names(reqs: list[str]) -> set[str]:
        return {re.sub(r"[-_.]+", "-", Requirement(r).name).lower() for r in reqs}

    project = PYPROJECT["project"]
    return names(project["dependencies"]), {k: names(v) for k, v in project.get("optional-dependencies", {}).items()}


def _undeclared(imports: dict[str, dict[str, bool]], core: set[str], extras: dict[str, set[str]]) -> list[str]:
    """Imports no dependency or extra declares, and eager imports of what only an extra declares."""
    problems = []
    everything = core.union(*(v for k, v in extras.items() if k != "dev"))  # dev is ours, not a user's extra
    for module, sites in sorted(imports.items()):
        # r1gym.testing is a pytest plugin (entry point pytest11): pytest imports it, so pytest is there
        sites = {w: e for w, e in sites.items() if not (module == "pytest" and w.startswith("testing"))}
        if not sites:
            continue
        dists = _distribution_names(module)
        if not dists & everything:
            problems.append(f"{module} (distribution {', '.join(sorted(dists))}) is imported at {', '.join(sorted(sites))} "
                            "but declared in neither [project] dependencies nor a user's extra (dev does not count)")
            continue
        eager = [w for w, is_eager in sites.items() if is_eager]
        if eager and not dists & core:
            extra = sorted(k for k, v in extras.items() if dists & v and k != "dev")
            problems.append(f"{module} belongs to the extra(s) {extra} but is imported when the module loads at "
                            f"{', '.join(eager)}: import it inside the function that needs it, with an error naming "
                            f"pip install 'r1gym[{(extra or ['?'])[0]}]'")
    return problems


def test_every_third_party_import_is_declared_and_extras_are_imported_lazily():
    """Every module core/, plugins/, envs/, conf/ and testing/ import comes from a declared distribution (httpx
    was imported and not declared), and a module only an extra provides is imported inside functions."""
    imports = _third_party_imports()
    core, extras = _declared()
    assert {"torch", "httpx", "gymnasium"} <= set(imports)  # the scan sees lazy imports (httpx is one) too
    assert _undeclared(imports, core, extras) == []
    # the check can fail: without httpx declared, or with gguf imported eagerly while only an extra has it
    assert any(p.startswith("httpx ") for p in _undeclared(imports, core - {"httpx"}, extras))
    eager_gguf = {**imports, "gguf": {"core/models.py:1": True}}
    assert any(p.startswith("gguf belongs to the extra(s) ['smollm2']") for p in _undeclared(eager_gguf, core, extras))


def test_optional_weight_lives_in_extras():
    """gguf (converting the built-in model once) and accelerate (its launcher) are extras, not dependencies,
    and dev carries them so `make test` and `make demo` still have them."""
    core, extras = _declared()
    assert not {"gguf", "accelerate"} & core
    assert {"gguf", "accelerate"} <= extras["smollm2"]  # transformers requires accelerate to read a GGUF
    assert "accelerate" in extras["accelerate"]
    assert {"gguf", "accelerate"} <= extras["dev"]
    assert PYPROJECT["project"]["license"] == "Apache-2.0"  # an SPDX expression (PEP 639), not a table


@pytest.mark.parametrize("absent", ["gguf", "accelerate"])
def test_converting_the_builtin_model_without_its_extra_names_the_extra(monkeypatch, tmp_path, absent):
    from r1gym.core import models

    monkeypatch.setitem(sys.modules, absent, None)  # what a plain `pip install r1gym` lacks
    with pytest.raises(ImportError, match=rf"needs {absent}: pip install 'r1gym\[smollm2\]'"):
        models._convert_gguf(tmp_path / "SmolLM2.gguf", tmp_path / "out")
    assert not (tmp_path / "out").exists()
