"""approval-server: a human approves or denies, from their phone, each sensitive action an AI agent wants to take."""

from importlib.metadata import version

__version__ = version("approval-server")
