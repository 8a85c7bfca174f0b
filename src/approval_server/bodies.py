"""Request bodies read with a size limit, counted as they arrive: a chunked body has no Content-Length to check."""

from __future__ import annotations

from contextlib import aclosing

from starlette.datastructures import FormData
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message

from approval_server.errors import BadRequest, TooLarge, UnsupportedMediaType

FORM_TYPE = "application/x-www-form-urlencoded"


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or `TooLarge` as soon as it passes `limit` bytes (the rest is never read)."""
    too_large = TooLarge(f"the body is larger than {limit:,} bytes")
    if int(request.headers.get("content-length") or 0) > limit:
        raise too_large
    body = bytearray()
    try:
        async with aclosing(request.stream()) as stream:
            async for chunk in stream:
                body += chunk
                if len(body) > limit:
                    raise too_large
    except ClientDisconnect:  # a client gone (or cut off for being too slow) is no error of the server's
        raise BadRequest("the client went away before sending the whole body") from None
    return bytes(body)


async def read_form(request: Request, limit: int) -> FormData:
    """The urlencoded form in the body, every value a string. Raises `UnsupportedMediaType` for any other content
    type (multipart included: no form here uploads a file), `TooLarge`, or `BadRequest` for a malformed body.
    An empty body with no content type is an empty form (a bare POST), so the caller's own checks say what is missing.
    """
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    body = await read_body(request, limit)
    if not body and not media_type:
        return FormData()
    if media_type != FORM_TYPE:
        raise UnsupportedMediaType(f"the body must be a form ({FORM_TYPE}), not {media_type[:60] or 'untyped'}")

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        return await Request(request.scope, replay).form()
    except Exception:  # Starlette raises several kinds for a malformed body
        raise BadRequest(f"the body must be a form ({FORM_TYPE})") from None
