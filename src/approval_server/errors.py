"""The project's exceptions, in one place.

ApprovalServerError
 ├── ConfigError          bad settings or .env: a readable message, exit code 2
 ├── StoreError           the database failed (mapped from SQLAlchemy at the store boundary)
 │    └── DatabaseUnavailable  503 (an HTTPError first): the database can record nothing now
 │         ├── DatabaseLost    its file was deleted or replaced under the running server (db_watch)
 │         └── DatabaseFull    its disk is full
 ├── ServerUnreachable     the CLI could not get an answer from the running server (client.py)
 └── HTTPError            an answer to an HTTP client, carrying its status
      ├── BadRequest      400: malformed JSON or fields
      │    └── UnsupportedMediaType  415: a body of another type than the route reads
      ├── NotFound        404: no such request or grant
      ├── RequestClosed   409: the request has left `pending` already
      ├── NotDelivered    409: the agent that asked no longer waits for an answer, so none is recorded
      ├── GrantEnded      409: the grant was revoked or has expired already
      └── TooLarge        413: the body is over the route's limit
"""

from __future__ import annotations


class ApprovalServerError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(ApprovalServerError):
    """The configuration cannot be used; the message says what to fix."""


class StoreError(ApprovalServerError):
    """The database could not complete an operation."""


class HTTPError(ApprovalServerError):
    """An error answered to an HTTP client as JSON `{"error": code, "detail": message}`."""

    status_code = 500
    code = "internal_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(HTTPError):
    status_code = 400
    code = "bad_request"


class UnsupportedMediaType(BadRequest):
    status_code = 415
    code = "unsupported_media_type"


class NotFound(HTTPError):
    status_code = 404
    code = "not_found"


class RequestClosed(HTTPError):
    status_code = 409
    code = "request_closed"


class NotDelivered(HTTPError):
    """The agent that asked is no longer waiting (it went away, its server died or could not record its closing): an
    answer now would be recorded for an action that never runs, so it is refused."""

    status_code = 409
    code = "not_delivered"


class GrantEnded(HTTPError):
    status_code = 409
    code = "grant_ended"


class TooLarge(HTTPError):
    status_code = 413
    code = "too_large"


class DatabaseUnavailable(HTTPError, StoreError):
    """The database can record nothing now: a store error that an HTTP client is told as 503, with the reason (its
    `HTTPError` side comes first, so that a handler of store errors at large does not answer in its place)."""

    status_code = 503
    code = "database_unavailable"

    def __init__(self, why: str) -> None:
        super().__init__(f"approval-server cannot record anything: {why}")
        self.why = why


class DatabaseLost(DatabaseUnavailable):
    code = "database_lost"


class DatabaseFull(DatabaseUnavailable):
    code = "database_full"
