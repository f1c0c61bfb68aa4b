"""Shared by the API's error tests: the JSON content type, and what every error response is."""

from __future__ import annotations

from typing import Any

JSON = {"content-type": "application/json"}


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """``response`` is a JSON error ``{"error": {"code", "message"}}`` with ``status`` (and
    ``code``, when given); its error object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    return error
