"""The core: the broker, which records each request, asks the policy, sends it to the channels, waits for the first
valid answer and closes it; and what it builds on (sends, hand-overs between replicas, closings not yet recorded,
live events, leases)."""
