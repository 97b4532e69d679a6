"""``commune-collector``: serve the API, manage the inventory and the per-site tokens.

Subcommands are registered in ``COMMANDS``: each entry is one function that
adds its parser(s); a feature adds a subcommand with one function (in the
module of its group here, ``cli/<group>.py``) and one line. The work itself
lives in the domain modules those import (``agentconfig``, ``export``, ...);
``cli.common`` holds what the subcommands share.
"""

from __future__ import annotations

import argparse
import sys

from commune_collector import __version__
from commune_collector.cli import (
    agent_config,
    check,
    database,
    export,
    fleet,
    maintenance,
    operator,
    rollout,
    serve,
    simulate,
    sites,
    token,
)
from commune_collector.cli.common import (
    NoConfig,
    Register,
    UsageError,
    configured_dsn,
    print_config_error,
)
from commune_collector.store.base import StoreError
from commune_common.yamlconf import ConfigError

# one function per subcommand (tree); a feature adds its own with one line
COMMANDS: list[Register] = [serve.add_serve, check.add_check_config, database.add_migrate,
                            database.add_aggregate, sites.add_sites, token.add_token,
                            operator.add_operator,
                            agent_config.add_agent_config, export.add_report, check.add_check_criteria,
                            simulate.add_simulate, fleet.add_subcommands, maintenance.add_maintenance,
                            rollout.add_rollout]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="commune-collector", description=(
        "Collect commune-agent reports, keep the evidence, serve the API and the status page."))
    parser.add_argument("--version", action="version", version=f"commune-collector {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print_config_error(exc)
        return 1
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (NoConfig, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from commune_collector.dbreach import unreachable_message
        message = unreachable_message(exc, configured_dsn(args), getattr(args, "config", None))
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
