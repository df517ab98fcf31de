"""ztgw gateway: the composition root (settings, app factory, CLI root, HTTP)."""
