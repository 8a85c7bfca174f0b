"""A small client of the running server's HTTP API, used by the CLI."""

from __future__ import annotations

from typing import Any

import httpx

from approval_server.errors import ApprovalServerError


class ServerUnreachable(ApprovalServerError):
    """The server is not running where the settings say, or answered with an error."""


class ApiClient:
    def __init__(self, base_url: str, token: str, timeout: float = 10.0) -> None:
        self._http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout, trust_env=False
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServerUnreachable(
                f"Cannot reach approval-server at {self._http.base_url} ({exc.__class__.__name__}). "
                "Is it running (approval-server serve), at this URL?"
            ) from None

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        if response.is_success:
            return response.json()
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise ServerUnreachable(f"The server answered {response.status_code}: {detail}")

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/healthz")
        return result

    def list_requests(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit} | ({"status": status} if status else {})
        result: list[dict[str, Any]] = self._call("GET", "/api/requests", params=params)["requests"]
        return result

    def get_request(self, request_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/requests/{request_id}")
        return result

    def decide(self, request_id: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/api/requests/{request_id}/decision", json=body)
        return result

    def grants(self, show_all: bool) -> list[dict[str, Any]]:
        params = {"all": "1"} if show_all else {}
        result: list[dict[str, Any]] = self._call("GET", "/api/grants", params=params)["grants"]
        return result

    def revoke_grant(self, grant_id: str, actor: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/api/grants/{grant_id}/revoke", json={"actor": actor})
        return result

    def hook(self, payload: Any, agent: str | None, kind: str, version: str | None = None) -> dict[str, Any]:
        headers = ({"X-Agent-Name": agent} if agent else {}) | ({"X-Agent-Version": version} if version else {})
        result: dict[str, Any] = self._call("POST", f"/api/hook/{kind}", json=payload, headers=headers)
        return result

    def accepts_token(self, for_hooks: bool) -> bool:
        """Whether the server takes this client's token for the API (or, `for_hooks`, for `/api/hook`: an empty
        body there is refused after the token check), without changing anything."""
        if for_hooks:
            response = self._request("POST", "/api/hook", content=b"")
        else:
            response = self._request("GET", "/api/requests", params={"limit": 1})
        return response.status_code != 401
