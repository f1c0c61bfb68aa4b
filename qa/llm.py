"""Optional LLM synthesis: a LangChain chat model writes the answer from numbered evidence.

The extractive answer needs no model. When ``llm_provider`` is set (``openai`` for any
OpenAI-compatible server, or ``ollama``), the same evidence sentences are given to the model,
numbered ``[1]``, ``[2]``..., with the instruction to answer only from them and to cite every
sentence by number. The output is checked as it streams: a marker naming no evidence item is
removed before it reaches the user, and the answer is flagged. The provider packages are an
optional extra (``pip install -e ".[llm]"``), imported only when configured.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from index.errors import CarqaError
from index.settings import Settings
from qa.types import Citation

SYSTEM_PROMPT = (
    "You answer questions about CAR T cell therapy using ONLY the numbered evidence sentences "
    "from PubMed abstracts that you are given. Write a short answer (at most four sentences). "
    "End every sentence with the number(s) of the evidence it relies on in square brackets, "
    "like [1] or [2][3]. Never cite a number that is not in the evidence. If the evidence does "
    "not answer the question, say that the indexed literature does not answer it."
)
CONDENSE_PROMPT = (
    "Rewrite the user's last message as one standalone question about the literature, using "
    "the conversation for context. Reply with the question only."
)
FLAG_REMOVED = "llm_invalid_citations_removed"
FLAG_UNCITED = "llm_uncited"
_MARKER = re.compile(r"\[(\d+)\]")


class LLMUnavailable(CarqaError):
    """An LLM is configured but cannot be used (unknown provider, missing extra)."""


def chat_model_from_settings(settings: Settings) -> Any | None:
    """The configured LangChain chat model, or None when no provider is set."""
    provider = (settings.llm_provider or "").strip().lower()
    if not provider or provider in {"none", "off"}:
        return None
    if provider in {"openai", "openai-compatible"}:
        try:
            from langchain_openai import ChatOpenAI
        except ImportError as error:
            raise LLMUnavailable(
                "CARQA_LLM_PROVIDER=openai needs the langchain-openai package.",
                hint='Install the LLM extra: `pip install -e ".[llm]"`, or unset '
                "CARQA_LLM_PROVIDER for extractive answers.",
            ) from error
        return ChatOpenAI(
            model=settings.llm_model or "gpt-4o-mini",
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key or "not-needed",
            temperature=0,
        )
    if provider == "ollama":
        try:
            from langchain_ollama import ChatOllama
        except ImportError as error:
            raise LLMUnavailable(
                "CARQA_LLM_PROVIDER=ollama needs the langchain-ollama package.",
                hint='Install the LLM extra: `pip install -e ".[llm]"`, or unset '
                "CARQA_LLM_PROVIDER for extractive answers.",
            ) from error
        kwargs: dict[str, Any] = {"model": settings.llm_model or "llama3.1", "temperature": 0}
        if settings.llm_base_url:
            kwargs["base_url"] = settings.llm_base_url
        return ChatOllama(**kwargs)
    raise LLMUnavailable(
        f"Unknown LLM provider {settings.llm_provider!r}.",
        hint="Set CARQA_LLM_PROVIDER to 'openai' (any OpenAI-compatible server) or 'ollama', "
        "or leave it empty for extractive answers.",
    )


def evidence_block(evidence: Sequence[Citation]) -> str:
    lines = []
    for citation in evidence:
        where = f"PMID {citation.pmid}" + (f", {citation.year}" if citation.year else "")
        lines.append(f"[{citation.n}] ({where}) {citation.text}")
    return "\n".join(lines)


def answer_messages(question: str, evidence: Sequence[Citation]) -> list[Any]:
    from langchain_core.messages import HumanMessage, SystemMessage

    return [
        SystemMessage(content=SYSTEM_PROMPT),
        HumanMessage(content=f"Evidence:\n{evidence_block(evidence)}\n\nQuestion: {question}"),
    ]


@dataclass
class CitationFilter:
    """Checks ``[n]`` markers in streamed text: valid ones pass, others are dropped.

    Text is held back only while it could still be the start of a marker (``[`` plus digits),
    so tokens flow through with at most a few characters of delay.
    """

    valid: set[int]
    removed: list[int] = field(default_factory=list)
    cited: set[int] = field(default_factory=set)
    _pending: str = ""

    def feed(self, text: str) -> str:
        self._pending += text
        out: list[str] = []
        while self._pending:
            start = self._pending.find("[")
            if start < 0:
                out.append(self._pending)
                self._pending = ""
                break
            out.append(self._pending[:start])
            rest = self._pending[start:]
            match = re.match(r"\[(\d*)(\]?)", rest)
            assert match is not None  # rest starts with "["
            digits, closed = match.group(1), match.group(2)
            if not closed and len(match.group(0)) == len(rest):
                self._pending = rest  # maybe a marker: wait for more text
                break
            if closed and digits:
                number = int(digits)
                if number in self.valid:
                    self.cited.add(number)
                    out.append(match.group(0))
                else:
                    self.removed.append(number)
                self._pending = rest[len(match.group(0)) :]
            else:
                out.append("[")
                self._pending = rest[1:]
        return "".join(out)

    def flush(self) -> str:
        pending, self._pending = self._pending, ""
        return pending


def check_citations(text: str, valid: Iterable[int]) -> tuple[str, list[int]]:
    """``text`` without markers that name no evidence item, and the numbers removed."""
    checker = CitationFilter(valid=set(valid))
    cleaned = checker.feed(text) + checker.flush()
    return tidy_spacing(cleaned), checker.removed


def tidy_spacing(text: str) -> str:
    """Spaces left behind by removed markers ("word  [1]" / "word ."), collapsed."""
    text = re.sub(r"[ \t]+([.,;:!?])", r"\1", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


class LLMWriter:
    """Writes answers (and condenses chat follow-ups) with a LangChain chat model."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def stream(
        self, question: str, evidence: Sequence[Citation], checker: CitationFilter
    ) -> Iterator[str]:
        """Answer text piece by piece, passed through ``checker`` (the caller's, so concurrent
        answers never share one; read its ``removed`` and ``cited`` afterwards)."""
        try:
            for chunk in self.model.stream(answer_messages(question, evidence)):
                piece = checker.feed(_text_of(chunk))
                if piece:
                    yield piece
        except Exception as error:
            raise _failed(self.model, error) from error
        tail = checker.flush()
        if tail:
            yield tail

    def condense(self, history: Sequence[tuple[str, str]], message: str) -> str:
        """A standalone question from the conversation (``(question, answer)`` pairs)."""
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        messages: list[Any] = [SystemMessage(content=CONDENSE_PROMPT)]
        for question, answer in history:
            messages.append(HumanMessage(content=question))
            messages.append(AIMessage(content=answer))
        messages.append(HumanMessage(content=message))
        try:
            text = _text_of(self.model.invoke(messages)).strip()
        except Exception as error:
            raise _failed(self.model, error) from error
        return text.splitlines()[0].strip() if text else message


def _failed(model: Any, error: Exception) -> LLMUnavailable:
    """A provider failure (unreachable server, bad key, unknown model) as a clear error."""
    name = getattr(model, "model_name", None) or getattr(model, "model", None) or "the model"
    return LLMUnavailable(
        f"The LLM ({type(model).__name__}, {name}) failed: {type(error).__name__}: {error}",
        hint="Check CARQA_LLM_BASE_URL, CARQA_LLM_API_KEY and CARQA_LLM_MODEL, or unset "
        "CARQA_LLM_PROVIDER for extractive answers.",
    )


def _text_of(message: Any) -> str:
    content = getattr(message, "content", message)
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(
            part.get("text", "") if isinstance(part, dict) else str(part) for part in content
        )
    return str(content)
