"""``commune-agent enroll``: exchange an enrollment token for this site's own token, once, at the site.

The operator hands the installer an enrollment token (``commune-collector
enroll-token create``) and the site id from the inventory sheet. This command
sends both with the agent's instance id (drawn now if the state dir is new,
the same one the agent will push as) to ``POST /api/v1/enroll`` and stores
the site token it gets back in the state dir, mode 0600. The token is never
printed. With ``--config FILE`` (absent) it also writes a minimal config for
a centrally managed agent: the checks then come from the collector.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import httpx
import yaml

from commune_agent.spool import FILE_NAME, Spool

TOKEN_FILE = "token"
ENROLL_PATH = "/api/v1/enroll"
DEFAULT_STATE_DIR = "/var/lib/commune-agent"


def instance_id(state_dir: Path) -> str:
    """The agent's instance id, from its spool (made now if there is none yet)."""
    spool = Spool(state_dir / FILE_NAME, max_bytes=256 * 1024 * 1024, max_age=7 * 86400.0)
    try:
        return spool.instance
    finally:
        spool.close()


def write_secret(path: Path, text: str) -> None:
    """Whole or nothing, never readable by others (created 0600, fsynced, renamed)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def managed_config(answer: dict, collector: str, token_file: Path, state_dir: Path, ca_file: Path | None) -> str:
    site = {"id": answer["site"], "province": answer["province"], "commune": answer["commune"]}
    if answer.get("name"):
        site["name"] = answer["name"]
    section: dict = {"url": collector, "token_file": str(token_file), "managed": True}
    if ca_file:
        section["ca_file"] = str(ca_file)
    data = {"site": site, "agent": {"state_dir": str(state_dir)}, "collector": section}
    return ("# commune-agent, enrolled with `commune-agent enroll`: the checks come from the collector\n"
            "# (collector.managed: true); this file only says who the site is and where the collector is.\n"
            + yaml.safe_dump(data, allow_unicode=True, sort_keys=False))


def _problem_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        return str(body.get("detail") or body.get("title") or response.text[:300])
    except ValueError:
        return response.text[:300].replace("\n", " ")


def cmd_enroll(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    try:
        enroll_token = Path(args.token_file).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: --token-file {args.token_file}: cannot read: {exc}", file=sys.stderr)
        return 2
    if not enroll_token:
        print(f"error: --token-file {args.token_file} is empty", file=sys.stderr)
        return 2
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        instance = instance_id(state_dir)
    except Exception as exc:  # noqa: BLE001 - spool or permission trouble: say where
        print(f"error: --state-dir {state_dir}: {exc}", file=sys.stderr)
        return 2
    verify: object = True
    if args.ca_file:
        from commune_agent.push.errors import PushSetupError
        from commune_agent.push.wiring import tls_verify
        try:
            verify = tls_verify(Path(args.ca_file))
        except PushSetupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    from commune_agent import __version__
    url = args.collector.rstrip("/") + ENROLL_PATH
    body = {"token": enroll_token, "site": args.site, "instance": instance, "agent_version": __version__}
    print(f"enrolling site {args.site} at {args.collector} as instance {instance} ...", file=sys.stderr)
    try:
        response = httpx.post(url, json=body, verify=verify, timeout=args.timeout)  # type: ignore[arg-type]
    except httpx.HTTPError as exc:
        print(f"error: cannot reach the collector at {args.collector}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 2
    if response.status_code != 200:
        print(f"error: enrollment refused (HTTP {response.status_code}): {_problem_text(response)}", file=sys.stderr)
        return 1
    answer = response.json()
    token_path = state_dir / TOKEN_FILE
    write_secret(token_path, answer["token"])
    what = "re-enrolled (replacing the site's previous agent)" if answer.get("reenrolled") else "enrolled"
    print(f"{what}: site {answer['site']} ({answer.get('name') or answer['commune']}, {answer['province']}); "
          f"the site token is stored in {token_path} (mode 600)", file=sys.stderr)
    if args.config:
        config = Path(args.config)
        if config.exists():
            print(f"{config} exists and was left as it is; make sure collector.token_file is {token_path}",
                  file=sys.stderr)
        else:
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(managed_config(answer, args.collector, token_path, state_dir,
                                             Path(args.ca_file) if args.ca_file else None), encoding="utf-8")
            print(f"wrote {config} (checks managed by the collector); start with: commune-agent run -c {config}",
                  file=sys.stderr)
    return 0


def add_subcommand(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("enroll", help="exchange an enrollment token for this site's token (stored 0600)",
                       description="Enroll this box as the agent of SITE: the enrollment token from the operator "
                                   "is exchanged for the site's own token, stored in the state dir (mode 600), "
                                   "never printed. A mistyped SITE gets the nearest site ids.")
    p.add_argument("--collector", required=True, metavar="URL", help="the collector's base URL (https://...)")
    p.add_argument("--token-file", required=True, metavar="FILE", help="file holding the enrollment token (ce_...)")
    p.add_argument("--site", required=True, metavar="SITE", help="this site's id, as on the inventory sheet")
    p.add_argument("--ca-file", metavar="FILE", help="PEM CA bundle for a collector with a private CA")
    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR, metavar="DIR",
                   help=f"the agent's state dir (default {DEFAULT_STATE_DIR}): the token is stored there")
    p.add_argument("--config", metavar="FILE", help="also write a managed agent config here (if absent)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the collector (default 30)")
    p.set_defaults(func=cmd_enroll)
