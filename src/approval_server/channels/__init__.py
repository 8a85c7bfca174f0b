"""Channels reach humans. Each is one module with one small class sharing the `Channel` interface."""

from approval_server.channels.base import Channel, Delivery

__all__ = ["Channel", "Delivery"]
