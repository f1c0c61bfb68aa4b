"""The seams of the HTTP layer: the fakes the API tests use offer the calls the real services do.

``create_app`` takes an :class:`AnswerEngine` and a :class:`ChatReplier`. The API tests run over
``tests/api/fakes.py``; these checks keep the fakes honest — same method names, and the same
parameters (names, kinds, defaults) as the Protocols and as the real engine and chat service —
so a change to the real signatures that the fakes do not follow fails here instead of leaving
the API tests exercising a contract the product no longer has.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from carqa.api.protocols import AnswerEngine, ChatReplier
from carqa.qa.chat import ChatService
from carqa.qa.engine import Engine

from tests.api.fakes import BrokenChat, FakeChat, FakeEngine


def _methods(protocol: type) -> list[str]:
    return [
        name
        for name, member in vars(protocol).items()
        if callable(member) and not name.startswith("_")
    ]


def _parameters(function: Any) -> list[tuple[str, Any, Any]]:
    """(name, kind, default) of each parameter after ``self``: what a caller relies on."""
    signature = inspect.signature(function)
    return [(p.name, p.kind, p.default) for p in list(signature.parameters.values())[1:]]


@pytest.mark.parametrize(
    ("protocol", "implementations"),
    [
        (AnswerEngine, [Engine, FakeEngine]),
        (ChatReplier, [ChatService, FakeChat, BrokenChat]),
    ],
)
def test_real_services_and_fakes_have_the_protocols_calls(
    protocol: type, implementations: list[type]
) -> None:
    names = _methods(protocol)
    assert names  # the Protocol lists its calls
    for implementation in implementations:
        for name in names:
            assert hasattr(implementation, name), f"{implementation.__name__} lacks {name}"
            assert _parameters(getattr(implementation, name)) == _parameters(
                getattr(protocol, name)
            ), f"{implementation.__name__}.{name} differs from {protocol.__name__}.{name}"


def test_fake_instances_pass_the_runtime_checks() -> None:
    engine = FakeEngine()
    assert isinstance(engine, AnswerEngine)
    assert isinstance(FakeChat(engine), ChatReplier)
    assert not isinstance(engine, ChatReplier)  # the check can fail: an engine cannot chat
    assert not isinstance(object(), AnswerEngine)
