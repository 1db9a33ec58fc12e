"""Peak memory of one POST /v1/traces, against the size of its inflated body.

Each request is sent, gzip-compressed, to a query service app in a process of its own
(through FastAPI's test client, with a SQLite store), after a small request has warmed
it up; the body is built in this process and handed over as a file, so the probe holds
only the compressed bytes before it starts. The probe resets its peak RSS
(/proc/self/clear_refs) and reports how far the peak rose during the request above
the RSS it started from: what the request cost. The same run measures a batch of
ordinary chat spans as the baseline shape.

Target (the defaults): growth <= 10x the inflated body, and <= 256 MiB for a body at
the 64 MiB inflated cap.

Shapes:
  chat batch       512 chat spans, a quarter with an exception (what a collector sends)
  wide span        one span with SIZE small attributes (the attack: 1.5 M of them, 63 MiB)
  wide span json   the same, as OTLP/JSON
  many spans       spans of 128 attributes, each an array of 16 numbers, SIZE attributes in all
  many events      spans of 128 events of 128 attributes, SIZE event attributes in all

Usage: python bench/ingest_memory.py [--shape NAME ...] [--size N]
       python bench/ingest_memory.py --shape "wide span" --size 200000 --json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

INGEST_KEY = "bench-ingest-key-0123456789abcdef"
PROTOBUF, JSON = "application/x-protobuf", "application/json"
# Each shape's default size brings its inflated body near the 64 MiB default cap.
SHAPES = {
    "chat batch": 512,
    "wide span": 1_500_000,
    "wide span json": 950_000,
    "many spans": 700_000,
    "many events": 2_500_000,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=SHAPES, action="append")
    parser.add_argument("--size", type=int, help="attributes in all (default: per shape)")
    parser.add_argument("--json", action="store_true", help="one JSON line per shape")
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # the child: a body file
    parser.add_argument("--media", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(_probe(Path(args.probe), args.media)))
        return
    if not args.json:
        print(
            f"{'shape':<16}{'gzip MiB':>10}{'inflated MiB':>14}{'peak +MiB':>11}"
            f"{'x inflated':>12}{'seconds':>9}  status"
        )
    for shape in args.shape or SHAPES:
        media, body = _build(shape, args.size or SHAPES[shape])
        measured = _measure(shape, media, body)
        if args.json:
            print(json.dumps(measured))
            continue
        mib = 1024 * 1024
        print(
            f"{shape:<16}{measured['gzip_bytes'] / mib:>10.1f}"
            f"{measured['inflated_bytes'] / mib:>14.1f}{measured['growth_bytes'] / mib:>11.1f}"
            f"{measured['growth_bytes'] / measured['inflated_bytes']:>12.2f}"
            f"{measured['seconds']:>9.2f}  {measured['status']}"
        )


def _measure(shape: str, media: str, body: bytes) -> dict:
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "body.gz"
        path.write_bytes(gzip.compress(body, 6))
        result = subprocess.run(
            [sys.executable, __file__, "--probe", str(path), "--media", media],
            capture_output=True,
            text=True,
            cwd=work,
            env={**os.environ, "CHATSPAN_SPOOL": "false"},
            check=False,
        )
    if result.returncode:
        raise SystemExit(f"the probe failed on {shape}:\n{result.stderr}")
    return {"shape": shape, **json.loads(result.stdout.strip().splitlines()[-1])}


def _probe(path: Path, media: str) -> dict:
    from fastapi.testclient import TestClient

    from chatspan.config import ApiSettings
    from chatspan.query_api import create_app

    body = path.read_bytes()
    inflated = len(gzip.decompress(body))
    app = create_app(ApiSettings(database_url="sqlite:///probe.db", ingest_api_keys=(INGEST_KEY,)))
    headers = {
        "Authorization": f"Bearer {INGEST_KEY}",
        "Content-Type": media,
        "Content-Encoding": "gzip",
    }
    with TestClient(app, headers=headers) as client:
        warm = client.post(
            "/v1/traces",
            content=gzip.compress(_build("chat batch", 0)[1]),
            headers={"Content-Type": PROTOBUF},
        )
        assert warm.status_code == 200, warm.text
        before = _status_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from here
        started = time.perf_counter()
        response = client.post("/v1/traces", content=body)
        seconds = time.perf_counter() - started
        peak = _status_kib("VmHWM")
    return {
        "status": response.status_code,
        "gzip_bytes": len(body),
        "inflated_bytes": inflated,
        "growth_bytes": (peak - before) * 1024,
        "seconds": round(seconds, 3),
    }


def _status_kib(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+)", status).group(1))


def _build(shape: str, size: int) -> tuple[str, bytes]:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import (
        encode_spans,
    )

    from spans import chat_spans

    if shape == "chat batch":
        return PROTOBUF, encode_spans(chat_spans(512, exception_every=4)).SerializeToString()
    if shape.startswith("wide span"):
        body = _request([_span(1, _attributes(size, _int_value), [])])
        return (JSON, _as_json(body)) if shape.endswith("json") else (PROTOBUF, body)
    if shape == "many spans":
        array = _any_value(5, b"".join(_field(1, 2, _int_value(i)) for i in range(16)))
        attributes = _attributes(128, lambda i: array)
        return PROTOBUF, _request([_span(n, attributes, []) for n in range(1, size // 128 + 1)])
    event = _field(11, 2, _field(2, 2, b"exception") + _attributes(128, _int_value, field=3))
    events = [event] * 128
    return PROTOBUF, _request([_span(n, b"", events) for n in range(1, size // (128 * 128) + 2)])


# A few wire-format writers: building millions of attributes through the protobuf
# API takes longer than the measurement.


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, wire: int, payload: bytes | int) -> bytes:
    key = _varint(number << 3 | wire)
    if wire == 0:
        return key + _varint(payload)  # type: ignore[arg-type]
    return key + _varint(len(payload)) + payload  # type: ignore[arg-type]


def _any_value(number: int, payload: bytes) -> bytes:
    return _field(number, 2, payload)


def _int_value(i: int) -> bytes:
    return _field(3, 0, i)  # AnyValue.int_value


def _attributes(count: int, value, field: int = 9) -> bytes:
    return b"".join(
        _field(field, 2, _field(1, 2, f"attribute.{i:07d}".encode()) + _field(2, 2, value(i)))
        for i in range(count)
    )


def _span(number: int, attributes: bytes, events: list[bytes]) -> bytes:
    return _field(
        2,
        2,
        _field(1, 2, bytes.fromhex("5b8efff798038103d269b633813fc60c"))
        + _field(2, 2, number.to_bytes(8, "big"))
        + _field(5, 2, b"chat")
        + b"\x39"
        + (1_700_000_000_000_000_000).to_bytes(8, "little")  # start, fixed64
        + attributes
        + b"".join(events),
    )


def _request(spans: list[bytes]) -> bytes:
    return _field(1, 2, _field(2, 2, b"".join(spans)))  # resource_spans{scope_spans{spans}}


def _as_json(body: bytes) -> bytes:
    """OTLP/JSON as the specification writes it (hex ids), streamed from the protobuf."""
    import base64

    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    document = json_format.MessageToDict(ExportTraceServiceRequest.FromString(body))
    for resource in document["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId"):
                    span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(document).encode()


if __name__ == "__main__":
    main()
