"""How a report sits in the journal until the aggregator folds it.

The journal keeps the report's JSON exactly as validated, compressed: when the
agent sent it gzip-compressed (it does), those very bytes are stored, so
accepting a report costs no second encoding; otherwise the JSON is compressed
with raw Snappy. A one-byte tag says which. Folding decodes it with the same
typed decoder as ingest.
"""

from __future__ import annotations

import zlib

import cramjam

from commune_common.wire import Report, decode_report, encode_report

GZIP_JSON = b"G"
SNAPPY_JSON = b"S"


def pack_json(data: bytes, gzipped: bytes | None = None) -> bytes:
    """The journal blob for a validated report's JSON (``gzipped``: the same JSON as the client gzipped it)."""
    if gzipped is not None:
        return GZIP_JSON + gzipped
    return SNAPPY_JSON + bytes(cramjam.snappy.compress_raw(data))


def pack(report: Report) -> bytes:
    return pack_json(encode_report(report))


def unpack(blob: bytes) -> Report:
    tag, body = blob[:1], blob[1:]
    if tag == GZIP_JSON:
        return decode_report(zlib.decompress(body, 16 + zlib.MAX_WBITS))
    if tag == SNAPPY_JSON:
        return decode_report(bytes(cramjam.snappy.decompress_raw(body)))
    raise ValueError(f"unknown journal blob format {tag!r}")
