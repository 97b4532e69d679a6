"""The host's own battery through psutil: a fake psutil for each state, the real one on this box."""

from __future__ import annotations

from collections import namedtuple

import psutil

from commune_agent.probes.ups_host import UpsHostConfig
from testsupport.devices import context, run_probe

Battery = namedtuple("Battery", "percent secsleft power_plugged")


class FakePsutil:
    def __init__(self, battery: Battery | None):
        self.battery = battery

    def sensors_battery(self) -> Battery | None:
        return self.battery


CONFIG = UpsHostConfig(name="laptop", source="host")


async def test_discharging_laptop() -> None:
    result = await run_probe(CONFIG, context({"psutil": FakePsutil(Battery(8.0, 540, False))}))
    assert result.ok
    assert [result.value(n) for n in ("power_on_battery", "power_battery_charge_ratio",
                                      "power_battery_runtime_seconds", "power_low_battery")] == [1, 0.08, 540, 1]
    assert result.value("power_input_voltage_volts") is None  # psutil does not know: absent, not 0


async def test_plugged_in_has_no_runtime_and_is_not_low() -> None:
    result = await run_probe(CONFIG, context({"psutil": FakePsutil(
        Battery(100.0, psutil.POWER_TIME_UNLIMITED, True))}))
    assert result.ok
    assert result.value("power_on_battery") == 0
    assert result.value("power_battery_runtime_seconds") is None
    assert result.value("power_low_battery") == 0


async def test_no_battery_is_a_failed_round_with_its_reason() -> None:
    result = await run_probe(CONFIG, context({"psutil": FakePsutil(None)}))
    assert not result.ok
    assert result.reason == "this host has no battery that the OS reports (psutil.sensors_battery() is None)"


async def test_the_real_psutil_on_this_machine() -> None:
    """Whatever this box has, the probe must agree with psutil itself."""
    battery = psutil.sensors_battery()
    result = await run_probe(CONFIG, context({}))
    if battery is None:
        assert not result.ok and "no battery" in result.reason
    else:
        assert result.ok
        assert result.value("power_on_battery") == (battery.power_plugged is False)
