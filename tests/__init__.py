"""Test suite (a package so that ``tests.support`` imports the same way everywhere)."""
