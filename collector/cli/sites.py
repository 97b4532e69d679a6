"""``commune-collector sites``: import, list and generate the site inventory."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from commune_collector.cli.common import Progress, add_config_arg, open_store_from
from commune_collector.generate import generate_sites
from commune_collector.inventory import load_inventory, sites_to_csv, sites_to_yaml
from commune_collector.provinces import provinces
from commune_collector.store import Store


def cmd_sites_import(args: argparse.Namespace) -> int:
    sites = load_inventory(args.file)
    print(f"{args.file}: {len(sites)} sites valid", file=sys.stderr)
    if args.dry_run:
        return 0
    store = open_store_from(args)
    try:
        counts = store.upsert_sites(sites, progress=Progress("stored"))
        gone = _missing_sites(store, sites) if args.remove_missing else []
        removed = store.remove_sites(gone, time.time()) if gone else None
    finally:
        store.close()
    print(f"imported {len(sites)} sites: {counts.inserted} new, {counts.updated} updated, "
          f"{counts.unchanged} unchanged")
    if removed is not None:
        print(f"removed {removed.sites} sites no longer in the file ({', '.join(gone[:10])}"
              f"{', ...' if len(gone) > 10 else ''}); {removed.tokens_revoked} token(s) revoked")
    return 0


def _missing_sites(store: Store, sites: list[Any]) -> list[str]:
    """Stored sites of the file's provinces that the file no longer lists (merged or removed communes)."""
    listed = {s.id for s in sites}
    gone: list[str] = []
    for province in sorted({s.province for s in sites}):
        offset = 0
        while True:
            page = store.list_sites(province, 1000, offset)
            gone += [s.id for s in page.items if s.id not in listed]
            offset += len(page.items)
            if not page.items or offset >= page.total:
                break
    return gone


def cmd_sites_remove(args: argparse.Namespace) -> int:
    store = open_store_from(args)
    try:
        unknown = [site for site in args.site if store.get_site(site) is None]
        if unknown:
            print(f"error: not in the inventory: {', '.join(unknown)}", file=sys.stderr)
            return 1
        removed = store.remove_sites(args.site, time.time())
    finally:
        store.close()
    print(f"removed {removed.sites} site(s); {removed.tokens_revoked} token(s) revoked (a running collector "
          f"refuses their reports within auth.cache_ttl)")
    return 0


def cmd_sites_list(args: argparse.Namespace) -> int:
    if args.province and args.province not in provinces():
        print(f"error: unknown province {args.province!r}; known: {', '.join(provinces())}", file=sys.stderr)
        return 2
    store = open_store_from(args)
    try:
        page = store.list_sites(args.province, args.limit, args.offset)
        status = store.site_status([s.id for s in page.items]) if page.items else {}
    finally:
        store.close()
    if args.json:
        print(json.dumps({"total": page.total, "items": [_site_json(s, status.get(s.id)) for s in page.items]},
                         ensure_ascii=False, indent=2))
        return 0
    for s in page.items:
        st = status.get(s.id)
        seen = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.last_report_at)) if st else "never"
        print(f"{s.id:<40} {s.province:<12} {s.commune:<30} last report {seen}")
    print(f"{len(page.items)} of {page.total} sites", file=sys.stderr)
    return 0


def _site_json(site: object, status: object) -> dict:
    return {**asdict(site), "status": asdict(status) if status else None}  # type: ignore[call-overload]


def cmd_sites_generate(args: argparse.Namespace) -> int:
    sites = generate_sites(args.count, args.seed)
    fmt = args.format or ("yaml" if args.output and args.output.endswith((".yaml", ".yml")) else "csv")
    text = sites_to_yaml(sites) if fmt == "yaml" else sites_to_csv(sites)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {len(sites)} sites over {len({s.province for s in sites})} provinces to {args.output}",
              file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def add_sites(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sites", help="the site inventory: import, remove, list, generate")
    ssub = p.add_subparsers(dest="sites_command", required=True, metavar="ACTION")
    imp = ssub.add_parser("import", help="import sites from CSV or YAML (idempotent, all or nothing)",
                          description="Columns: id,name,province,commune[,links,devices,power]; "
                                      "lists separated by ';'. Errors name the line.")
    imp.add_argument("file", help="inventory .csv, .yaml or .yml")
    imp.add_argument("--dry-run", action="store_true", help="validate only")
    add_config_arg(imp)
    imp.add_argument("--remove-missing", action="store_true",
                     help="remove the stored sites of the file's provinces that the file no longer lists (merged "
                          "or removed communes) and revoke their tokens")
    imp.set_defaults(func=cmd_sites_import)
    rm = ssub.add_parser("remove", help="take sites out of the inventory and revoke their tokens",
                         description="Their agents' reports are refused from then on; their evidence stays until "
                                     "retention removes it.")
    rm.add_argument("site", nargs="+", help="site id(s)")
    add_config_arg(rm)
    rm.set_defaults(func=cmd_sites_remove)
    lst = ssub.add_parser("list", help="list sites with their last report time")
    lst.add_argument("--province", help="only this province (slug, e.g. ha-noi)")
    lst.add_argument("--limit", type=int, default=100)
    lst.add_argument("--offset", type=int, default=0)
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    add_config_arg(lst)
    lst.set_defaults(func=cmd_sites_list)
    gen = ssub.add_parser("generate", help="write a realistic inventory (34 provinces, Vietnamese names)")
    gen.add_argument("--count", type=int, default=3321, help="number of sites (default 3321)")
    gen.add_argument("--seed", type=int, default=1, help="same seed, same inventory (default 1)")
    gen.add_argument("--format", choices=["csv", "yaml"], help="default: from -o's suffix, else csv")
    gen.add_argument("--output", "-o", help="file to write (default: stdout)")
    gen.set_defaults(func=cmd_sites_generate)
