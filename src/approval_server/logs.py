"""The server's log: one format for every line (uvicorn's included), the libraries' chatter about each HTTP request
kept out, and no secret in any line. Tokens, signed request links and session cookies are replaced by `[redacted]`
as each line is written, whoever logged it."""

from __future__ import annotations

import logging
import logging.config
import re

from uvicorn.logging import AccessFormatter

from approval_server.web_auth import SESSION_COOKIE

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
ACCESS_FORMAT = '%(asctime)s %(levelname)-7s %(name)s: %(client_addr)s - "%(request_line)s" %(status_code)s'
DATE_FORMAT = "%H:%M:%S"
REDACTED = "[redacted]"
# Libraries that log every request they make or serve (Twilio's client: each call and its headers, at INFO), and
# Alembic's migration steps: WARNING and above, or INFO too at APPROVAL_LOG_LEVEL=debug.
QUIET_LOGGERS = ("twilio", "httpx", "httpcore", "aiohttp", "urllib3", "alembic")

_PATTERNS = (
    # A token in a query string: /login?token=…, and any other ?token= or &token=.
    (re.compile(r"([?&](?:access_)?token=)[^&#\s\"']+", re.IGNORECASE), rf"\g<1>{REDACTED}"),
    # A request's signed link, /r/[.]<payload>.<time>.<signature> (itsdangerous; the dot: compressed), as a path
    # or inside a whole URL; a file path such as /srv/r/a.tar.gz is left alone.
    (re.compile(r"(/r/)\.?[\w-]+\.[\w-]{4,8}\.[\w-]{20,}"), rf"\g<1>{REDACTED}"),
    (re.compile(r"(Bearer\s+)[^\s\"',;]+", re.IGNORECASE), rf"\g<1>{REDACTED}"),
    (re.compile(rf"({SESSION_COOKIE}=)[^;\s\"']+"), rf"\g<1>{REDACTED}"),
)
_secrets: set[str] = set()


def hide(*secrets: str | None) -> None:
    """Redact these values (the tokens in use, Twilio's auth token) wherever a log line holds them."""
    _secrets.update(secret for secret in secrets if secret)


def redact(text: str) -> str:
    """`text` with every secret `hide` was given, and every token, signed link or session cookie, redacted."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class RedactingAccessFormatter(AccessFormatter):
    """Uvicorn's access log line (`GET /path?query HTTP/1.1" 200 OK`), redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: str) -> None:
    """Every logger to stderr in one format through the redacting formatters, at `level` (debug, info, warning,
    error); the libraries of `QUIET_LOGGERS` at WARNING, INFO at debug. Uvicorn is then given no configuration of its
    own (`log_config=None`)."""
    quiet = "INFO" if level == "debug" else "WARNING"

    def handler(formatter: str) -> dict[str, str]:
        return {"class": "logging.StreamHandler", "formatter": formatter, "stream": "ext://sys.stderr"}

    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "default": {"()": RedactingFormatter, "fmt": FORMAT, "datefmt": DATE_FORMAT},
                "access": {
                    "()": RedactingAccessFormatter,
                    "fmt": ACCESS_FORMAT,
                    "datefmt": DATE_FORMAT,
                    "use_colors": False,
                },
            },
            "handlers": {"default": handler("default"), "access": handler("access")},
            "root": {"level": level.upper(), "handlers": ["default"]},
            "loggers": {
                "uvicorn": {"level": level.upper(), "handlers": [], "propagate": True},
                "uvicorn.access": {"handlers": ["access"], "propagate": False},
                **{name: {"level": quiet} for name in QUIET_LOGGERS},
            },
        }
    )
