"""Package layout: each top-level folder installs under a name of the project's own.

``agent/`` -> ``commune_agent``, ``collector/`` -> ``commune_collector``,
``common/`` -> ``commune_common``: the repository keeps the short folder names
users were promised, site-packages gets names nobody else will use. Everything
else about the distribution is in ``pyproject.toml``.
"""

from setuptools import find_packages, setup

FOLDERS = {"commune_agent": "agent", "commune_collector": "collector", "commune_common": "common"}


def packages() -> list[str]:
    """Every package under each folder, named under its import name."""
    found = []
    for name, folder in FOLDERS.items():
        found.append(name)
        found += [f"{name}.{sub}" for sub in find_packages(folder)]
    return found


setup(package_dir=FOLDERS, packages=packages())
