"""The ``power:`` section: a list of power sources, each picked by ``source:``.

The union is derived from the probe registry (every probe with
``section="power"``), so a new source is a new probe module and one line there.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from commune_agent.power.config import PowerConfig
from commune_agent.registry import PROBES
from commune_common.yamlconf import Loc

_CONFIGS = tuple(spec.config for spec in PROBES.values() if spec.section == "power")
PowerSource = Annotated[Union[_CONFIGS], Field(discriminator="source")]  # noqa: UP007 - built at run time


def power_issues(sources: list[PowerConfig], interval: float, timeout: float) -> list[tuple[Loc, str]]:
    """Rules across entries, each located at the field to change."""
    issues: list[tuple[Loc, str]] = []
    seen: dict[str, int] = {}
    for i, source in enumerate(sources):
        if source.name in seen:
            issues.append((("power", i, "name"), f"{source.name!r} is already the name of power[{seen[source.name]}]"))
        seen.setdefault(source.name, i)
        round_timeout = source.timeout or timeout
        # with neither set, the defaults section is at fault (reported there)
        if round_timeout > (source.interval or interval) and (source.interval or source.timeout):
            issues.append((("power", i, "timeout"),
                           f"{round_timeout:g}s is longer than the interval {source.interval or interval:g}s"))
        snmp = getattr(source, "snmp", None)
        if snmp is not None and snmp.request_budget() > round_timeout:
            issues.append((("power", i, "snmp", "timeout"),
                           f"one request may take {snmp.request_budget():g}s (timeout x (retries+1)) "
                           f"but the round's timeout is {round_timeout:g}s; lower snmp.timeout or retries"))
    return issues
