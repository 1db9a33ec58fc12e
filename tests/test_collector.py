"""Collector forwarding: the shipped configurations are coherent, and chats travel
app → OTLP → rotel → chatspan ingest → PostgreSQL as they do through the direct
exporter, surviving a restart of the ingest service."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import rotel
import yaml

from chatspan.store.engine import make_engine
from chatspan.store.migrate import upgrade

from pgdb import scratch_database
from rows import comparable_rows, count_rows
from servers import (
    APP_KEY,
    clean_env,
    free_port,
    run_app,
    run_chatspan_serve,
    run_process,
    stop,
    wait_for,
)

CONFIG = Path(__file__).parent.parent / "collector-config"
INGEST_KEY = "collector-ingest-key-0123456789"
ADMIN_KEY = "collector-admin-key-0123456789"
ROTEL_AGENT = Path(rotel.__file__).parent / "rotel-agent"


def test_the_collector_pipelines_use_only_defined_components():
    config = yaml.safe_load((CONFIG / "otelcol-contrib.yaml").read_text())
    service = config["service"]
    assert set(service["extensions"]) <= set(config["extensions"])
    for name, pipeline in service["pipelines"].items():
        for kind in ("receivers", "processors", "exporters"):
            undefined = set(pipeline[kind]) - set(config[kind])
            assert not undefined, f"pipeline {name} uses undefined {kind}: {undefined}"
    traces = service["pipelines"]["traces"]
    assert traces["processors"][0] == "memory_limiter"  # first, as the collector advises
    assert traces["processors"][-1] == "batch"
    assert "redaction" in traces["processors"]
    chatspan = config["exporters"]["otlphttp/chatspan"]
    assert chatspan["sending_queue"]["storage"] in service["extensions"]
    assert chatspan["retry_on_failure"]["enabled"] is True
    assert chatspan["headers"]["Authorization"] == "Bearer ${env:CHATSPAN_INGEST_API_KEY}"
    assert any(name.startswith("otlp/") for name in traces["exporters"])  # the trace viewer


def _rotel_settings(http_port: int, grpc_port: int, ingest_url: str) -> dict[str, str]:
    """rotel.env as a shell would load it, pointed at this test's ports."""
    settings = {}
    for line in (CONFIG / "rotel.env").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition("=")
        settings[key.strip()] = (
            value.strip().strip('"').replace("${CHATSPAN_INGEST_API_KEY}", INGEST_KEY)
        )
    assert all(key.startswith("ROTEL_") for key in settings)
    settings["ROTEL_OTLP_HTTP_ENDPOINT"] = f"127.0.0.1:{http_port}"
    settings["ROTEL_OTLP_GRPC_ENDPOINT"] = f"127.0.0.1:{grpc_port}"
    settings["ROTEL_OTLP_EXPORTER_ENDPOINT"] = ingest_url
    return settings


@contextlib.contextmanager
def run_rotel(log_dir: Path, ingest_url: str) -> Iterator[str]:
    http_port, grpc_port = free_port(), free_port()
    env = {**clean_env(), **_rotel_settings(http_port, grpc_port, ingest_url)}
    command = [str(ROTEL_AGENT), "start"]
    with run_process(
        command, env, log_dir / "rotel.log", http_port, _listening, what="rotel"
    ) as agent:
        yield agent.base_url


def _listening(base_url: str) -> bool:
    httpx.post(f"{base_url}/v1/traces", content=b"", timeout=1)  # any answer will do
    return True


def _chat(app_url: str, user: str, i: int) -> None:
    mode = "streaming" if i % 2 else "blocking"
    query = f"question {i}" + (" [stream-error]" if i % 5 == 4 else "")
    with httpx.stream(
        "POST",
        f"{app_url}/v1/chat-messages",
        headers={"Authorization": f"Bearer {APP_KEY}"},
        json={"inputs": {}, "query": query, "user": user, "response_mode": mode},
        timeout=30,
    ) as response:
        response.read()
    assert response.status_code == 200


@pytest.mark.slow
def test_chats_forwarded_through_rotel_equal_the_direct_exporters_and_survive_a_restart(
    postgres_server, tmp_path
):
    with (
        scratch_database(postgres_server, "viacollector") as forwarded_url,
        scratch_database(postgres_server, "direct") as direct_url,
    ):
        for url in (forwarded_url, direct_url):
            engine = make_engine(url, timeout_s=30)
            upgrade(engine)  # as `chatspan db upgrade` would, so polling finds the tables
            engine.dispose()
        serve_env = clean_env(
            CHATSPAN_DATABASE_URL=forwarded_url,
            CHATSPAN_INGEST_API_KEYS=INGEST_KEY,
            CHATSPAN_ADMIN_API_KEYS=ADMIN_KEY,
        )
        port = free_port()
        with (
            run_chatspan_serve(tmp_path, serve_env, port) as ingest,
            run_rotel(tmp_path, f"http://127.0.0.1:{port}") as collector,
        ):
            app_env = clean_env(
                # Both roads at once: OTLP to the collector, and straight into direct_url.
                OTEL_TRACES_EXPORTER="otlp,chatspan_postgres",
                OTEL_EXPORTER_OTLP_ENDPOINT=collector,
                OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
                CHATSPAN_DATABASE_URL=direct_url,
                OTEL_BSP_SCHEDULE_DELAY="100",
                OTEL_SERVICE_NAME="dify-api",
            )
            with run_app("flask", tmp_path, app_env) as app:
                for i in range(10):
                    _chat(app.base_url, "before", i)
                wait_for(
                    lambda: count_rows(forwarded_url, "dify_logs") >= 10,
                    what="forwarded chats",
                )
                stop(ingest)  # the ingest service goes away mid-run ...
                for i in range(10, 25):
                    _chat(app.base_url, "during", i)
                time.sleep(1)
                # ... and comes back on the same port.
                with run_chatspan_serve(tmp_path, serve_env, port):
                    wait_for(
                        lambda: count_rows(forwarded_url, "dify_logs") >= 25,
                        timeout=60,
                        what="the chats sent while ingest was down",
                    )
                    wait_for(
                        lambda: count_rows(direct_url, "dify_logs") >= 25,
                        what="direct rows",
                    )
                    for table in ("dify_logs", "error"):
                        wait_for(
                            lambda table=table: (
                                comparable_rows(forwarded_url, table)
                                == comparable_rows(direct_url, table)
                            ),
                            what=f"the same {table} rows by both roads",
                        )
        assert len(comparable_rows(direct_url, "dify_logs")) == 25
        stream_errors = sum(1 for i in range(25) if i % 5 == 4 and i % 2)  # see _chat
        assert len(comparable_rows(direct_url, "error")) == stream_errors
