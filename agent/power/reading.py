"""One normalized view of a power source, whatever it is: UPS-MIB, APC, NUT or the host battery.

The judge asks one question of every site ("is it on mains, and for how long
would the battery last?") and should not care which protocol answered, so
every source is mapped onto these fields and emitted under the same names.
Being on battery is a value, not a failed round: the round succeeds when the
source answered, and the collector's criteria decide what on-battery means.

Many UPS cards estimate their runtime only once on battery and report 0 (or a
negative number) on mains with a full battery. Such a reading is "not
estimated", not "0 minutes left": ``runtime_estimate`` says when, for every
source alike, and the samples then carry ``power_battery_runtime_estimated 0``
instead of a runtime, so no statistic and no alert reads a zero the card never
measured.
"""

from __future__ import annotations

from dataclasses import dataclass

from commune_agent.probes.base import MetricDoc, Sample, sample


@dataclass(frozen=True)
class PowerReading:
    """What a source told; None where it does not know."""

    on_battery: bool
    charge_ratio: float | None = None  # 0-1
    runtime_seconds: float | None = None  # as the source reported it; see runtime_estimate
    input_voltage_volts: float | None = None
    low_battery: bool | None = None
    replace_battery: bool | None = None
    load_ratio: float | None = None  # 0-1, share of the UPS's rated output in use
    status: str = ""  # the source's own words (NUT ups.status, UPS-MIB output source), for humans

    def samples(self) -> tuple[Sample, ...]:
        """The normalized samples, most telling first (probe-once shows the first three)."""
        out = [sample("power_on_battery", self.on_battery)]
        runtime, estimated = runtime_estimate(self.runtime_seconds, self.on_battery, self.low_battery,
                                              self.charge_ratio)
        optional = (("power_battery_charge_ratio", self.charge_ratio),
                    ("power_battery_runtime_seconds", runtime),
                    ("power_battery_runtime_estimated", estimated),
                    ("power_input_voltage_volts", self.input_voltage_volts),
                    ("power_low_battery", self.low_battery),
                    ("power_replace_battery", self.replace_battery),
                    ("power_load_ratio", self.load_ratio))
        out += [sample(name, float(value)) for name, value in optional if value is not None]
        return tuple(out)


def runtime_estimate(seconds: float | None, on_battery: bool, low_battery: bool | None,
                     charge_ratio: float | None) -> tuple[float | None, bool | None]:
    """(the runtime to report, whether it is an estimate); (None, None) when the source has no runtime.

    Not an estimate: a negative runtime (outside every source's range: UPS-MIB's
    upsEstimatedMinutesRemaining is 0..2147483647, PowerNet's TimeTicks cannot
    be negative, NUT's battery.runtime is seconds left), and a runtime of 0 on
    mains while the battery is neither low nor at 0 % charge: a card that
    estimates would say how long a full battery lasts, one that does not says 0.
    On battery every value counts, 0 included: the battery is running out.
    """
    if seconds is None:
        return None, None
    if seconds < 0:
        return None, False
    if seconds == 0 and not on_battery and not low_battery and charge_ratio != 0.0:
        return None, False
    return seconds, True


def ratio(percent: float | None) -> float | None:
    """A percentage as a 0-1 ratio, clamped: firmware reports 101% charge now and then."""
    if percent is None or percent < 0:
        return None
    return min(percent / 100.0, 1.0) if percent <= 100 else 1.0


POWER_METRICS: tuple[MetricDoc, ...] = (
    MetricDoc("power_on_battery", "1 when the site runs on battery, 0 on mains."),
    MetricDoc("power_battery_charge_ratio", "Battery charge (0-1)."),
    MetricDoc("power_battery_runtime_seconds", "Estimated time the battery can carry the present load "
              "(absent when the source gives no estimate)."),
    MetricDoc("power_battery_runtime_estimated", "1 when the source estimated the runtime, 0 when it reported a "
              "value that is no estimate (0 on mains with a charged battery, or negative)."),
    MetricDoc("power_input_voltage_volts", "Mains input voltage (first input line)."),
    MetricDoc("power_low_battery", "1 when the source reports a low battery."),
    MetricDoc("power_replace_battery", "1 when the source reports the battery needs replacing."),
    MetricDoc("power_load_ratio", "Share of the UPS's rated output in use (0-1), where the source reports it."),
)
