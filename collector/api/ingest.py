"""From request bytes to a validated report: limits, media type, decompression, decoding, validation.

Each step either returns what the next needs or raises ``Problem`` with the
status the contract gives (docs/architecture.md, "Collector"): 413 for size,
400 for bytes that are not JSON or not gzip, 422 for JSON that breaks the
schema (naming the field), 415 for another media type. Nothing is stored
before every check has passed. What happens to a valid report (its clock,
the store's view of it) is ``commune_collector.intake``.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import AsyncIterator, Callable

import msgspec

from commune_collector.problems import Problem
from commune_common.wire import (
    _KEY,
    MAX_CHECK_ID,
    MAX_LABEL_VALUE,
    MAX_REASON,
    MAX_RESULTS_PER_REPORT,
    MAX_SEQ,
    WIRE_VERSION,
    CheckResult,
    Report,
    decode_report,
    valid_key,
)

MAX_LABELS = 32
MAX_VALUES = 2000
MAX_ERRORS = 50
LATEST_TS = 4102444800.0  # 2100-01-01: a timestamp beyond is a bug, not a clock skew
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_INSTANCE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_PROBE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$")
_PATH = re.compile(r" - at `\$(.*)`$")
KEY_PATTERN = _KEY.pattern
_INTEGER_FIELDS = ("seq", "wire_version")
_SPOOL_INTEGER_FIELDS = ("reports", "dropped_reports", "dropped_results")
_MISSING = re.compile(r"missing required field `([^`]+)`|unknown field `([^`]+)`")


# the same rules as validate(), for the OpenAPI document (clients and fuzzers see them)
NO_NUL = "^[^\u0000]*$"  # text fields refuse NUL (see _text_problem); stated in the schema too
SCHEMA_RULES: dict[str, dict[str, dict[str, object]]] = {
    "Report": {
        "site": {"pattern": _SLUG.pattern}, "instance": {"pattern": _INSTANCE.pattern},
        "seq": {"minimum": 0, "maximum": MAX_SEQ}, "sent_at": {"minimum": 0, "maximum": LATEST_TS},
        "agent_version": {"maxLength": 64, "pattern": NO_NUL}, "results": {"maxItems": MAX_RESULTS_PER_REPORT},
        "wire_version": {"enum": [WIRE_VERSION]}},
    "CheckResult": {
        "check": {"minLength": 1, "maxLength": MAX_CHECK_ID, "pattern": NO_NUL}, "probe": {"pattern": _PROBE.pattern},
        "ts": {"minimum": 0, "maximum": LATEST_TS}, "duration_s": {"minimum": 0, "maximum": 86400},
        "reason": {"maxLength": MAX_REASON, "pattern": NO_NUL},
        "labels": {"maxProperties": MAX_LABELS, "propertyNames": {"pattern": _LABEL.pattern},
                   "additionalProperties": {"type": "string", "maxLength": MAX_LABEL_VALUE, "pattern": NO_NUL}},
        "values": {"maxProperties": MAX_VALUES, "propertyNames": {"pattern": KEY_PATTERN}}},
}


def too_large(what: str, limit: int) -> Problem:
    return Problem(413, "Payload too large", f"{what} exceeds {limit} bytes; send smaller batches",
                   reason="too_large")


async def read_body(stream: AsyncIterator[bytes], content_length: str | None, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to exceed ``limit``."""
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise Problem(400, "Bad request", "Content-Length is not a number", reason="malformed") from None
        if declared > limit:
            raise too_large("the body", limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise too_large("the body", limit)
        chunks.append(chunk)
    return b"".join(chunks)


def check_media_type(content_type: str | None) -> None:
    media = (content_type or "").split(";")[0].strip().lower()
    if media != "application/json":
        raise Problem(415, "Unsupported media type", "send Content-Type: application/json",
                      reason="unsupported_media_type")


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo Content-Encoding; a gzip bomb stops at ``limit`` decompressed bytes (413)."""
    coding = (encoding or "identity").strip().lower()
    if coding == "identity":
        return body
    if coding != "gzip":
        raise Problem(415, "Unsupported media type", f"Content-Encoding {coding!r} is not supported (use gzip)",
                      reason="unsupported_media_type")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise Problem(400, "Bad request", f"the body is not valid gzip: {exc}", reason="malformed") from None
    if len(out) > limit:
        raise too_large("the decompressed body", limit)
    if not inflater.eof or inflater.unused_data:
        raise Problem(400, "Bad request", "the gzip stream is truncated or has trailing data", reason="malformed")
    return out


def _field_of(message: str) -> tuple[str, str]:
    """msgspec's 'Expected `int`, got `str` - at `$.results[0].ts`' as (field, message)."""
    path = ""
    match = _PATH.search(message)
    if match:
        path = match.group(1).lstrip(".")
        message = message[: match.start()]
    named = _MISSING.search(message)
    if named:
        key = named.group(1) or named.group(2)
        path = f"{path}.{key}" if path else key
    return path or "$", message


def decode(data: bytes) -> Report:
    """JSON to Report: 400 when it is not JSON (or not UTF-8), 422 naming the field when it breaks the schema."""
    try:
        try:
            return decode_report(data)
        except msgspec.ValidationError as exc:
            if "got `float`" not in str(exc):
                raise
            return _decode_integral_floats(data)
    except msgspec.ValidationError as exc:
        field, message = _field_of(str(exc))
        raise Problem(422, "Invalid report", f"{field}: {message}", errors=[(field, message)],
                      reason="invalid") from None
    except msgspec.DecodeError as exc:
        raise Problem(400, "Bad request", f"the body is not valid JSON: {exc}", reason="malformed") from None
    except UnicodeDecodeError as exc:  # msgspec raises this, not DecodeError, for bad UTF-8 in a string
        raise Problem(400, "Bad request", f"the body is not valid UTF-8: {exc.reason} at byte {exc.start}",
                      reason="malformed") from None


def _decode_integral_floats(data: bytes) -> Report:
    """JSON Schema's integers include 12.0: accept a whole float where the report has an integer (the slow path)."""
    doc = msgspec.json.decode(data)
    if isinstance(doc, dict):
        _whole(doc, _INTEGER_FIELDS)
        if isinstance(doc.get("spool"), dict):
            _whole(doc["spool"], _SPOOL_INTEGER_FIELDS)
    return msgspec.convert(doc, Report)


def _whole(doc: dict, fields: tuple[str, ...]) -> None:
    for field in fields:
        value = doc.get(field)
        if isinstance(value, float) and value.is_integer():
            doc[field] = int(value)


def _text_problem(value: str, limit: int) -> str | None:
    if len(value) > limit:
        return f"longer than {limit} characters"
    if "\x00" in value:
        return "contains a NUL character"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "is not valid Unicode (lone surrogate)"
    return None


def _finite(value: float, low: float, high: float) -> str | None:
    if not math.isfinite(value):
        return "must be a finite number"
    if not low <= value <= high:
        return f"must be between {low:g} and {high:g}"
    return None


_KNOWN_KEYS: set[str] = set()  # value keys and label names already found valid (they repeat in every report)
_KNOWN_LABELS: set[str] = set()
_KNOWN_LIMIT = 200_000


def _remember(known: set[str], key: str) -> None:
    if len(known) >= _KNOWN_LIMIT:
        known.clear()
    known.add(key)


def _value_key_problem(key: str) -> str | None:
    if key in _KNOWN_KEYS:
        return None
    if len(key) > 512 or not valid_key(key):
        return 'is not a metric key (name or name{label="value",...})'
    _remember(_KNOWN_KEYS, key)
    return None


def _label_name_problem(key: str) -> str | None:
    if key in _KNOWN_LABELS:
        return None
    if not _LABEL.match(key):
        return "is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"
    _remember(_KNOWN_LABELS, key)
    return None


def validate(report: Report) -> list[tuple[str, str]]:
    """The rules the type system cannot say; every problem with its field path.

    Written for the common case: a valid report costs one pass of cheap
    comparisons (names seen before are remembered).
    """
    errors: list[tuple[str, str]] = []

    def add(field: str, problem: str | None) -> None:
        if problem and len(errors) < MAX_ERRORS:
            errors.append((field, problem))

    if report.wire_version != WIRE_VERSION:
        add("wire_version", f"unsupported version {report.wire_version} (this collector speaks {WIRE_VERSION})")
    if not _SLUG.match(report.site):
        add("site", "must be a site id: lower-case letters, digits and dashes, at most 63")
    if not _INSTANCE.match(report.instance):
        add("instance", "must be 1-64 characters of letters, digits and _.:-")
    if not 0 <= report.seq <= MAX_SEQ:
        add("seq", f"must be between 0 and {MAX_SEQ} (2^53-1)")
    add("sent_at", _finite(report.sent_at, 0, LATEST_TS))
    add("agent_version", _text_problem(report.agent_version, 64))
    if report.config_version or report.config_error:  # a centrally managed agent (collector.fleet)
        add("config_version", _text_problem(report.config_version, 64))
        add("config_error", _text_problem(report.config_error, MAX_REASON))
    if len(report.results) > MAX_RESULTS_PER_REPORT:
        add("results", f"at most {MAX_RESULTS_PER_REPORT} results per report; split the batch")
        return errors
    for i, result in enumerate(report.results):
        _validate_result(f"results[{i}]", result, add)
    return errors


def _validate_result(where: str, result: CheckResult, add: Callable[[str, str | None], None]) -> None:
    if not 0 < len(result.check) <= MAX_CHECK_ID or "\x00" in result.check or not result.check.isascii():
        add(f"{where}.check", _text_problem(result.check, MAX_CHECK_ID) or (None if result.check else "is empty"))
    if not _PROBE.match(result.probe):
        add(f"{where}.probe", "must be a probe kind: lower-case letters, digits and _")
    if not 0 <= result.ts <= LATEST_TS:
        add(f"{where}.ts", _finite(result.ts, 0, LATEST_TS))
    if not 0 <= result.duration_s <= 86400:
        add(f"{where}.duration_s", _finite(result.duration_s, 0, 86400))
    if result.reason:
        add(f"{where}.reason", _text_problem(result.reason, MAX_REASON))
    labels = result.labels
    if len(labels) > MAX_LABELS:
        add(f"{where}.labels", f"at most {MAX_LABELS} labels")
    for key, value in labels.items():
        add(f"{where}.labels.{key[:64]}", _label_name_problem(key))
        if len(value) > MAX_LABEL_VALUE or not value.isascii() or "\x00" in value:
            add(f"{where}.labels.{key[:64]}", _text_problem(value, MAX_LABEL_VALUE))
    values = result.values
    if len(values) > MAX_VALUES:
        add(f"{where}.values", f"at most {MAX_VALUES} values")
    for key, number in values.items():
        problem = _value_key_problem(key)
        if problem:
            add(f"{where}.values.{key[:64]}", problem)
        elif not math.isfinite(number):
            add(f"{where}.values.{key}", "must be a finite number")
