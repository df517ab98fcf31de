"""The route table: longest-prefix match from a canonical path to a catalogued dataset."""

from __future__ import annotations

from dataclasses import dataclass

from ..catalogue import Dataset


@dataclass(frozen=True, slots=True)
class RouteMatch:
    dataset: Dataset
    record_id: str | None  # the path segment after the prefix, if any ("/persons/{id}")
    upstream_path: str


class RouteTable:
    def __init__(self, datasets: list[Dataset]) -> None:
        enabled = [d for d in datasets if d.enabled]
        # longest prefix first, so /api/a/b wins over /api/a
        self._routes = sorted(enabled, key=lambda d: len(d.route_prefix), reverse=True)
        self.datasets = tuple(self._routes)
        self.prefixes = tuple(d.route_prefix for d in self._routes)
        self.raw_prefixes = tuple(p.encode() for p in self.prefixes)  # for the raw-path dispatch

    def match(self, path: str) -> RouteMatch | None:
        for d in self._routes:
            p = d.route_prefix
            if path == p:
                return RouteMatch(d, None, path)
            if path.startswith(p) and path[len(p)] == "/":
                rest = path[len(p) + 1:]
                if "/" in rest:
                    return None  # deeper paths are not part of any catalogued API
                return RouteMatch(d, rest, path)
        return None
