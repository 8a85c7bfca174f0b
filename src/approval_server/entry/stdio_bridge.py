"""`approval-server stdio`: an MCP server on stdin/stdout that forwards every call to the running server.

For clients that only spawn MCP servers (stdio). The decisions still happen in the one running server, so
answers from every channel reach the waiting call. If that server is down, the bridge serves no tools and
Claude Code refuses to start (`… not found`): it fails closed.
"""

from __future__ import annotations

from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from fastmcp.server import create_proxy

from approval_server import SERVER_NAME
from approval_server.entry.client_config import ClientSettings
from approval_server.entry.security import load_tokens


def run_stdio_bridge(settings: ClientSettings) -> None:
    tokens, _ = load_tokens(settings)
    transport = StreamableHttpTransport(f"{settings.url}/mcp", headers={"Authorization": f"Bearer {tokens.mcp}"})
    proxy = create_proxy(Client(transport), name=SERVER_NAME)
    proxy.run(transport="stdio", show_banner=False, log_level="warning")
