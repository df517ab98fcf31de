"""ztgw policy engine: attribute-based decisions with obligations (casbin at the core)."""
