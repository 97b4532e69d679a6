"""Installing an agent for real: deploy/install-agent.sh and the Ansible role, into scratch roots.

Both install from a wheelhouse built once from this checkout (what a site on a
metered link gets), create the virtualenv, put the config and the token in
place with the modes the hardening expects, and leave an agent whose own
``check-config`` passes. No systemd runs here: the script enables the unit in
the scratch root with ``systemctl --root``; the role is told not to manage it.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from testsupport.peers._base import require_binary, require_root

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
VENV_BIN = Path(sys.executable).parent
TOKEN = "site-token-for-tests-0123456789abcdef"


def run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 600,
        **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, **(env or {})}, **kwargs)  # type: ignore[call-overload]


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Wheels of this checkout and its dependencies (built from a copy: nothing lands in the tree)."""
    require_root("installs create users and chown files: run as root")
    base = tmp_path_factory.mktemp("wheelhouse")
    source = base / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("agent", "collector", "common"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    wheels = base / "wheels"
    result = run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", str(source),
                  "-w", str(wheels)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert any(wheels.glob("commune_monitor-*.whl"))
    yield wheels


def site_config(directory: Path) -> Path:
    """A small, valid site config (loopback targets only) that pushes with a token file."""
    config = {
        "site": {"id": "ha-noi-install-test", "province": "ha-noi", "commune": "Phường Ba Đình"},
        "agent": {"listen": "127.0.0.1:9469", "state_dir": "/var/lib/commune-agent"},
        "collector": {"url": "http://127.0.0.1:8470", "token_file": "/etc/commune-agent/token"},
        "links": [{"name": "fiber", "role": "primary",
                   "targets": [{"probe": "icmp", "name": "provincial-dc", "host": "127.0.0.1", "count": 3}]}],
    }
    path = directory / "ha-noi-install-test.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def passwd_ids(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise AssertionError(f"{user} not in {root}/etc/passwd")


@pytest.mark.slow
def test_install_script_installs_a_working_agent_into_a_scratch_root(wheelhouse, tmp_path):
    require_binary("systemctl")
    root = tmp_path / "root"
    (tmp_path / "token").write_text(TOKEN + "\n")
    result = run(["bash", str(DEPLOY / "install-agent.sh"), "--root", str(root), "--wheelhouse", str(wheelhouse),
                  "--config", str(site_config(tmp_path)), "--token-file", str(tmp_path / "token")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert TOKEN not in result.stdout + result.stderr
    for step in ("creating system user commune-agent", "checking", "installing the site token", "done: enabled"):
        assert step in result.stdout

    uid, gid = passwd_ids(root, "commune-agent")
    etc = root / "etc" / "commune-agent"
    assert mode(etc / "agent.yaml") == 0o640 and (etc / "agent.yaml").stat().st_gid == gid
    assert mode(etc / "token") == 0o600 and (etc / "token").stat().st_uid == uid
    assert (etc / "token").read_text().strip() == TOKEN
    assert (root / "var" / "lib" / "commune-agent").stat().st_uid == uid
    assert "root:*:" in (root / "etc" / "shadow").read_text()  # never a copy of this host's hashes
    unit = root / "etc" / "systemd" / "system" / "commune-agent.service"
    assert unit.read_text() == (DEPLOY / "systemd" / "commune-agent.service").read_text()
    assert (root / "etc" / "systemd" / "system" / "multi-user.target.wants" / "commune-agent.service").is_symlink()

    agent = root / "opt" / "commune-agent" / "bin" / "commune-agent"
    # the config names /etc/commune-agent/token, which in a scratch root is under it: the config alone
    check = run([str(agent), "check-config", "--without-token", str(etc / "agent.yaml")])
    assert check.returncode == 0 and "OK, site ha-noi-install-test" in check.stdout, check.stderr

    # run again with a broken config: refused before anything is replaced
    bad = tmp_path / "bad.yaml"
    bad.write_text(site_config(tmp_path).read_text().replace("count: 3", "count: 999"))
    again = run(["bash", str(DEPLOY / "install-agent.sh"), "--root", str(root), "--wheelhouse", str(wheelhouse),
                 "--config", str(bad), "--no-systemd"])
    assert again.returncode != 0 and "does not validate; nothing was changed" in again.stderr
    assert f"{bad}:" in again.stderr and "count" in again.stderr
    assert "count: 3" in (etc / "agent.yaml").read_text()


@pytest.mark.slow
def test_ansible_role_applied_locally_installs_a_working_agent(wheelhouse, tmp_path):
    playbook = require_binary(str(VENV_BIN / "ansible-playbook"))
    root = tmp_path / "root"
    (tmp_path / "token").write_text(TOKEN + "\n")
    inventory = {"all": {"children": {"commune_sites": {"children": {"ha_noi": {
        "vars": {"commune_agent_site_province": "ha-noi"},
        "hosts": {"ha-noi-ansible-test": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "commune_agent_site_commune": "Phường Hoàn Kiếm",
            "commune_agent_links": [{"name": "fiber", "role": "primary", "targets": [
                {"probe": "icmp", "name": "provincial-dc", "host": "127.0.0.1", "count": 3},
                {"probe": "tcp", "name": "collector-https", "host": "127.0.0.1", "port": 8470}]}],
            "commune_agent_devices": [{"name": "vc-terminal", "kind": "ping", "host": "127.0.0.1",
                                       "role": "video_conference"}],
        }}}}}}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory, allow_unicode=True), encoding="utf-8")
    extra = {"commune_agent_root": str(root), "commune_agent_manage_user": False,
             "commune_agent_manage_service": False, "commune_agent_pip_args": f"--no-index --find-links {wheelhouse}",
             "commune_agent_token_src": str(tmp_path / "token"),
             "commune_agent_collector_url": "http://127.0.0.1:8470", "ansible_become": False}
    (tmp_path / "extra.yml").write_text(yaml.safe_dump(extra))
    env = {"ANSIBLE_CONFIG": str(DEPLOY / "ansible" / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"), "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ansible-tmp"),
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    argv = [playbook, "-c", "local", "-i", str(tmp_path / "inventory.yml"), str(DEPLOY / "ansible" / "site.yml"),
            "-e", f"@{tmp_path / 'extra.yml'}"]
    result = run(argv, env=env)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert "failed=0" in result.stdout and TOKEN not in result.stdout + result.stderr

    etc = root / "etc" / "commune-agent"
    config = yaml.safe_load((etc / "agent.yaml").read_text(encoding="utf-8"))
    assert config["site"] == {"id": "ha-noi-ansible-test", "province": "ha-noi", "commune": "Phường Hoàn Kiếm"}
    assert config["collector"] == {"url": "http://127.0.0.1:8470", "token_file": "/etc/commune-agent/token"}
    assert mode(etc / "agent.yaml") == 0o640 and mode(etc / "token") == 0o600 and mode(etc) == 0o750
    assert (etc / "token").read_text().strip() == TOKEN
    agent = root / "opt" / "commune-agent" / "bin" / "commune-agent"
    # the config names /etc/commune-agent/token, which in a scratch root is under it: the config alone
    check = run([str(agent), "check-config", "--without-token", str(etc / "agent.yaml")])
    assert check.returncode == 0 and "OK, site ha-noi-ansible-test (Phường Hoàn Kiếm, ha-noi), 4 checks" in check.stdout, \
        check.stdout + check.stderr

    # a second run changes nothing: the role is idempotent
    again = run(argv, env=env)
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-3000:]
