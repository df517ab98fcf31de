"""Classification proposals from personal-data detection (``ztgw scan pii`` over a sample, or
the gateway's PII sampler over live answers); the data owner confirms them.

A proposal never lowers a field: it raises the classification and the personal-information flag
to what the detected identifier suggests (GB/T 43697 guidance; PIPL art. 28 names identity
numbers and financial accounts as sensitive personal information).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ztgw.policies.domain import Classification

from ..catalogue import Dataset, PersonalInfo

PII_PROPOSALS: dict[str, tuple[Classification, PersonalInfo]] = {
    "cn_id_number": (Classification.CORE, PersonalInfo.SENSITIVE),
    "bank_card": (Classification.CORE, PersonalInfo.SENSITIVE),
    "cn_passport": (Classification.IMPORTANT, PersonalInfo.SENSITIVE),
    "cn_mobile": (Classification.IMPORTANT, PersonalInfo.PERSONAL),
    "cn_landline": (Classification.IMPORTANT, PersonalInfo.PERSONAL),
    "email": (Classification.IMPORTANT, PersonalInfo.PERSONAL),
    "cn_address": (Classification.IMPORTANT, PersonalInfo.PERSONAL),
    "cn_name": (Classification.IMPORTANT, PersonalInfo.PERSONAL),
    "cn_plate": (Classification.IMPORTANT, PersonalInfo.PERSONAL),
    "ipv4": (Classification.GENERAL, PersonalInfo.PERSONAL),
    "ipv6": (Classification.GENERAL, PersonalInfo.PERSONAL),
}
_FLAG_ORDER = (PersonalInfo.NONE, PersonalInfo.PERSONAL, PersonalInfo.SENSITIVE)


def propose(d: Dataset, findings: Iterable[Mapping[str, Any]], total_rows: int) -> list[dict[str, Any]]:
    """Proposals for fields where most scanned rows hold an identifier (``findings``: dicts with
    ``field``, ``type``, ``rows``)."""
    best: dict[str, tuple[Classification, PersonalInfo, str, int]] = {}
    for f in findings:
        name, kind, rows = str(f.get("field")), str(f.get("type")), int(f.get("rows") or 0)
        if name not in d.fields or kind not in PII_PROPOSALS or rows * 2 < max(1, total_rows):
            continue
        level, flag = PII_PROPOSALS[kind]
        cur = best.get(name)
        if cur is None or (level, _FLAG_ORDER.index(flag)) > (cur[0], _FLAG_ORDER.index(cur[1])):
            best[name] = (level, flag, kind, rows)
    out = []
    for name, (level, flag, kind, rows) in sorted(best.items()):
        cur_level, cur_flag = d.fields[name], d.pi.get(name, PersonalInfo.NONE)
        new_level = max(cur_level, level)
        new_flag = max(cur_flag, flag, key=_FLAG_ORDER.index)
        if (new_level, new_flag) != (cur_level, cur_flag):
            out.append({"field": name, "detector": kind, "rows": rows,
                        "current": {"classification": cur_level.label, "pi": cur_flag.value},
                        "proposed": {"classification": new_level.label, "pi": new_flag.value}})
    return out
