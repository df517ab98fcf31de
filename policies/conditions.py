"""Declarative rule conditions (``when:``), validated and compiled to closures once at load.

Every condition is a key with a literal value; there is no expression language and nothing is
evaluated as code (the pycasbin ``eval()`` pattern runs stored strings through an interpreter
on every request — see docs/policies.md).  All conditions of a rule must hold (AND); write two
rules for OR.  A missing attribute never satisfies a condition (fail closed).

=============================== ===========================================================
``clearance_at_least: 重要``      subject clearance ≥ level (一般/重要/核心, GB/T 43697)
``clearance_covers_resource: true`` subject clearance ≥ the dataset's classification
``classification_at_most: 重要``  the dataset is classified at most this level
``zones: [gov-intranet]``        the request came from one of these network zones
``networks: [10.0.0.0/8]``       the source address is inside one of these networks
``hours: "09:00-18:00"``         Beijing time window (may wrap midnight)
``weekdays: [mon, tue]``         Beijing weekday
``acr_in: [urn:…:mfa]``          authentication context class of the token
``max_risk: 40``                 current risk score ≤ n
``device_in: [managed]``         device posture reported for the request
``same_department: true``        subject department == the dataset owner's department
``owner_departments: [市公安局]``   the dataset owner is one of these
``subject_attributes: {k: [v]}``  subject attribute k is one of the values
``resource_attributes: {k: [v]}`` resource/record attribute k is one of the values
``record_is_subject: id_number`` the requested record id equals the subject's attribute
``granted: true``                the data owner granted the caller this dataset (issue 6)
``consented: true``              data subjects consented that the caller reads their records
=============================== ===========================================================

``granted`` and ``consented`` read attributes that only the enforcement point sets (the grant
index, ``ztgw.gateway.grants``): typed :class:`GrantScope` / :class:`ConsentScope` values under
:data:`GRANT_ATTRIBUTE` / :data:`CONSENT_ATTRIBUTE`.  A string from the directory under the same
name never satisfies them.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

from .domain import Classification, Environment, Resource, Subject
from .errors import BundleError

LOCAL_TZ = ZoneInfo("Asia/Shanghai")  # time windows in rules are Beijing time
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_LIST = 4096  # values in one condition list
Predicate = Callable[[Subject, Resource, Environment], bool]


GRANT_ATTRIBUTE = "ztgw.grant"
CONSENT_ATTRIBUTE = "ztgw.consent"


@dataclass(frozen=True, slots=True)
class GrantScope:
    """An active, approved grant of a dataset to the caller, as the enforcement point found it."""

    grant_id: str
    fields: tuple[str, ...]  # the granted fields (a projection)
    row_field: str | None = None  # row scope: only records whose field is one of row_values
    row_values: tuple[str, ...] = ()
    rows_per_day: int | None = None  # quota
    rows_per_request: int | None = None  # rate of records per response


@dataclass(frozen=True, slots=True)
class ConsentScope:
    """The data subjects who consented that the caller reads their own records of a dataset."""

    field: str  # the dataset's key field (e.g. id_number)
    values: tuple[str, ...]  # the consenting subjects' keys
    consent_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Condition:
    """One compiled condition: its key, a human description, and the predicate."""

    key: str
    describe: str
    test: Predicate


def nfkc(value: Any) -> str:
    """Attribute values compare after NFKC (full-width digits, compatibility forms)."""
    return unicodedata.normalize("NFKC", str(value))


def _strings(value: Any, where: str) -> frozenset[str]:
    if (not isinstance(value, list) or not value or len(value) > MAX_LIST
            or not all(isinstance(v, str | int) and not isinstance(v, bool) for v in value)):
        raise BundleError(f"{where} is a non-empty list of strings")
    return frozenset(nfkc(v) for v in value)


def _true(value: Any, where: str) -> None:
    if value is not True:
        raise BundleError(f"{where} takes only 'true'")


def _level(value: Any, where: str) -> Classification:
    try:
        return Classification.parse(value)
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{where}: {exc}") from exc


def _attr_sets(value: Any, where: str) -> dict[str, frozenset[str]]:
    if not isinstance(value, dict) or not value:
        raise BundleError(f"{where} is a mapping attribute -> list of values")
    return {str(k): _strings(v, f"{where}.{k}") for k, v in value.items()}


def _hours(value: Any, where: str) -> tuple[dtime, dtime]:
    start_s, sep, end_s = str(value).partition("-")
    try:
        if not sep:
            raise ValueError
        return dtime.fromisoformat(start_s.strip()), dtime.fromisoformat(end_s.strip())
    except ValueError as exc:
        raise BundleError(f"{where} is a window 'HH:MM-HH:MM' (Beijing time)") from exc


def _get(mapping: Mapping[str, Any], key: str) -> str | None:
    value = mapping.get(key)
    return None if value is None else nfkc(value)


def compile_condition(key: str, value: Any, where: str) -> Condition:
    """Validate one ``when`` entry and return its compiled predicate."""
    w = f"{where}.{key}"
    if key == "clearance_at_least":
        level = _level(value, w)
        return Condition(key, f"subject clearance ≥ {level.label}",
                         lambda s, r, e: s.clearance >= level)
    if key == "clearance_covers_resource":
        _true(value, w)
        return Condition(key, "subject clearance ≥ dataset classification",
                         lambda s, r, e: s.clearance >= r.classification)
    if key == "classification_at_most":
        level = _level(value, w)
        return Condition(key, f"dataset classification ≤ {level.label}",
                         lambda s, r, e: r.classification <= level)
    if key == "zones":
        zones = _strings(value, w)
        return Condition(key, f"network zone in {sorted(zones)}",
                         lambda s, r, e: e.zone is not None and nfkc(e.zone) in zones)
    if key == "networks":
        try:
            nets = tuple(ipaddress.ip_network(str(n), strict=False) for n in _strings(value, w))
        except ValueError as exc:
            raise BundleError(f"{w}: {exc}") from exc

        def in_networks(s: Subject, r: Resource, e: Environment) -> bool:
            if not e.source_ip:
                return False
            try:
                ip = ipaddress.ip_address(e.source_ip)
            except ValueError:
                return False
            return any(ip in n for n in nets)

        return Condition(key, f"source address in {[str(n) for n in nets]}", in_networks)
    if key == "hours":
        start, end = _hours(value, w)

        def in_window(s: Subject, r: Resource, e: Environment) -> bool:
            now = e.time.astimezone(LOCAL_TZ).time()
            return start <= now < end if start <= end else (now >= start or now < end)

        return Condition(key, f"Beijing time in {start:%H:%M}-{end:%H:%M}", in_window)
    if key == "weekdays":
        days = _strings(value, w)
        if days - set(WEEKDAYS):
            raise BundleError(f"{w}: weekdays are among {list(WEEKDAYS)}")
        numbers = frozenset(WEEKDAYS.index(d) for d in days)
        return Condition(key, f"Beijing weekday in {sorted(days, key=WEEKDAYS.index)}",
                         lambda s, r, e: e.time.astimezone(LOCAL_TZ).weekday() in numbers)
    if key == "acr_in":
        acrs = _strings(value, w)
        return Condition(key, f"authentication context in {sorted(acrs)}",
                         lambda s, r, e: e.acr is not None and nfkc(e.acr) in acrs)
    if key == "max_risk":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
            raise BundleError(f"{w} is an integer 0..100")
        return Condition(key, f"risk score ≤ {value}", lambda s, r, e: e.risk_score <= value)
    if key == "device_in":
        devices = _strings(value, w)
        return Condition(key, f"device posture in {sorted(devices)}",
                         lambda s, r, e: e.device is not None and nfkc(e.device) in devices)
    if key == "same_department":
        _true(value, w)
        return Condition(
            key, "subject department == dataset owner department",
            lambda s, r, e: s.department is not None and r.owner_department is not None
            and nfkc(s.department) == nfkc(r.owner_department),
        )
    if key == "owner_departments":
        owners = _strings(value, w)
        return Condition(key, f"dataset owner in {sorted(owners)}",
                         lambda s, r, e: r.owner_department is not None
                         and nfkc(r.owner_department) in owners)
    if key == "subject_attributes":
        wanted = _attr_sets(value, w)
        return Condition(key, f"subject attributes {_show(wanted)}",
                         lambda s, r, e: all(_get(s.attributes, k) in v for k, v in wanted.items()))
    if key == "resource_attributes":
        wanted = _attr_sets(value, w)
        return Condition(key, f"resource attributes {_show(wanted)}",
                         lambda s, r, e: all(_get(r.attributes, k) in v for k, v in wanted.items()))
    if key == "record_is_subject":
        if not isinstance(value, str) or not value:
            raise BundleError(f"{w} names a subject attribute")
        attr = value

        def own_record(s: Subject, r: Resource, e: Environment) -> bool:
            mine = _get(s.attributes, attr)
            return bool(mine) and r.record_id is not None and nfkc(r.record_id) == mine

        return Condition(key, f"record id == subject {attr}", own_record)
    if key == "granted":
        _true(value, w)
        return Condition(key, "the data owner granted the caller this dataset",
                         lambda s, r, e: isinstance(s.attributes.get(GRANT_ATTRIBUTE), GrantScope))
    if key == "consented":
        _true(value, w)
        return Condition(key, "data subjects consented to the caller",
                         lambda s, r, e: isinstance(s.attributes.get(CONSENT_ATTRIBUTE), ConsentScope)
                         and bool(s.attributes[CONSENT_ATTRIBUTE].values))
    raise BundleError(f"{where}: unknown condition {key!r}; known: {sorted(CONDITIONS)}")


def _show(wanted: Mapping[str, frozenset[str]]) -> str:
    return ", ".join(f"{k} in {sorted(v)}" for k, v in wanted.items())


CONDITIONS = frozenset({
    "clearance_at_least", "clearance_covers_resource", "classification_at_most", "zones",
    "networks", "hours", "weekdays", "acr_in", "max_risk", "device_in", "same_department",
    "owner_departments", "subject_attributes", "resource_attributes", "record_is_subject",
    "granted", "consented",
})


def compile_conditions(when: Mapping[str, Any], where: str) -> tuple[Condition, ...]:
    return tuple(compile_condition(k, v, where) for k, v in when.items())


def fuse(conditions: tuple[Condition, ...]) -> Predicate | None:
    """One predicate for the whole ``when`` (None when the rule is unconditional)."""
    if not conditions:
        return None
    tests = tuple(c.test for c in conditions)
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        a, b = tests
        return lambda s, r, e: a(s, r, e) and b(s, r, e)
    return lambda s, r, e: all(t(s, r, e) for t in tests)
