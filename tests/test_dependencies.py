"""Each program declares exactly what it imports (pyproject.toml).

The base dependencies are the agent's: every third-party module that
commune_agent or commune_common imports (at top level or lazily inside a
function) must come from a declared base distribution, and every base
distribution must be imported by them, so an agent-only install carries
nothing the agent does not use. The collector's imports must be covered by
the base list plus the `collector` extra. The agent never imports the
collector.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"commune_agent": ROOT / "agent", "commune_common": ROOT / "common",
           "commune_collector": ROOT / "collector"}
OWN = set(FOLDERS)
#: declared for what they do at run time, never imported by name
RUNTIME_ONLY = {
    "uvloop": "uvicorn picks it as its event loop",
    "httptools": "uvicorn picks it as its HTTP parser",
}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    return normalize(re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0])


def declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {requirement_name(s) for s in project["dependencies"]}
    collector = {requirement_name(s) for s in project["optional-dependencies"]["collector"]}
    return base, collector


def imported_modules(*packages: str) -> dict[str, set[str]]:
    """Top-level module -> the files importing it, for every import statement anywhere in the code."""
    found: dict[str, set[str]] = {}
    for package in packages:
        for path in FOLDERS[package].rglob("*.py"):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def third_party(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: files for m, files in modules.items()
            if m not in sys.stdlib_module_names and m not in OWN and m != "__future__"}


def distributions_of(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    """Distribution name -> the modules it provides among those imported."""
    providers = packages_distributions()
    out: dict[str, set[str]] = {}
    for module in modules:
        dists = providers.get(module)
        assert dists, f"no installed distribution provides {module!r} (imported by {sorted(modules[module])})"
        for dist in dists:
            out.setdefault(normalize(dist), set()).add(module)
    return out


def test_agent_imports_only_declared_base_dependencies():
    base, _ = declared()
    modules = third_party(imported_modules("commune_agent", "commune_common"))
    undeclared = {d: mods for d, mods in distributions_of(modules).items() if d not in base}
    assert not undeclared, (
        "the agent imports packages that are not in pyproject.toml's dependencies: "
        + ", ".join(f"{d} (module {', '.join(sorted(m))}, in {sorted(modules[next(iter(m))])[0]})"
                    for d, m in sorted(undeclared.items())))


def test_every_base_dependency_is_imported_by_the_agent():
    base, _ = declared()
    modules = third_party(imported_modules("commune_agent", "commune_common"))
    unused = base - set(distributions_of(modules))
    assert not unused, f"declared for the agent but never imported by it: {sorted(unused)}"


def test_collector_imports_are_declared_in_base_or_collector_extra():
    base, collector = declared()
    modules = third_party(imported_modules("commune_collector"))
    undeclared = sorted(set(distributions_of(modules)) - base - collector)
    assert not undeclared, f"the collector imports undeclared packages: {undeclared}"


def test_every_collector_extra_is_imported_or_has_a_reason():
    base, collector = declared()
    modules = third_party(imported_modules("commune_collector"))
    unused = collector - set(distributions_of(modules)) - set(RUNTIME_ONLY)
    assert not unused, f"in the collector extra but never imported: {sorted(unused)}"


def test_the_agent_never_imports_the_collector():
    modules = imported_modules("commune_agent", "commune_common")
    assert "commune_collector" not in modules, sorted(modules.get("commune_collector", ()))


@pytest.mark.parametrize("name", ["commune_agent", "commune_common"])
def test_the_walk_sees_lazy_imports(name):
    """The walk must see imports inside functions (the agent imports httpx lazily)."""
    modules = imported_modules(name)
    assert modules, name
    if name == "commune_agent":
        assert "httpx" in modules and "pysnmp" in modules


def test_the_collector_launcher_checks_modules_of_the_collector_extra():
    """`commune-collector` on an agent-only install names the extra; its probe list must stay true."""
    from commune_collector.launcher import COLLECTOR_MODULES, missing_module

    _, collector = declared()
    providers = packages_distributions()
    for module in COLLECTOR_MODULES:
        assert {normalize(d) for d in providers[module]} & collector, module
    assert missing_module() is None  # this environment has the extra (make setup installs it)
