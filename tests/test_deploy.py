"""Deploying with Dify, checked without a Docker engine: the Dockerfiles lint clean, the
compose override merges with (a stand-in for) Dify's compose file, the wrapper that puts
opentelemetry-instrument in front of Dify's gunicorn and celery does so (and nothing
else), and Dify's nginx template gains chatspan's locations."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent

# What a stand-in needs of Dify's docker/docker-compose.yaml: the services the override
# changes, with the keys it merges into.
DIFY_COMPOSE = """
x-shared-env: &shared-api-worker-env
  DB_USERNAME: ${DB_USERNAME:-postgres}
services:
  api:
    image: langgenius/dify-api:1.13.3
    environment:
      <<: *shared-api-worker-env
      MODE: api
  worker:
    image: langgenius/dify-api:1.13.3
    environment:
      <<: *shared-api-worker-env
      MODE: worker
  db_postgres:
    image: postgres:15-alpine
  nginx:
    image: nginx:latest
    volumes:
      - ./nginx/conf.d:/etc/nginx/conf.d
    depends_on:
      - api
"""

# The shape of Dify's nginx server template (docker/nginx/conf.d/default.conf.template).
DIFY_NGINX_TEMPLATE = """server {
    listen ${NGINX_PORT};
    server_name ${NGINX_SERVER_NAME};

    location /console/api {
      proxy_pass http://api:5001;
      include proxy.conf;
    }

    location / {
      proxy_pass http://web:3000;
      include proxy.conf;
    }
}
"""


@pytest.mark.parametrize("dockerfile", ["dify/Dockerfile", "chatspan/Dockerfile"])
def test_dockerfiles_lint_clean(dockerfile):
    result = subprocess.run(
        [str(BIN / "hadolint"), str(DEPLOY / dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        if os.environ.get("CHATSPAN_REQUIRE_COMPOSE") == "1":
            pytest.fail("docker-compose is not installed (CHATSPAN_REQUIRE_COMPOSE=1)")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    return found


def _merged(dify_docker: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CHATSPAN_")}
    return subprocess.run(
        [_compose(), "config"],
        check=False,
        cwd=dify_docker,
        env={**environment, **env},
        capture_output=True,
        text=True,
    )


@pytest.fixture
def dify_docker(tmp_path) -> Path:
    """Dify's docker/ folder, as the README has the operator prepare it."""
    docker = tmp_path / "docker"
    (docker / "nginx" / "conf.d").mkdir(parents=True)
    (docker / "chatspan").mkdir()
    (docker / "docker-compose.yaml").write_text(DIFY_COMPOSE)
    shutil.copy(DEPLOY / "dify" / "docker-compose.override.yaml", docker)
    return docker


def test_the_override_merges_with_dify_s_compose_file(dify_docker):
    result = _merged(
        dify_docker,
        CHATSPAN_SOURCE=str(ROOT),
        CHATSPAN_ADMIN_API_KEYS="placeholder-admin-key-0123456789",
        DB_PASSWORD="placeholder-db-password",
    )
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name, service_name in (("api", "dify-api"), ("worker", "dify-worker")):
        service = services[name]
        assert service["build"]["dockerfile"] == "deploy/dify/Dockerfile"
        assert service["build"]["args"]["DIFY_VERSION"] == "1.13.3"
        assert service["environment"]["MODE"] == name  # Dify's own settings are kept
        assert service["environment"]["OTEL_SERVICE_NAME"] == service_name
        assert service["environment"]["CHATSPAN_DATABASE_URL"] == (
            "postgresql://postgres:placeholder-db-password@db_postgres:5432/dify"
        )
    chatspan = services["chatspan"]
    assert chatspan["build"]["dockerfile"] == "deploy/chatspan/Dockerfile"
    assert chatspan["environment"]["CHATSPAN_ADMIN_API_KEYS"] == "placeholder-admin-key-0123456789"
    nginx = services["nginx"]
    assert any(v.endswith(":/etc/nginx/conf.d/default.conf.template:ro") for v in nginx["volumes"])
    assert set(nginx["depends_on"]) == {"api", "chatspan"}


def test_the_override_names_what_is_missing(dify_docker):
    without_source = _merged(dify_docker, CHATSPAN_ADMIN_API_KEYS="placeholder-admin-key-0123")
    assert without_source.returncode != 0 and "CHATSPAN_SOURCE" in without_source.stderr
    without_keys = _merged(dify_docker, CHATSPAN_SOURCE=str(ROOT))
    assert without_keys.returncode != 0 and "CHATSPAN_ADMIN_API_KEYS" in without_keys.stderr


# -- the wrapper in front of gunicorn and celery -----------------------------------------


@pytest.fixture
def image(tmp_path) -> dict[str, Path]:
    """A stand-in for the image's PATH: chatspan's wrapper first, then Dify's virtualenv
    with a gunicorn, a celery and an opentelemetry-instrument that say how they were run."""
    shims, venv = tmp_path / "opt-chatspan-bin", tmp_path / "venv-bin"
    shims.mkdir()
    venv.mkdir()
    shutil.copy(DEPLOY / "dify" / "instrumented", shims / "instrumented")
    for name in ("gunicorn", "celery"):
        (shims / name).symlink_to("instrumented")
    for name in ("gunicorn", "celery", "opentelemetry-instrument"):
        stub = venv / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*"\n')
        stub.chmod(0o755)
    return {"shims": shims, "venv": venv}


def _run(image: dict[str, Path], command: list[str], **env: str) -> subprocess.CompletedProcess:
    path = f"{image['shims']}:{image['venv']}:/usr/bin:/bin"
    return subprocess.run(
        command, env={"PATH": path, **env}, capture_output=True, text=True, check=False
    )


def test_dify_s_entrypoint_starts_gunicorn_and_the_celery_worker_under_the_launcher(
    image, tmp_path
):
    # What Dify's entrypoint does per MODE: `exec gunicorn ... app:app`, `exec celery ...`.
    entrypoint = tmp_path / "entrypoint.sh"
    entrypoint.write_text(
        "#!/bin/bash\n"
        'if [[ "${MODE}" == "worker" ]]; then\n'
        "  exec celery -A celery_entrypoint.celery worker -P gevent -c 1\n"
        "else\n"
        '  exec gunicorn --bind "0.0.0.0:5001" --worker-class gevent app:app\n'
        "fi\n"
    )
    venv = image["venv"]
    api = _run(image, ["bash", str(entrypoint)], MODE="api")
    assert api.stdout.strip() == (
        f"opentelemetry-instrument {venv}/gunicorn --bind 0.0.0.0:5001 --worker-class gevent "
        "app:app"
    )
    worker = _run(image, ["bash", str(entrypoint)], MODE="worker")
    assert worker.stdout.strip() == (
        f"opentelemetry-instrument {venv}/celery -A celery_entrypoint.celery worker -P gevent -c 1"
    )


def test_the_wrapper_runs_bare_when_told_and_for_celery_beat(image):
    bare = _run(image, ["gunicorn", "app:app"], CHATSPAN_INSTRUMENT="false")
    assert bare.stdout.strip() == "gunicorn app:app"
    beat = _run(image, ["celery", "-A", "app.celery", "beat"])
    assert beat.stdout.strip() == "celery -A app.celery beat"


def test_the_wrapper_says_when_the_real_command_is_missing(image):
    (image["venv"] / "gunicorn").unlink()
    missing = _run(image, ["gunicorn", "app:app"])
    assert missing.returncode == 127
    assert "no gunicorn on PATH" in missing.stderr


# -- nginx ---------------------------------------------------------------------------------


def _with_chatspan(template: Path) -> subprocess.CompletedProcess:
    script = DEPLOY / "dify" / "nginx" / "with-chatspan.sh"
    command = ["sh", str(script), str(template)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_dify_s_nginx_template_gains_chatspan_s_locations_in_its_server_block(tmp_path):
    template = tmp_path / "default.conf.template"
    template.write_text(DIFY_NGINX_TEMPLATE)
    result = _with_chatspan(template)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    server_block = text[text.index("server {") : text.rindex("}")]
    for location in ("location /console/api/admin/ {", "location /console/admin/ {"):
        assert location in server_block
    assert text.count("proxy_pass http://chatspan:8000;") == 2
    assert text.replace(server_block, "") == "}\n"  # nothing outside the server block
    for line in DIFY_NGINX_TEMPLATE.splitlines():  # Dify's own routes are kept as they are
        assert line in text.splitlines()
    template.write_text(text)
    again = _with_chatspan(template)
    assert again.returncode == 1 and "already routes" in again.stderr


def test_a_template_that_is_not_dify_s_is_refused(tmp_path):
    template = tmp_path / "other.conf"
    template.write_text("events {}\n")
    result = _with_chatspan(template)
    assert result.returncode == 1 and "no server_name" in result.stderr
