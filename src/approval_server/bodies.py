"""Request bodies read with a size limit, counted as they arrive: a chunked body has no Content-Length to check."""

from __future__ import annotations

from contextlib import aclosing

from starlette.datastructures import FormData
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message

from approval_server.errors import BadRequest, TooLarge


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
    """The form in the body (urlencoded or multipart). Raises `TooLarge`, or `BadRequest` for a malformed body."""
    body = await read_body(request, limit)

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        return await Request(request.scope, replay).form()
    except Exception:  # Starlette raises several kinds for a malformed body
        raise BadRequest("the body must be a form (application/x-www-form-urlencoded)") from None
