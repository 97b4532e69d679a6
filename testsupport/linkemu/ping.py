"""``ping`` through an impaired link, and what it measured (the link emulator's tests and benchmark)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .netns import ImpairedLink

_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")
REPLY_LINE = re.compile(r"icmp_seq=(\d+) .*time=([\d.]+) ms")
_AVG = re.compile(r"= [\d.]+/([\d.]+)/")


@dataclass
class Ping:
    """What one ``ping`` run measured."""

    transmitted: int
    received: int
    rtts_ms: list[float]
    avg_ms: float | None

    @property
    def lost(self) -> int:
        """Echoes that never came back."""
        return self.transmitted - self.received


def parse_ping(output: str) -> Ping:
    """Parse iputils ping output (per-reply lines plus the summary)."""
    summary = _SUMMARY.search(output)
    if summary is None:
        raise ValueError(f"unexpected ping output:\n{output}")
    avg = _AVG.search(output)
    rtts = [float(m.group(2)) for m in REPLY_LINE.finditer(output)]
    return Ping(
        int(summary.group(1)), int(summary.group(2)), rtts, float(avg.group(1)) if avg else None
    )


def ping_argv(target: str, count: int, interval: float, linger_s: int = 1) -> list[str]:
    """A bounded ping: ``count`` echoes, then at most ``linger_s`` for late replies.

    No ``-w``: with a deadline, iputils keeps sending past ``-c`` until it has
    ``count`` replies, which would skew the loss count.
    """
    return ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", str(linger_s), target]


def ping(link: ImpairedLink, count: int, interval: float) -> Ping:
    """Ping the far end from the near namespace and parse the result."""
    argv = ping_argv(link.far_ip, count, interval)
    result = link.run_near(argv, capture_output=True, text=True, timeout=count * interval + 15)
    return parse_ping(result.stdout)
