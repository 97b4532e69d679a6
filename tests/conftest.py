"""Shared pytest wiring: the real-peer fixtures (tests/peers) for every test module."""

pytest_plugins = ["tests.peers.fixtures"]
