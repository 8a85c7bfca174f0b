"""A configuration mistake is told in one readable line, with its fix, and exit code 2 before anything starts: a
misspelt setting name (with the closest real one), a PUBLIC_URL with a path, a phone number that is well-formed but
not valid, a port already in use. `approval-server serve` as a user runs it, with a scratch HOME and data directory.
"""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from tests.support import ServerProcess

NOT_STARTED = "approval-server 0.1.0"  # the banner's first line: printed only once the server is about to serve


def refused(tmp_path: Path, env_file: str = "", **env: str) -> str:
    """`serve` started with this `.env` and environment, expected to stop with exit 2: its stderr."""
    server = ServerProcess(data_dir=tmp_path / "data", env=env)
    server.data_dir.mkdir(parents=True)
    if env_file:
        (server.data_dir / ".env").write_text(env_file)
    result = server.start_expecting_failure()
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert NOT_STARTED not in result.stderr
    assert not (server.data_dir / "dashboard-token").exists()  # nothing was created
    return result.stderr


def test_a_misspelt_name_in_env_is_refused_with_the_closest_setting(tmp_path: Path) -> None:
    stderr = refused(tmp_path, "SERVER_PROT=9000\nAPROVAL_TIMEOUT_SECONDS=60\nPOSTGRES_PASSWORD=kept-for-compose\n")
    assert stderr == (
        "approval-server: .env: SERVER_PROT is not a setting of approval-server; did you mean SERVER_PORT?\n"
        ".env: APROVAL_TIMEOUT_SECONDS is not a setting of approval-server; did you mean APPROVAL_TIMEOUT_SECONDS?\n"
    )


def test_an_unknown_name_with_our_prefix_in_env_lists_the_settings_of_that_prefix(tmp_path: Path) -> None:
    stderr = refused(tmp_path, "TWILIO_API_KEY=SK0123\n")
    assert stderr == (
        "approval-server: .env: TWILIO_API_KEY is not a setting of approval-server; the TWILIO_* settings are "
        "TWILIO_ACCOUNT_SID, TWILIO_API_BASE_URL, TWILIO_AUTH_TOKEN, TWILIO_CONTENT_SID, TWILIO_WHATSAPP_FROM\n"
    )


def test_a_misspelt_name_in_the_environment_is_a_warning_and_the_server_starts(tmp_path: Path) -> None:
    server = ServerProcess(data_dir=tmp_path / "data", env={"SERVER_PROT": "9000", "PUBLICURL": "https://x.ngrok.app"})
    server.start()
    try:
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    finally:
        server.stop()
    log = server.log()
    for name, meant in (("PUBLICURL", "PUBLIC_URL"), ("SERVER_PROT", "SERVER_PORT")):
        assert (
            f"approval-server: warning: {name} in the environment is not a setting of approval-server, and is "
            f"ignored; did you mean {meant}?\n"
        ) in log
    assert log.index("warning: PUBLICURL") < log.index(NOT_STARTED)


def test_a_public_url_with_a_path_is_refused_with_the_url_to_set(tmp_path: Path) -> None:
    stderr = refused(tmp_path, "PUBLIC_URL=https://x.ngrok.app/twilio-webhook\n")
    assert stderr == (
        "approval-server: The configuration in .env or the environment is not valid:\n"
        "  PUBLIC_URL: https://x.ngrok.app/twilio-webhook has a path: PUBLIC_URL is the base URL that reaches this "
        "server (the server adds /twilio-webhook and the other paths itself). Set PUBLIC_URL=https://x.ngrok.app\n"
        "Fix these values (see .env.example and docs/configuration.md) and start again.\n"
    )


@pytest.mark.parametrize(
    ("numbers", "said"),
    [
        # A number of the right length in a range no phone has (UK numbers kept for drama): it is in the
        # international form, so saying to use that form would mislead.
        (
            "+14155552671,+447700900123",
            "'+447700900123' is well-formed but not a valid number for its country, +44 (GB): check it",
        ),
        ("+1415555267", "'+1415555267' is not a valid phone number: too short for +1 (US)"),
        (
            "4155552671",
            "'4155552671' is not a phone number in the international form (+, the country code, then the number, "
            "e.g. +14155552671)",
        ),
    ],
)
def test_a_phone_number_says_what_is_wrong_with_it(tmp_path: Path, numbers: str, said: str) -> None:
    stderr = refused(tmp_path, f"APPROVAL_PHONE={numbers}\n")
    assert stderr == (
        "approval-server: The configuration in .env or the environment is not valid:\n"
        f"  APPROVAL_PHONE: {said}\n"
        "Fix these values (see .env.example and docs/configuration.md) and start again.\n"
    )


def test_the_example_numbers_are_valid(tmp_path: Path) -> None:
    """The numbers the documentation shows pass the phone check: what stops this start is the missing rest."""
    stderr = refused(tmp_path, "APPROVAL_PHONE=+14155552671,+447400123456\n")
    assert "half configured" in stderr
    assert "APPROVAL_PHONE" not in stderr


def test_a_port_in_use_is_one_line_and_exit_2_before_the_banner(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stderr = refused(tmp_path, SERVER_PORT=str(port))
    assert stderr == (
        f"approval-server: Cannot listen on 127.0.0.1:{port}: port {port} is in use by another program: stop it, "
        "or choose another port (--port or SERVER_PORT).\n"
    )
