"""Tests of the identity provider (unit) and helpers shared with tests/e2e/test_oidc_*.py."""
