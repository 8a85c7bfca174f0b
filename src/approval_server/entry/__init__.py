"""The entry points: the ASGI app and its routes (MCP, the HTTP API and hooks, the dashboard), the server that runs
it, and the command line. They call the broker; nothing below imports them."""
