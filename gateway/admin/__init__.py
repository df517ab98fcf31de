"""The admin API under /admin/v1 (OpenAPI at /admin/v1/openapi.json)."""
