"""Sigma rules (YAML, package data) over ztgw's ECS audit events; see docs/detection.md."""
