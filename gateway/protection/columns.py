"""Column helpers for batch work over lists of records, with the per-value loop in C.

``column(rows, key)`` gives the records that hold ``key`` and their values; ``store(rows,
key, values)`` writes values back. Both run through ``map`` (no Python bytecode per record),
which is most of what batch masking and watermarking of whole bodies cost.
"""

from __future__ import annotations

from collections import deque
from itertools import repeat
from operator import itemgetter, setitem
from typing import Any

__all__ = ["column", "store"]


class _Missing:
    __slots__ = ()


_MISSING = _Missing()


def column(rows: list[dict[str, Any]], key: str) -> tuple[list[dict[str, Any]], list[Any], set[type]]:
    """(the rows that hold ``key``, their values, the set of the values' types)."""
    try:  # every row holds the key: the common case, and the fastest read
        values = list(map(itemgetter(key), rows))
    except KeyError:
        values = [r.get(key, _MISSING) for r in rows]
    else:
        return rows, values, set(map(type, values))
    kinds = set(map(type, values))
    if _Missing not in kinds:
        return rows, values, kinds
    have = [r for r, v in zip(rows, values, strict=True) if v is not _MISSING]
    values = [v for v in values if v is not _MISSING]
    kinds.discard(_Missing)
    return have, values, kinds


def store(rows: list[dict[str, Any]], key: str, values: list[Any]) -> None:
    """``rows[i][key] = values[i]`` for every i."""
    if len(rows) != len(values):
        raise ValueError("one value per row")
    deque(map(setitem, rows, repeat(key), values), maxlen=0)
