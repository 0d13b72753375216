"""Test-support helpers for opsgate: real loopback servers and certificates."""
