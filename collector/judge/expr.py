"""The criterion expression language: ``p95(icmp_rtt_seconds{stat="avg"}, 24h) < 150ms``.

Small on purpose (gatus conditions are the model): one statistic call, one
comparison, one threshold. A hand-written tokenizer and recursive-descent
parser turn the text into an ``Expression``; nothing is ever ``eval``ed, and
every mistake is a ``ExprError`` whose message says what was expected where,
so the criteria loader can report it as ``criteria.yaml:31 criteria[2].expr``.

Grammar::

    expression := call OP threshold
    call       := NAME "(" [arg ("," arg)*] ")"
    arg        := metric | QUANTITY
    metric     := NAME ["{" NAME "=" STRING ("," NAME "=" STRING)* "}"]
    threshold  := NUMBER | QUANTITY          # 0.5, 99%, 150ms, 1h30m
    OP         := ">=" | ">" | "<=" | "<" | "==" | "!="
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

from commune_collector.judge.quantity import BOOL, COUNT, RATIO, SECONDS, unit_of_metric
from commune_collector.judge.stats import STATISTICS, Statistic
from commune_common.units import format_duration, parse_duration
from commune_common.wire import value_key

MAX_WINDOW = 7 * 86400.0  # the store keeps 8 days of summaries; a window must fit in them
SUMMARY_LABELS = {"stat"}  # collector.evidence keeps only values labelled by stat
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt,
    "==": operator.eq, "!=": operator.ne,
}

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<quantity>\d+(?:\.\d+)?(?:[A-Za-z%]+(?:\d+(?:\.\d+)?[A-Za-z]+)*)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_:]*)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<op>>=|<=|==|!=|>|<)
  | (?P<punct>[(){},=])
""", re.VERBOSE)


class ExprError(ValueError):
    """A malformed or meaningless expression; the message is shown to the user as is."""


@dataclass(frozen=True)
class Token:
    kind: str  # quantity, name, string, op, punct, end
    text: str
    pos: int


@dataclass(frozen=True)
class Quantity:
    """A number with its unit as written: ``99%`` -> (0.99, ratio), ``150ms`` -> (0.15, seconds)."""

    value: float
    unit: str | None  # None: a bare number
    text: str


@dataclass(frozen=True)
class Expression:
    """A parsed criterion: which statistic of which metric over which window, compared how."""

    text: str
    stat: str
    metric: str | None  # value key as stored, e.g. 'icmp_rtt_seconds{stat="avg"}'
    window: float | None  # seconds
    op: str
    threshold: float
    unit: str  # unit of the statistic's value (and of the threshold)

    def holds(self, value: float) -> bool:
        return OPERATORS[self.op](value, self.threshold)

    @property
    def statistic(self) -> Statistic:
        return STATISTICS[self.stat]


def tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ExprError(f"unexpected character {text[pos]!r} at column {pos + 1}")
        if match.lastgroup != "space":
            tokens.append(Token(match.lastgroup or "", match.group(), pos))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def parse_quantity(text: str) -> Quantity:
    """``99%``, ``0.5``, ``150ms``, ``1h30m`` -> value in base units (ratio, seconds)."""
    if text.endswith("%"):
        number = text[:-1]
        if not re.fullmatch(r"\d+(?:\.\d+)?", number):
            raise ExprError(f"{text!r} is not a percentage (write 99% or 0.99)")
        return Quantity(float(number) / 100.0, RATIO, text)
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return Quantity(float(text), None, text)
    try:
        return Quantity(parse_duration(text), SECONDS, text)
    except ValueError:
        raise ExprError(f"{text!r} has an unknown unit (use %, ms, s, m, h, d)") from None


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self, kind: str, text: str | None = None, what: str | None = None) -> Token:
        tok = self.tok
        if tok.kind != kind or (text is not None and tok.text != text):
            wanted = what or (repr(text) if text else kind)
            found = repr(tok.text) if tok.kind != "end" else "the end"
            raise ExprError(f"expected {wanted} at column {tok.pos + 1}, found {found}")
        self.i += 1
        return tok

    def at(self, kind: str, text: str | None = None) -> bool:
        return self.tok.kind == kind and (text is None or self.tok.text == text)

    def call(self) -> tuple[Token, list[str | Quantity]]:
        name = self.take("name", what="a statistic such as availability(24h) or p95(metric, 24h)")
        self.take("punct", "(")
        args: list[str | Quantity] = []
        if not self.at("punct", ")"):
            args.append(self.arg())
            while self.at("punct", ","):
                self.i += 1
                args.append(self.arg())
        self.take("punct", ")", what="')' or ','")
        return name, args

    def arg(self) -> str | Quantity:
        if self.at("quantity"):
            return parse_quantity(self.take("quantity").text)
        return self.metric()

    def metric(self) -> str:
        name = self.take("name", what="a metric name or a window").text
        labels: dict[str, str] = {}
        if self.at("punct", "{"):
            self.i += 1
            while True:
                label = self.take("name", what="a label name").text
                self.take("punct", "=")
                value = self.take("string", what='a quoted label value such as "avg"').text[1:-1]
                if label in labels:
                    raise ExprError(f"label {label!r} is given twice in {name}{{...}}")
                labels[label] = value.replace('\\"', '"').replace("\\\\", "\\")
                if self.at("punct", "}"):
                    self.i += 1
                    break
                self.take("punct", ",", what="',' or '}'")
        return _metric_key(name, labels)

    def expression(self) -> Expression:
        name, args = self.call()
        op = self.take("op", what="a comparison (>=, >, <=, <, ==, !=)").text
        threshold = parse_quantity(self.take("quantity", what="a threshold such as 99%, 150ms or 0").text)
        self.take("end", what="the end of the expression")
        return _build(self.text, name, args, op, threshold)


def _metric_key(name: str, labels: dict[str, str]) -> str:
    if name.startswith("commune_"):
        raise ExprError(f"write the sample name without the /metrics prefix: {name[len('commune_'):]!r}")
    extra = sorted(set(labels) - SUMMARY_LABELS)
    if extra:
        raise ExprError(f"{name}: label {extra[0]!r} is not kept in the evidence summaries "
                        "(only {stat=\"...\"} is); judge per-interface detail in Prometheus")
    return value_key(name, labels)


def _build(text: str, name: Token, args: list[str | Quantity], op: str, threshold: Quantity) -> Expression:
    spec = STATISTICS.get(name.text)
    if spec is None:
        raise ExprError(f"unknown statistic {name.text!r} (known: {', '.join(sorted(STATISTICS))})")
    metric, window = _bind_args(spec, args)
    unit = spec.unit or unit_of_metric(metric.partition("{")[0] if metric else "")
    value = _threshold_in(unit, threshold, spec, metric)
    if window is None and spec.window_from_threshold:
        window = min(max(value, 1.0), MAX_WINDOW)
    return Expression(text, spec.name, metric, window, op, value, unit)


def _signature(spec: Statistic) -> str:
    return f"{spec.name}({', '.join(p.rstrip('?') + ('?' if p.endswith('?') else '') for p in spec.params)})"


def _bind_args(spec: Statistic, args: list[str | Quantity]) -> tuple[str | None, float | None]:
    required = [p for p in spec.params if not p.endswith("?")]
    if not len(required) <= len(args) <= len(spec.params):
        raise ExprError(f"{spec.name}() takes {_signature(spec)}; got {len(args)} argument(s)")
    metric: str | None = None
    window: float | None = spec.default_window
    for param, arg in zip(spec.params, args, strict=False):
        kind = param.rstrip("?")
        if kind == "metric":
            if not isinstance(arg, str):
                raise ExprError(f"{spec.name}() takes {_signature(spec)}: {arg.text!r} is not a metric name")
            metric = arg
        else:
            window = _window(spec, arg)
    return metric, window


def _window(spec: Statistic, arg: str | Quantity) -> float:
    if not isinstance(arg, Quantity) or arg.unit != SECONDS:
        shown = arg.text if isinstance(arg, Quantity) else arg
        raise ExprError(f"{spec.name}(): window {shown!r} is not a duration (use 1h, 24h, 7d)")
    if arg.value <= 0:
        raise ExprError(f"{spec.name}(): window {arg.text!r} must be longer than 0s")
    if arg.value > MAX_WINDOW:
        raise ExprError(f"{spec.name}(): window {arg.text!r} is longer than the evidence kept "
                        f"({format_duration(MAX_WINDOW)})")
    return arg.value


def _threshold_in(unit: str, q: Quantity, spec: Statistic, metric: str | None) -> float:
    """Check the threshold's unit against the statistic's and return it in base units."""
    what = f"{spec.name}({metric})" if metric else f"{spec.name}()"
    if unit == SECONDS and q.unit != SECONDS:
        hint = "a ratio" if q.unit == RATIO else "a bare number"
        raise ExprError(f"unit mismatch: {what} is in seconds but the threshold {q.text!r} is {hint} "
                        "(write 150ms, 30s, 15m)")
    if unit == RATIO:
        if q.unit == SECONDS:
            raise ExprError(f"unit mismatch: {what} is a ratio but the threshold {q.text!r} is a duration "
                            "(write 1% or 0.01)")
        if q.unit is None and not 0 <= q.value <= 1:
            raise ExprError(f"{what} is a ratio between 0 and 1: write {q.text}% or {q.value / 100:g}")
    if unit in (COUNT, BOOL) and q.unit is not None:
        raise ExprError(f"unit mismatch: {what} is a plain number but the threshold {q.text!r} has a unit")
    if not math.isfinite(q.value):
        raise ExprError(f"threshold {q.text!r} is not a finite number")
    return q.value


def parse_expression(text: str) -> Expression:
    """Parse and validate one criterion expression; raises ExprError with a readable message."""
    if not isinstance(text, str) or not text.strip():
        raise ExprError("is empty; write e.g. availability(24h) >= 99%")
    return _Parser(text.strip()).expression()
