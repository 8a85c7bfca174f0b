"""End-to-end tests that drive the real `claude` CLI (see claude_cli.py, fake_anthropic.py)."""
