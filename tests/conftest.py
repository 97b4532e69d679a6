"""Shared pytest wiring: the real-peer fixtures (testsupport/peers) for every test module."""

pytest_plugins = ["testsupport.peers.fixtures"]
