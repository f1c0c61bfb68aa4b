"""What both schemathesis suites (``test_fuzz.py``, ``test_fuzz_live.py``) do to a generated case
before sending it."""

from __future__ import annotations

from typing import Any


def years_in_order(body: Any) -> None:
    """Put generated years in order: ``year_from`` after ``year_to`` is a 422 by a rule JSON
    Schema cannot state (tests/api/test_errors.py checks it), so schemathesis would count it
    as a schema-valid request refused. (Its boundary-value phase bypasses ``map_body`` hooks,
    so this runs on the case itself.)"""
    filters = body.get("filters") if isinstance(body, dict) else None
    if isinstance(filters, dict):
        start, end = filters.get("year_from"), filters.get("year_to")
        if _year(start) and _year(end) and start > end:
            filters["year_from"], filters["year_to"] = end, start


def _year(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)  # 1978.0 is an integer
