"""The `commune-collector` entry point: a plain message when the collector's libraries are absent.

The base install of commune-monitor is the agent's; the collector's libraries
come with the `collector` extra. On an agent-only machine the command should
say how to get them, not print an ImportError traceback.
"""

from __future__ import annotations

import sys

#: what the collector imports beyond the agent's dependencies (pyproject.toml, `collector` extra)
COLLECTOR_MODULES = ("fastapi", "uvicorn", "jinja2", "numpy", "psycopg", "openpyxl", "cramjam")


def missing_module() -> str | None:
    """The first collector library that cannot be found, None when all are installed."""
    from importlib.util import find_spec

    for name in COLLECTOR_MODULES:
        if find_spec(name) is None:
            return name
    return None


def main(argv: list[str] | None = None) -> int:
    absent = missing_module()
    if absent is not None:
        print(f"commune-collector: the collector's libraries are not installed here ({absent} is "
              "missing); this install has the agent only. Install the collector with: "
              "pip install 'commune-monitor[collector]'", file=sys.stderr)
        return 2
    from commune_collector.cli import main as collector_main

    return collector_main(argv)


if __name__ == "__main__":
    sys.exit(main())
