"""The data plane: authenticate, decide, forward, enforce obligations, audit — every request."""
