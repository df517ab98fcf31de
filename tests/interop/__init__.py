"""Interoperability with third-party OIDC libraries (npm openid-client, oidc-provider)."""
