"""One normalized view of a power source, whatever it is: UPS-MIB, APC, NUT or the host battery.

The judge asks one question of every site ("is it on mains, and for how long
would the battery last?") and should not care which protocol answered, so
every source is mapped onto these fields and emitted under the same names.
Being on battery is a value, not a failed round: the round succeeds when the
source answered, and the collector's criteria decide what on-battery means.
"""

from __future__ import annotations

from dataclasses import dataclass

from commune_agent.probes.base import MetricDoc, Sample, sample


@dataclass(frozen=True)
class PowerReading:
    """What a source told; None where it does not know."""

    on_battery: bool
    charge_ratio: float | None = None  # 0-1
    runtime_seconds: float | None = None
    input_voltage_volts: float | None = None
    low_battery: bool | None = None
    replace_battery: bool | None = None
    load_ratio: float | None = None  # 0-1, share of the UPS's rated output in use
    status: str = ""  # the source's own words (NUT ups.status, UPS-MIB output source), for humans

    def samples(self) -> tuple[Sample, ...]:
        """The normalized samples, most telling first (probe-once shows the first three)."""
        out = [sample("power_on_battery", self.on_battery)]
        optional = (("power_battery_charge_ratio", self.charge_ratio),
                    ("power_battery_runtime_seconds", self.runtime_seconds),
                    ("power_input_voltage_volts", self.input_voltage_volts),
                    ("power_low_battery", self.low_battery),
                    ("power_replace_battery", self.replace_battery),
                    ("power_load_ratio", self.load_ratio))
        out += [sample(name, float(value)) for name, value in optional if value is not None]
        return tuple(out)


def ratio(percent: float | None) -> float | None:
    """A percentage as a 0-1 ratio, clamped: firmware reports 101% charge now and then."""
    if percent is None or percent < 0:
        return None
    return min(percent / 100.0, 1.0) if percent <= 100 else 1.0


POWER_METRICS: tuple[MetricDoc, ...] = (
    MetricDoc("power_on_battery", "1 when the site runs on battery, 0 on mains."),
    MetricDoc("power_battery_charge_ratio", "Battery charge (0-1)."),
    MetricDoc("power_battery_runtime_seconds", "Estimated time the battery can carry the present load."),
    MetricDoc("power_input_voltage_volts", "Mains input voltage (first input line)."),
    MetricDoc("power_low_battery", "1 when the source reports a low battery."),
    MetricDoc("power_replace_battery", "1 when the source reports the battery needs replacing."),
    MetricDoc("power_load_ratio", "Share of the UPS's rated output in use (0-1), where the source reports it."),
)
