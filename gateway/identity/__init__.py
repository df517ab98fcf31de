"""Unified identity: the OpenID Connect provider, its keys, the directory and token checks."""
