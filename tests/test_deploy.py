"""The team set-up's files are valid and agree with each other and with the server, without Docker: compose.yaml
against the Compose Specification's schema, the proxy's routes, the Dockerfile's user, health check and install."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import typer
import yaml
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER

from approval_server.channels.plugin import sections
from approval_server.config import Settings, load_settings, setting_names
from approval_server.entry.cli import app as cli_app
from tests.support import REPO, ServerProcess, free_port

COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
# The Compose Specification's schema; tests/schemas/README.md says where it comes from.
COMPOSE_SCHEMA = json.loads((REPO / "tests" / "schemas" / "compose-spec.json").read_text())
REPLICAS = sorted(name for name in SERVICES if name.startswith("replica-"))
SERVER_SERVICES = ["migrate", *REPLICAS]
TOKENS = ["APPROVAL_API_TOKEN", "APPROVAL_MCP_TOKEN", "APPROVAL_DASHBOARD_TOKEN"]
REQUIRED = [*TOKENS, "POSTGRES_PASSWORD"]
SECRET_NAME = re.compile(r"TOKEN|PASSWORD|SECRET|_SID$")
# Settings of the environment that are not approval-server's own: the database URL the team chose for PostgreSQL,
# and uvicorn's list of proxies whose X-Forwarded-* headers it believes.
OTHER_SETTINGS = {"DATABASE_URL", "FORWARDED_ALLOW_IPS"}
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::\?(?P<error>[^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${NAME}` and `${NAME:?error}` (the only forms compose.yaml uses): unset or empty is an error."""

    def replace(match: re.Match[str]) -> str:
        if not env.get(match["name"]):
            raise LookupError(match["error"] or match["name"])
        return env[match["name"]]

    return VARIABLE.sub(replace, value)


def server_environment(env: dict[str, str]) -> dict[str, str]:
    return {name: interpolate(str(value), env) for name, value in SERVICES["replica-a"]["environment"].items()}


def haproxy_sections() -> dict[str, list[str]]:
    """deploy/haproxy.cfg as {"backend replicas": [its lines], ...}, without comments."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in (REPO / "deploy" / "haproxy.cfg").read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line:
            continue
        if line[0].isspace():
            current.append(" ".join(line.split()))
        else:
            current = sections.setdefault(" ".join(line.split()), [])
    return sections


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        instruction, _, arguments = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), " ".join(arguments.split())))
    return stages


def instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [arguments for instruction, arguments in stage if instruction == name]


def healthcheck_command() -> list[str]:
    (healthcheck,) = instructions(dockerfile_stages()[-1], "HEALTHCHECK")
    command: list[str] = json.loads(healthcheck.split(" CMD ", 1)[1])
    return command


def test_compose_file_follows_the_compose_specification() -> None:
    jsonschema.Draft202012Validator(COMPOSE_SCHEMA).validate(COMPOSE)


def test_the_schema_rejects_what_compose_rejects() -> None:
    broken = {"services": {"proxy": {"image": "haproxy", "depends_on": {"replica-a": {"condition": "ready"}}}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, COMPOSE_SCHEMA)


def test_replicas_are_the_same_server_with_the_same_settings() -> None:
    assert len(REPLICAS) >= 2
    first = SERVICES[REPLICAS[0]]
    for name in SERVER_SERVICES:
        service = SERVICES[name]
        assert service["image"] == first["image"]
        assert service["build"] == "."
        assert service["env_file"] == ".env"
        assert service["environment"] == first["environment"]
    for name in REPLICAS:
        assert SERVICES[name] == first


def test_the_shared_secrets_are_required_not_written_in_the_file() -> None:
    environment = SERVICES["replica-a"]["environment"]
    for name in TOKENS:
        assert VARIABLE.fullmatch(environment[name])["name"] == name  # type: ignore[index]
    assert SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    every_environment = [value for service in SERVICES.values() for value in service.get("environment", {}).items()]
    for name, value in every_environment:
        if SECRET_NAME.search(name):
            assert VARIABLE.fullmatch(str(value)), f"{name} must come from .env, not be written in compose.yaml"
    password = re.fullmatch(r"postgresql://\w+:(?P<password>\$\{[^}]*\})@[\w.-]+:\d+/\w+", environment["DATABASE_URL"])
    assert password is not None
    assert VARIABLE.fullmatch(password["password"])


@pytest.mark.parametrize("missing", REQUIRED)
def test_a_missing_secret_stops_compose_with_its_name(missing: str) -> None:
    env = {name: f"{name.lower()}-0123456789abcdef" for name in REQUIRED}
    env.pop(missing)
    with pytest.raises(LookupError, match=missing):
        server_environment(env)


def test_replicas_get_a_valid_configuration_for_the_database_postgres_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {name: f"{name.lower()}-0123456789abcdef" for name in REQUIRED}
    environment = server_environment(env)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(env_file=None)
    assert settings.server_host == "0.0.0.0"
    for name in TOKENS:
        assert getattr(settings, name.lower()).get_secret_value() == env[name]
    postgres = SERVICES["postgres"]["environment"]
    database = urlsplit(environment["DATABASE_URL"])
    assert database.scheme == "postgresql"
    assert (database.hostname, database.port) == ("postgres", 5432)
    assert database.username == postgres["POSTGRES_USER"]
    assert database.password == env["POSTGRES_PASSWORD"]
    assert database.path == "/" + postgres["POSTGRES_DB"]


def test_every_setting_in_compose_is_one_the_server_or_uvicorn_reads() -> None:
    known = setting_names([Settings, *sections()]) | OTHER_SETTINGS
    assert set(SERVICES["replica-a"]["environment"]) <= known


def test_start_order_database_then_migration_then_replicas() -> None:
    assert SERVICES["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert "--host=127.0.0.1" in SERVICES["postgres"]["healthcheck"]["test"]
    migrate = SERVICES["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in REPLICAS:
        assert SERVICES[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert SERVICES[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert set(SERVICES["proxy"]["depends_on"]) == set(REPLICAS)


def test_each_replica_has_the_images_health_check() -> None:
    for name in REPLICAS:
        assert SERVICES[name]["healthcheck"]["test"] == ["CMD", *healthcheck_command()]


def test_the_health_check_passes_on_a_running_server_and_fails_without_one(server: ServerProcess) -> None:
    command = [sys.executable, *healthcheck_command()[1:]]
    assert healthcheck_command()[0] == "python"
    assert "/healthz" in command[-1]
    up = subprocess.run(command, env={"SERVER_PORT": str(server.port)}, capture_output=True, timeout=30)
    assert up.returncode == 0, up.stderr
    down = subprocess.run(command, env={"SERVER_PORT": str(free_port())}, capture_output=True, timeout=30)
    assert down.returncode != 0


def test_the_proxy_sends_every_path_to_every_replica() -> None:
    sections = haproxy_sections()
    backends = {name.split()[1]: lines for name, lines in sections.items() if name.startswith("backend ")}
    assert backends
    port = SERVICES["replica-a"]["environment"]["SERVER_PORT"]
    for lines in backends.values():
        servers = [line.split()[1:] for line in lines if line.startswith("server ")]
        assert servers == [[name, f"{name}:{port}"] for name in REPLICAS]
    (frontend,) = (lines for name, lines in sections.items() if name.startswith("frontend "))
    used = {line.split()[1] for line in frontend if line.startswith(("use_backend ", "default_backend "))}
    assert used == set(backends)
    (published,) = SERVICES["proxy"]["ports"]
    assert f"bind :{published.split(':')[-1]}" in frontend
    assert "./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in SERVICES["proxy"]["volumes"]


def test_the_proxy_keeps_each_mcp_session_on_its_replica() -> None:
    replicas = haproxy_sections()["backend replicas"]
    assert f"stick store-response res.hdr({MCP_SESSION_ID_HEADER})" in replicas
    assert f"stick on req.hdr({MCP_SESSION_ID_HEADER})" in replicas
    assert "balance source" in haproxy_sections()["backend legacy_sse"]


def test_the_proxy_health_check_uses_a_host_the_replicas_accept() -> None:
    settings = load_settings(env_file=None, server_host="0.0.0.0")
    for name, lines in haproxy_sections().items():
        if name.startswith("backend "):
            (check,) = (line for line in lines if line.startswith("http-check send "))
            assert check.split()[:6] == ["http-check", "send", "meth", "GET", "uri", "/healthz"]
            assert check.split()[6:8] == ["hdr", "Host"]
            assert check.split()[8] in settings.allowed_hosts
    assert not any("set-header Host" in line for lines in haproxy_sections().values() for line in lines)


def test_the_proxy_waits_longer_than_a_request_can_wait() -> None:
    timeouts = {
        line.split()[1]: line.split()[2] for line in haproxy_sections()["defaults"] if line.startswith("timeout ")
    }
    expiry = Settings.model_fields["approval_timeout_seconds"].default
    for name in ("client", "server", "tunnel"):
        minutes = re.fullmatch(r"(\d+)m", timeouts[name])
        assert minutes is not None
        assert int(minutes[1]) * 60 >= 3 * expiry


def test_the_image_is_built_from_the_lock_file_without_dev_dependencies() -> None:
    build, final = dockerfile_stages()
    for stage in (build, final):
        assert re.fullmatch(r"python:3\.1[12]-slim( AS \w+)?", stage[0][1])
    syncs = [command for command in instructions(build, "RUN") if command.startswith("uv sync")]
    assert len(syncs) == 2
    for command in syncs:
        assert {"--frozen", "--no-dev", "--no-editable"} <= set(shlex.split(command))
    first_sync = build.index(("RUN", syncs[0]))
    assert build.index(("COPY", "pyproject.toml uv.lock ./")) < first_sync
    assert instructions(final, "COPY") == ["--from=build /opt/venv /opt/venv"]


def test_the_image_runs_serve_as_an_unprivileged_user() -> None:
    final = dockerfile_stages()[-1]
    names = [instruction for instruction, _ in final]
    (user,) = instructions(final, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit()
    assert int(uid) > 0
    assert gid.isdigit()
    assert int(gid) > 0
    (create_user,) = (command for command in instructions(final, "RUN") if "useradd" in command)
    assert f"--uid {uid} " in create_user
    assert f"--gid {gid} " in create_user
    assert names.index("USER") < names.index("ENTRYPOINT") < names.index("CMD")
    assert names.index("USER") < names.index("HEALTHCHECK")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    (entrypoint,) = json.loads(instructions(final, "ENTRYPOINT")[0])
    assert entrypoint in scripts
    (command,) = json.loads(instructions(final, "CMD")[0])
    assert command in typer.main.get_group(cli_app).commands


def test_the_image_listens_on_every_interface_on_the_exposed_port() -> None:
    final = dockerfile_stages()[-1]
    environment = dict(item.split("=", 1) for arguments in instructions(final, "ENV") for item in arguments.split())
    assert environment["SERVER_HOST"] == "0.0.0.0"
    assert instructions(final, "EXPOSE") == [environment["SERVER_PORT"]]
    assert environment["PYTHONUNBUFFERED"] == "1"


def test_the_build_context_is_only_what_the_dockerfile_copies() -> None:
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {
        source.rstrip("/")
        for stage in dockerfile_stages()
        for arguments in instructions(stage, "COPY")
        if not arguments.startswith("--from=")
        for source in arguments.split()[:-1]
    }
    assert included == copied
    assert ".env" not in included


def test_the_docs_explain_the_team_set_up() -> None:
    section = (REPO / "docs" / "team.md").read_text().split("## Team set-up: PostgreSQL and several replicas")[1]
    assert "docker compose up -d" in section
    for name in REQUIRED:
        assert f"\n{name}=" in section
    assert Path("deploy/haproxy.cfg").as_posix() in section


def test_the_systemd_unit_runs_the_server_as_its_own_user_with_its_files_out_of_reach() -> None:
    lines = (REPO / "deploy" / "approval-server.service").read_text().splitlines()
    settings: dict[str, list[str]] = {}
    for line in lines:
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    assert settings["User"] == settings["Group"] == ["approval-server"]
    assert settings["ProtectHome"] == ["yes"]
    assert settings["UMask"] == ["0077"]
    state = f"/var/lib/{settings['StateDirectory'][0]}"
    assert f"APPROVAL_DATA_DIR={state}" in settings["Environment"]
    assert settings["WorkingDirectory"] == [state]
    config = f"/etc/{settings['ConfigurationDirectory'][0]}"
    assert settings["ExecStart"][0].endswith(f"serve --env-file {config}/env")
    assert f"POLICY_FILE={config}/policy.toml" in settings["Environment"]
