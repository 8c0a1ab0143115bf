"""Attribute filters of search and file_search: comparison (eq ne gt gte lt lte in nin) and compound (and or).

A filter is checked once (`validate`, a 400 naming the bad part) and then evaluated per vector-store file
against its `attributes`. A file without the compared key never matches, whatever the operator.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from ..responses.schemas import bad_request

COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "gte": operator.ge, "lt": operator.lt,
    "lte": operator.le,
}
ATTRIBUTES_MAX, KEY_MAX, VALUE_MAX = 16, 64, 512


def validate(spec: Any, param: str = "filters") -> dict[str, Any]:
    if not isinstance(spec, dict) or "type" not in spec:
        raise bad_request(f"{param}: must be an object with a 'type'", param)
    kind = spec["type"]
    if kind in ("and", "or"):
        parts = spec.get("filters")
        if not isinstance(parts, list) or not parts:
            raise bad_request(f"{param}.filters: a compound filter needs a non-empty list of filters", param)
        return {"type": kind, "filters": [validate(p, f"{param}.filters[{n}]") for n, p in enumerate(parts)]}
    if kind not in COMPARISONS and kind not in ("in", "nin"):
        raise bad_request(f"{param}.type: {kind!r} is not one of eq, ne, gt, gte, lt, lte, in, nin, and, or", param)
    key, value = spec.get("key"), spec.get("value")
    if not isinstance(key, str) or not key:
        raise bad_request(f"{param}.key: a comparison filter needs a key", param)
    if (kind in ("in", "nin")) != isinstance(value, list):
        raise bad_request(f"{param}.value: '{kind}' needs {'a list' if kind in ('in', 'nin') else 'a scalar'}",
                          param)
    if not isinstance(value, (str, int, float, bool, list)):
        raise bad_request(f"{param}.value: must be a string, number, boolean or list", param)
    return {"type": kind, "key": key, "value": value}


def keys(spec: dict[str, Any]) -> set[str]:
    if spec["type"] in ("and", "or"):
        return set().union(*(keys(p) for p in spec["filters"]))
    return {spec["key"]}


def matches(spec: dict[str, Any], attributes: dict[str, Any]) -> bool:
    kind = spec["type"]
    if kind == "and":
        return all(matches(p, attributes) for p in spec["filters"])
    if kind == "or":
        return any(matches(p, attributes) for p in spec["filters"])
    if spec["key"] not in attributes:
        return False
    have, want = attributes[spec["key"]], spec["value"]
    if kind in ("in", "nin"):
        found = any(_same_kind(have, v) and have == v for v in want)
        return found if kind == "in" else not found
    if not _same_kind(have, want):
        return kind == "ne"
    return COMPARISONS[kind](have, want)


def _same_kind(a: Any, b: Any) -> bool:
    """Numbers compare with numbers, strings with strings, booleans only with booleans (True is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    numeric = (int, float)
    return (isinstance(a, numeric) and isinstance(b, numeric)) or (isinstance(a, str) and isinstance(b, str))


def check_attributes(attributes: Any, param: str = "attributes") -> dict[str, Any]:
    """≤ 16 keys of ≤ 64 characters; values strings of ≤ 512 characters, numbers or booleans."""
    if attributes is None:
        return {}
    if not isinstance(attributes, dict):
        raise bad_request(f"{param}: must be an object", param)
    if len(attributes) > ATTRIBUTES_MAX:
        raise bad_request(f"{param}: at most {ATTRIBUTES_MAX} keys are allowed, got {len(attributes)}", param)
    for key, value in attributes.items():
        if len(key) > KEY_MAX:
            raise bad_request(f"{param}: key {key[:70]!r} is longer than {KEY_MAX} characters", param)
        if not isinstance(value, (str, int, float, bool)) or (isinstance(value, str) and len(value) > VALUE_MAX):
            raise bad_request(f"{param}: the value of {key!r} must be a number, a boolean or a string of at most "
                              f"{VALUE_MAX} characters", f"{param}.{key}")
    return dict(attributes)
