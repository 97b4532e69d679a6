"""``commune-collector agent-config``: each site's agent YAML (generated in ``commune_collector.agentconfig``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from commune_collector.agentconfig import (
    Scalar,
    builtin_profile_text,
    generate,
    load_profile,
    write_all,
    write_one,
)
from commune_collector.cli.common import Progress, add_config_arg, open_store_from
from commune_collector.provinces import provinces
from commune_collector.sites import Site
from commune_collector.store.base import all_sites


def cmd_agent_config(args: Any) -> int:
    if args.show_profile:
        sys.stdout.write(Path(args.profile).read_text(encoding="utf-8") if args.profile else builtin_profile_text())
        return 0
    if bool(args.site) == bool(args.all):
        print("error: name one SITE, or give --all (with --out DIR)", file=sys.stderr)
        return 2
    if args.all and not args.out:
        print("error: --all writes one file per site: give --out DIR", file=sys.stderr)
        return 2
    profile = load_profile(args.profile)
    overrides: dict[str, Scalar] = {"collector_url": args.collector_url} if args.collector_url else {}
    store = open_store_from(args)
    try:
        sites = _sites(store, args)
    finally:
        store.close()
    if sites is None:
        return 1
    progress = Progress("generated") if args.all else None
    configs = generate(profile, sites, overrides, progress)
    if args.site:
        text = configs[args.site]
        if args.out and Path(args.out).is_dir():
            write_all({args.site: text}, Path(args.out))
        elif args.out:
            write_one(text, args.out)
        if args.out:
            print(f"wrote the agent config of {args.site} to {args.out}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0
    write_all(configs, Path(args.out), Progress("written"))
    print(f"wrote {len(configs)} agent configs to {args.out} (token files are not included: "
          f"issue them with `commune-collector token issue SITE`)", file=sys.stderr)
    return 0


def _sites(store: Any, args: Any) -> list[Site] | None:
    if args.site:
        site = store.get_site(args.site)
        if site is None:
            print(f"error: site {args.site!r} is not in the collector's inventory "
                  f"(import it with: commune-collector sites import FILE)", file=sys.stderr)
            return None
        return [site]
    if args.province and args.province not in provinces():
        print(f"error: unknown province {args.province!r}", file=sys.stderr)
        return None
    sites = all_sites(store, args.province)
    if not sites:
        print("error: the inventory has no sites" + (f" in {args.province}" if args.province else ""),
              file=sys.stderr)
        return None
    return sites


def add_agent_config(sub: Any) -> None:
    p = sub.add_parser(
        "agent-config", help="write each site's agent YAML from the inventory and a profile",
        description="Generate commune-agent configs from the collector's inventory: one SITE to stdout "
                    "(or -o FILE), or --all sites (optionally of one --province) into --out DIR as "
                    "<site>.yaml. Every config is validated like `commune-agent check-config` first; on any "
                    "problem nothing is written. Tokens are never included, only token_file.")
    p.add_argument("site", nargs="?", metavar="SITE", help="site id (or use --all)")
    p.add_argument("--all", action="store_true", help="every site of the inventory")
    p.add_argument("--province", metavar="SLUG", help="with --all: only this province")
    p.add_argument("--out", "-o", metavar="DIR|FILE", help="--all: directory for <site>.yaml; SITE: file")
    p.add_argument("--profile", metavar="FILE", help="how inventory names are probed (default: the built-in "
                                                     "profile; see --show-profile)")
    p.add_argument("--collector-url", metavar="URL", help="the collector URL the agents push to "
                                                          "(sets the collector_url var)")
    p.add_argument("--show-profile", action="store_true", help="print the profile and exit (start your own from it)")
    add_config_arg(p)
    p.set_defaults(func=cmd_agent_config)
