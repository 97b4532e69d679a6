"""``commune-agent``: check a config, probe once on the spot, or run."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys

from commune_agent import __version__
from commune_agent.app import Agent
from commune_agent.checks import build_checks
from commune_agent.config import AgentConfig, load_agent_config
from commune_agent.render import print_table, results_json
from commune_common.yamlconf import ConfigError

DEFAULT_CONFIG = "/etc/commune-agent/agent.yaml"


def _load(path: str) -> AgentConfig | None:
    try:
        return load_agent_config(path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"error: {issue}", file=sys.stderr)
        print(f"{path}: {len(exc.issues)} error(s)", file=sys.stderr)
        return None


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _load(args.file)
    if cfg is None:
        return 1
    if cfg.collector is not None and not args.without_token:
        problem = _token_problem(cfg, args.file)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            print(f"{args.file}: 1 error(s)", file=sys.stderr)
            return 1
    push = f"pushes to {cfg.collector.url}" if cfg.collector else "pushes nothing (no collector: section)"
    print(f"{args.file}: OK, site {cfg.site.id} ({cfg.site.commune}, {cfg.site.province}), "
          f"{len(build_checks(cfg))} checks, {push}")
    return 0


def _token_problem(cfg: AgentConfig, path: str) -> str | None:
    """What `run` would stop on: the collector's token missing or empty, located at its key."""
    from commune_agent.checkcollector import read_token
    from commune_common.yamlconf import load_yaml

    assert cfg.collector is not None
    _, problem = read_token(cfg.collector)
    if not problem:
        return None
    key = "token_file" if cfg.collector.token_file is not None else "token_env"
    with open(path, encoding="utf-8") as f:
        line = load_yaml(f.read(), path)[1].line_for(("collector", key))
    return (f"{path}:{line} collector.{key}: {problem}: without the site's token nothing is pushed and "
            "`run` stops; put the token issued for this site there (mode 600), or check only the config "
            "with --without-token")


def cmd_probe_once(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if cfg is None:
        return 2
    agent = Agent(cfg)
    if not args.json:
        print(f"probing {len(agent.checks)} checks of site {cfg.site.id} ...", file=sys.stderr)
    results = asyncio.run(agent.probe_once())
    if args.json:
        print(json.dumps(results_json(cfg.site.id, results), indent=2, ensure_ascii=False))
    else:
        print_table(results, sys.stdout)
    return 0 if all(r.ok for _, r in results) else 1


def cmd_check_collector(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if cfg is None:
        return 2
    if cfg.collector is None:
        print(f"{args.config}: no collector: section, so this agent pushes nothing; add collector: with url "
              "and token_file to send reports", file=sys.stderr)
        return 1
    from commune_agent.checkcollector import CollectorCheck, print_steps
    print(f"checking that the collector at {cfg.collector.url} hears site {cfg.site.id} ...", file=sys.stderr)
    steps = CollectorCheck(cfg, timeout=args.timeout).run()
    print_steps(steps, sys.stdout)
    return 0 if all(s.ok for s in steps) else 1


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if cfg is None:
        return 2
    logging.basicConfig(level=getattr(logging, (args.log_level or cfg.agent.log_level).upper()),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # httpx logs every request URL at INFO: noise each round, and a URL may carry a token
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.listen:
        cfg = cfg.model_copy(update={"agent": cfg.agent.model_copy(update={"listen": args.listen})})
    from commune_agent.narrator import PushNarrator, start_lines
    local, managed = cfg, cfg.collector is not None and cfg.collector.managed and not args.no_push
    if managed:  # checks come from the collector; start from the last good central config (remote_config)
        from commune_agent.remote_config import startup_config
        cfg, applied, apply_error = startup_config(local)
    agent = Agent(cfg)
    agent.serve_metrics()
    extra = []
    push = "off-config" if cfg.collector is None else "off-flag" if args.no_push else "on"
    for line in start_lines(cfg, agent.checks, push):
        logging.getLogger("commune_agent").info("%s", line)
    if push == "on":
        # memory: the pusher (httpx, ~13 MB) is loaded only by an agent that pushes to a collector
        from commune_agent.push.errors import PushSetupError
        from commune_agent.push.wiring import build_pusher
        try:
            pusher = build_pusher(agent)
            if managed:  # the config poller, beside the pusher (remote_config)
                from commune_agent.remote_config import start_managed
                extra += start_managed(agent, pusher, local, applied, apply_error)
        except PushSetupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        extra += [pusher.run, PushNarrator(pusher).run]
    asyncio.run(agent.run(extra_tasks=extra))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="commune-agent", description=(
        "Probe a commune site's links, power and devices; serve /metrics; push reports to the collector."))
    parser.add_argument("--version", action="version", version=f"commune-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check-config", help="validate a config file; exit 1 with file:line messages if invalid")
    p.add_argument("file", help="agent YAML file")
    p.add_argument("--without-token", action="store_true",
                   help="do not require collector.token_file to hold a token yet (installers that put the "
                        "token in place after the config)")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("probe-once", help="run every check once and print what the agent sees")
    p.add_argument("--config", "-c", default=DEFAULT_CONFIG, help=f"agent YAML file (default {DEFAULT_CONFIG})")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_probe_once)

    p = sub.add_parser("check-collector", help="check, step by step, that the collector hears this site; "
                       "exit 0 only when it does", description=(
                           "Resolve and reach the collector, verify TLS with collector.ca_file, check the token "
                           "is accepted for this site, the site is in the inventory, the clock offset, and send "
                           "one empty report that must come back acknowledged and visible."))
    p.add_argument("--config", "-c", default=DEFAULT_CONFIG, help=f"agent YAML file (default {DEFAULT_CONFIG})")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="per step (default: collector.timeout, at most 10)")
    p.set_defaults(func=cmd_check_collector)

    from commune_agent.enroll import add_subcommand as add_enroll

    add_enroll(sub)

    p = sub.add_parser("run", help="probe forever, serve /metrics, push to the collector")
    p.add_argument("--config", "-c", default=DEFAULT_CONFIG, help=f"agent YAML file (default {DEFAULT_CONFIG})")
    p.add_argument("--listen", help="override agent.listen (host:port for /metrics)")
    p.add_argument("--no-push", action="store_true", help="do not push to the collector")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `probe-once --json | head`: the reader left; not worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
