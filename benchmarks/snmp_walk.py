#!/usr/bin/env python3
"""SNMP walk: the agent's snmp_interfaces against prometheus-snmp-exporter, one run, on loopback.

Both walk the same IF-MIB columns of the same recorded device, served by
snmpsim on 127.0.0.1 (by default the largest interface table in snmpsim-data:
a Ruijie M18000 wireless controller with 3271 ifTable/ifXTable rows):

* agent: one ``snmp_interfaces`` round through the real runner (walk of 14
  ifTable/ifXTable columns together by GETBULK, sysUpTime before and after,
  typed decoding, per-interface samples), in this process, with the SNMP
  engine kept across rounds as a running agent keeps it; wall time from
  ``perf_counter``, CPU from ``process_time`` (snmpsim runs in its own
  process). The first, cold round (engine made, pysnmp's API imported) is
  shown on its own row.
* snmp_exporter 0.21 (Debian): a module written here in the 0.21 format
  (``version``/``auth`` inside the module; Debian ships none) that walks the same
  14 columns and GETs sysUpTime, with the same max-repetitions; one
  ``/snmp?module=if_mib`` scrape each; its CPU from /proc/PID/stat around it.

The simulator's own CPU is shown too: snmpsim is Python and answers at most
64 variables per response, so it is the slowest party and both clients wait
on it. Runs alternate agent / exporter; the table is the median of --repeat.

    .venv/bin/python benchmarks/snmp_walk.py [--repeat 3] [--device network/wifi/ruijie-m18000] [--markdown]

The first run indexes the recording (about 900k lines: a few minutes, cached
after). Needs snmpsim, snmpsim-data and prometheus-snmp-exporter.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from commune_agent.probes.base import ProbeContext  # noqa: E402
from commune_agent.probes.snmp_interfaces import COLUMNS, SnmpInterfacesConfig  # noqa: E402
from commune_agent.snmp.settings import SnmpSettings  # noqa: E402
from testsupport.devices import close_resources, run_probe  # noqa: E402
from testsupport.peers.snmp_exporter import SnmpExporterPeer  # noqa: E402
from testsupport.peers.snmpsim import SnmpsimPeer  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
DEFAULT_DEVICE = "network/wifi/ruijie-m18000"
_TYPES = {"1.3.6.1.2.1.2.2.1.2": "DisplayString", "1.3.6.1.2.1.31.1.1.1.1": "DisplayString",
          "1.3.6.1.2.1.2.2.1.5": "gauge", "1.3.6.1.2.1.2.2.1.7": "gauge", "1.3.6.1.2.1.2.2.1.8": "gauge",
          "1.3.6.1.2.1.31.1.1.1.15": "gauge"}


@dataclass
class Walk:
    tool: str
    wall_s: float
    cpu_s: float
    device_cpu_s: float  # snmpsim's CPU while this walk ran
    interfaces: int
    requests: int | None = None


def exporter_module(community: str, max_repetitions: int) -> str:
    """The 0.21-format module: the agent's 14 columns, indexed by ifIndex, plus sysUpTime."""
    lines = ["if_mib:", "  version: 2", f"  max_repetitions: {max_repetitions}", "  retries: 1", "  timeout: 20s",
             "  auth:", f"    community: '{community}'", "  walk:"]
    lines += [f"    - {col}" for col in COLUMNS]
    lines += ["  get:", "    - 1.3.6.1.2.1.1.3.0", "  metrics:",
              "    - {name: sysUpTime, oid: 1.3.6.1.2.1.1.3, type: gauge}"]
    for col in COLUMNS:
        name = "if_" + col.replace(".", "_")
        lines += [f"    - name: {name}", f"      oid: {col}", f"      type: {_TYPES.get(col, 'counter')}",
                  "      indexes: [{labelname: ifIndex, type: gauge}]"]
    return "\n".join(lines) + "\n"


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def agent_walk(sim: SnmpsimPeer, community: str, max_repetitions: int, resources: dict,
                     tool: str = "agent (snmp_interfaces)") -> Walk:
    """One round; ``resources`` holds the SNMP engine across rounds, as in a running agent."""
    settings = SnmpSettings(port=sim.port, community=community, max_repetitions=max_repetitions, timeout="20s",
                            retries=1)
    cfg = SnmpInterfacesConfig(host="127.0.0.1", snmp=settings)
    ctx = ProbeContext(timeout=600, resources=resources)
    sim_pid = sim.pids[0]
    device_before, cpu_before, start = proc_cpu(sim_pid), time.process_time(), time.perf_counter()
    result = await run_probe(cfg, ctx, round_timeout=600)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_before
    device_cpu = proc_cpu(sim_pid) - device_before
    if not result.ok:
        raise SystemExit(f"agent walk failed: {result.reason}")
    requests = sum(resources["snmp"].requests.values())
    resources["snmp"].requests.clear()
    return Walk(tool, wall, cpu, device_cpu, int(result.value("snmp_interfaces_selected") or 0),
                requests)


def exporter_walk(sim: SnmpsimPeer, exporter: SnmpExporterPeer) -> Walk:
    pid, sim_pid = exporter.pids[0], sim.pids[0]
    device_before, cpu_before, start = proc_cpu(sim_pid), proc_cpu(pid), time.perf_counter()
    text = exporter.scrape(sim.address, timeout=600)
    wall, cpu = time.perf_counter() - start, proc_cpu(pid) - cpu_before
    device_cpu = proc_cpu(sim_pid) - device_before
    rows = {line.split('ifIndex="', 1)[1].split('"', 1)[0] for line in text.splitlines()
            if line.startswith("if_1_3_6_1_2_1_31_1_1_1_6{")}
    return Walk("snmp_exporter 0.21", wall, cpu, device_cpu, len(rows))


async def measure(sim: SnmpsimPeer, exporter: SnmpExporterPeer, community: str,
                  args: argparse.Namespace) -> tuple[list[Walk], list[Walk], Walk]:
    """A cold first agent round (engine made, pysnmp imported), then alternating warm rounds."""
    resources: dict = {}
    try:
        cold = await agent_walk(sim, community, args.max_repetitions, resources, "agent, first round")
        exporter_walk(sim, exporter)  # the exporter's warm-up
        agents, exporters = [], []
        for i in range(args.repeat):
            agents.append(await agent_walk(sim, community, args.max_repetitions, resources))
            exporters.append(exporter_walk(sim, exporter))
            print(f"run {i + 1}/{args.repeat}: agent {agents[-1].wall_s:.2f}s, "
                  f"snmp_exporter {exporters[-1].wall_s:.2f}s", file=sys.stderr)
    finally:
        close_resources(resources)
    return agents, exporters, cold


def median(walks: list[Walk]) -> Walk:
    first = walks[0]
    return Walk(first.tool, statistics.median(w.wall_s for w in walks), statistics.median(w.cpu_s for w in walks),
                statistics.median(w.device_cpu_s for w in walks), first.interfaces, first.requests)


def report(agent: Walk, exporter: Walk, cold: Walk, device: str, repeat: int, markdown: bool) -> None:
    rows = [(w.tool, f"{w.wall_s:.2f}", f"{w.cpu_s:.2f}", f"{w.device_cpu_s:.2f}", str(w.interfaces),
             str(w.requests) if w.requests is not None else "-") for w in (agent, exporter, cold)]
    ratio_wall, ratio_cpu = agent.wall_s / exporter.wall_s, agent.cpu_s / exporter.cpu_s
    if markdown:
        print(f"Device `{device}` on snmpsim, median of {repeat} walks each.\n")
        print("| client | wall s | client CPU s | snmpsim CPU s | interfaces | requests |")
        print("| --- | --- | --- | --- | --- | --- |")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        print("\n| ratio agent / snmp_exporter | wall | CPU |\n| --- | --- | --- |")
        print(f"| | {ratio_wall:.2f}x | {ratio_cpu:.2f}x |")
    else:
        print(f"device {device}, median of {repeat}")
        print(f"{'client':<26}{'wall s':>9}{'CPU s':>9}{'sim CPU s':>11}{'ifaces':>8}{'requests':>10}")
        for row in rows:
            print(f"{row[0]:<26}{row[1]:>9}{row[2]:>9}{row[3]:>11}{row[4]:>8}{row[5]:>10}")
        print(f"agent/snmp_exporter: wall {ratio_wall:.2f}x, CPU {ratio_cpu:.2f}x (goal: wall within 2x)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=DEFAULT_DEVICE, help="recording under snmpsim-data, no suffix")
    parser.add_argument("--repeat", type=int, default=3, help="walks per client (median reported)")
    parser.add_argument("--max-repetitions", type=int, default=25, help="GETBULK max-repetitions for both")
    parser.add_argument("--markdown", action="store_true", help="print tables for docs/benchmarks.md")
    args = parser.parse_args()
    print(f"starting snmpsim with {args.device} (the first run indexes it: minutes) ...", file=sys.stderr)
    with SnmpsimPeer(devices={"big": args.device}) as sim:
        community = sim.community("big")
        module = exporter_module(community, args.max_repetitions)
        with SnmpExporterPeer(module) as exporter:
            agents, exporters, cold = asyncio.run(measure(sim, exporter, community, args))
    agent, exporter = median(agents), median(exporters)
    if agent.interfaces != exporter.interfaces:
        print(f"warning: agent saw {agent.interfaces} interfaces, snmp_exporter {exporter.interfaces}",
              file=sys.stderr)
    report(agent, exporter, cold, args.device, args.repeat, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
