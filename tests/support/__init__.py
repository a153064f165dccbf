"""Helpers shared by the integration tests (in-process server, orgs and keys)."""
