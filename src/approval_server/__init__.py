"""approval-server: a human approves or denies, from their phone, each sensitive action an AI agent wants to take."""

from importlib.metadata import version

__version__ = version("approval-server")

# The names agents know the gate by: its MCP server and its permission tool, which Claude Code calls
# `mcp__approval-server__permissions__approve`. Here, not in `mcp_tool`, so that the commands an agent runs (hooks,
# `connect`) need not load the MCP server.
SERVER_NAME = "approval-server"
TOOL_NAME = "permissions__approve"
