"""The host probe on a machine without /sys sensors (a chroot, some containers): the sensors are absent, not an error."""

from __future__ import annotations

from commune_agent.probes.host import _sensor_samples


class NoSys:
    """psutil where /sys/class/power_supply and /sys/class/hwmon do not exist."""

    def sensors_battery(self):
        raise FileNotFoundError(2, "No such file or directory", "/sys/class/power_supply")

    def sensors_temperatures(self):
        raise FileNotFoundError(2, "No such file or directory", "/sys/class/hwmon")


def test_missing_sys_sensors_are_absent_samples():
    assert _sensor_samples(NoSys()) == []
