"""Deployment: the wire protocol, runtime, policy server and robot adapters."""
