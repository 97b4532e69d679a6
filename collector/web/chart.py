"""The burn-up chart toward the deadline, drawn server-side as inline SVG.

No chart library and no script: the machine that serves the page may be
offline and the phone reading it slow. The SVG scales with its container, has
a text alternative (``aria-label`` and a ``<title>`` per point) and the page
puts the same numbers in a table beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from markupsafe import Markup, escape

WIDTH, HEIGHT = 480, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 16, 14, 30


@dataclass(frozen=True)
class Point:
    day: date
    completed: int
    total: int


@dataclass(frozen=True)
class ChartLabels:
    title: str
    completed: str
    total: str
    needed: str
    deadline: str
    today: str
    thousands: str = ","  # the reader's thousands separator: "." in Vietnamese


def _scale(lo: float, hi: float, out_lo: float, out_hi: float):
    span = (hi - lo) or 1.0
    return lambda v: out_lo + (v - lo) * (out_hi - out_lo) / span


def _nice_max(n: int) -> int:
    """A round axis top at or above n: 3321 -> 3500, 98 -> 100, 7 -> 7."""
    if n <= 10:
        return max(n, 1)
    step = 10 ** (len(str(n)) - 1) // 2
    return -(-n // step) * step


def burnup_svg(points: list[Point], deadline: date | None, today: date, labels: ChartLabels) -> Markup:
    """Completed communes per day, the scope line, the deadline and the pace still needed."""
    if not points:
        return Markup("")
    first = points[0].day
    last_day = max(points[-1].day, today, deadline or today)
    if last_day == first:
        last_day = first + timedelta(days=1)
    top = _nice_max(max(max(p.total, p.completed) for p in points))
    x = _scale(0, (last_day - first).days, LEFT, WIDTH - RIGHT)
    y = _scale(0, top, HEIGHT - BOTTOM, TOP)

    def px(day: date) -> float:
        return x((day - first).days)

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="{escape(labels.title)}" xmlns="http://www.w3.org/2000/svg">']
    parts += _grid(top, y, labels.thousands)
    line = " ".join(f"{px(p.day):.1f},{y(p.completed):.1f}" for p in points)
    base = f"{px(points[-1].day):.1f},{y(0):.1f} {px(first):.1f},{y(0):.1f}"
    parts.append(f'<polygon class="area" points="{line} {base}"/>')
    scope = " ".join(f"{px(p.day):.1f},{y(p.total):.1f}" for p in points)
    parts.append(f'<polyline class="scope" points="{scope}"><title>{escape(labels.total)}</title></polyline>')
    parts.append(f'<polyline class="done" points="{line}"><title>{escape(labels.completed)}</title></polyline>')
    last = points[-1]
    if deadline and deadline > last.day and last.completed < last.total:
        parts.append(f'<line class="needed" x1="{px(last.day):.1f}" y1="{y(last.completed):.1f}" '
                     f'x2="{px(deadline):.1f}" y2="{y(last.total):.1f}"><title>{escape(labels.needed)}</title></line>')
    for p in points:
        count = f"{p.completed:,}/{p.total:,}".replace(",", labels.thousands)
        parts.append(f'<circle class="pt" cx="{px(p.day):.1f}" cy="{y(p.completed):.1f}" r="2.2">'
                     f'<title>{p.day:%d/%m/%Y}: {count}</title></circle>')
    if deadline:
        parts += _marker(px(deadline), labels.deadline, deadline, "deadline")
    parts += _x_labels(first, points[-1].day, px)
    parts.append("</svg>")
    return Markup("".join(parts))


def _grid(top: int, y, thousands: str = ",") -> list[str]:
    out = []
    for frac in (0, 0.25, 0.5, 0.75, 1):
        value = round(top * frac)
        yy = y(value)
        out.append(f'<line class="grid" x1="{LEFT}" y1="{yy:.1f}" x2="{WIDTH - RIGHT}" y2="{yy:.1f}"/>')
        out.append(f'<text class="ylab" x="{LEFT - 6}" y="{yy + 4:.1f}">{f"{value:,}".replace(",", thousands)}</text>')
    return out


def _marker(xx: float, label: str, day: date, css: str) -> list[str]:
    return [f'<line class="{css}" x1="{xx:.1f}" y1="{TOP}" x2="{xx:.1f}" y2="{HEIGHT - BOTTOM}"/>',
            f'<text class="{css}-lab" x="{xx - 4:.1f}" y="{TOP + 10}">{escape(label)} {day:%d/%m}</text>']


def _x_labels(first: date, last: date, px) -> list[str]:
    out = [f'<text class="xlab" x="{px(first):.1f}" y="{HEIGHT - 10}" text-anchor="start">{first:%d/%m}</text>']
    if last != first:
        out.append(f'<text class="xlab" x="{px(last):.1f}" y="{HEIGHT - 10}" text-anchor="middle">{last:%d/%m}</text>')
    return out
