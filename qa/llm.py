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

from carqa.qa.blank import visible_text
from carqa.qa.types import Citation, Segment

from carqa.errors import CarqaError
from carqa.settings import Settings

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
FLAG_EMPTY = "llm_empty"
EMPTY_MESSAGE = (
    "The language model wrote no answer from this evidence; the evidence sentences are listed."
)


LLM_MAX_RETRIES = 1
"""Retries of a failed LLM request (OpenAI client; its default is 2, each with the full timeout).
The ollama client does not retry."""


class LLMUnavailable(CarqaError):
    """An LLM is configured but cannot be used (unknown provider, missing extra)."""


def chat_model_from_settings(settings: Settings) -> Any | None:
    """The configured LangChain chat model, or None when no provider is set."""
    provider = (settings.llm_provider or "").strip().lower()
    if not provider or provider in {"none", "off"}:
        return None
    _check_base_url(settings.llm_base_url)
    if provider in {"openai", "openai-compatible"}:
        if not settings.llm_base_url and not settings.llm_api_key:
            raise LLMUnavailable(
                "CARQA_LLM_PROVIDER=openai without CARQA_LLM_BASE_URL uses api.openai.com, "
                "which needs CARQA_LLM_API_KEY.",
                hint="Set CARQA_LLM_API_KEY, or CARQA_LLM_BASE_URL to your OpenAI-compatible "
                "server (one that needs no key).",
            )
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
            timeout=settings.llm_timeout_seconds,
            max_retries=LLM_MAX_RETRIES,
            # Sent as "max_completion_tokens", OpenAI's current name for it.
            max_tokens=settings.llm_max_tokens,
            extra_body=_legacy_max_tokens(settings),
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
        kwargs: dict[str, Any] = {
            "model": settings.llm_model or "llama3.1",
            "temperature": 0,
            "num_predict": settings.llm_max_tokens,
            # The ollama client's httpx default is no timeout at all; it does not retry.
            "client_kwargs": {"timeout": settings.llm_timeout_seconds},
        }
        if settings.llm_base_url:
            kwargs["base_url"] = settings.llm_base_url
        return ChatOllama(**kwargs)
    raise LLMUnavailable(
        f"Unknown LLM provider {settings.llm_provider!r}.",
        hint="Set CARQA_LLM_PROVIDER to 'openai' (any OpenAI-compatible server) or 'ollama', "
        "or leave it empty for extractive answers.",
    )


def _legacy_max_tokens(settings: Settings) -> dict[str, Any] | None:
    """The reply cap under its older name, ``max_tokens``, for a server of one's own:
    langchain-openai (>= 0.3) sends only ``max_completion_tokens``, which an OpenAI-compatible
    server that knows only ``max_tokens`` (older or simpler ones) ignores: the cap would silently
    not apply. api.openai.com gets the new name alone (its reasoning models refuse the old)."""
    from urllib.parse import urlsplit

    url = settings.llm_base_url
    if not url or (urlsplit(url.strip()).hostname or "").lower() == "api.openai.com":
        return None
    return {"max_tokens": settings.llm_max_tokens}


def _check_base_url(url: str | None) -> None:
    """A server URL the provider can use: ``http(s)://host...``. Anything else failed only at
    the first question, with the provider's error."""
    if not url:
        return
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise LLMUnavailable(
            f"CARQA_LLM_BASE_URL {url!r} is not an http(s) URL.",
            hint="Give the server's URL with its scheme, e.g. http://localhost:11434 (Ollama) "
            "or http://localhost:8000/v1 (an OpenAI-compatible server).",
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


_OPEN = "\\[\uff3b\u3010"  # "[", fullwidth "［", lenticular "【" (in a character class)
_CLOSE = "\\]\uff3d\u3011"
_SEPARATORS = ",;\\-\u2013\uff0c\u3001"  # also fullwidth "，" and ideographic "、"
_SEPARATOR = rf"\s*[{_SEPARATORS}]\s*"
_OPENER = re.compile(f"[{_OPEN}]")
_CITATION = re.compile(rf"[{_OPEN}]\s*\^?\d+(?:{_SEPARATOR}\d+)*\s*[{_CLOSE}]")
"""A citation marker: "[1]", or a list or range the model wrote despite the prompt ("[1, 2]",
"[1; 3]", "[2-4]"), spaces inside the brackets or not ("[ 3 ]"), a Markdown footnote ("[^3]"),
in square, fullwidth or lenticular brackets ("［1］", "【1】": models trained on CJK text write
those). Any of these naming missing evidence used to reach the reader unchecked."""
_CITATION_START = re.compile(
    rf"[{_OPEN}]\s*\^?(?:\d+(?:{_SEPARATOR}\d+)*(?:\s*[{_SEPARATORS}]?\s*))?"
)
"""What a marker can begin with: text matching this, unclosed, may still become one."""
_CITED = re.compile(r"(\d+)(?:\s*[-\u2013]\s*(\d+))?")
MAX_MARKER_CHARS = 64
"""Text held back waiting for a marker's "]" at most (beyond it, it is not a marker)."""
MAX_RANGE = 50
"""A range spanning more numbers than this is not expanded: its ends are checked as given."""


def _cited_numbers(marker: str) -> list[int]:
    """The evidence numbers a marker names, in order, ranges expanded ("[1, 3-4]" → 1, 3, 4)."""
    numbers: list[int] = []
    for match in _CITED.finditer(marker):
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else first
        if first <= last <= first + MAX_RANGE:
            numbers.extend(range(first, last + 1))
        else:
            numbers.extend((first, last))
    return list(dict.fromkeys(numbers))


@dataclass
class CitationFilter:
    """Checks ``[n]`` markers in streamed text: valid ones pass, others are dropped.

    A list or range ("[1, 42]", "[1-3]"), like a marker in other brackets ("【2】", "[ 2 ]"), is
    checked number by number and comes out as ``[1][2]...``: the one form the widget links and
    the answers use, and no number naming missing evidence slips through inside a list. Text is
    held back only while it could still be the start of a marker, so tokens flow through with at
    most a few characters of delay.
    """

    valid: set[int]
    removed: list[int] = field(default_factory=list)
    cited: set[int] = field(default_factory=set)
    _pending: str = ""

    def feed(self, text: str) -> str:
        self._pending += text
        out: list[str] = []
        while self._pending:
            opener = _OPENER.search(self._pending)
            if opener is None:
                out.append(self._pending)
                self._pending = ""
                break
            start = opener.start()
            out.append(self._pending[:start])
            rest = self._pending[start:]
            marker = _CITATION.match(rest)
            if marker:
                out.append(self._check(marker.group(0)))
                self._pending = rest[marker.end() :]
            elif len(rest) <= MAX_MARKER_CHARS and _CITATION_START.fullmatch(rest):
                self._pending = rest  # maybe a marker: wait for more text
                break
            else:
                out.append(rest[0])
                self._pending = rest[1:]
        return "".join(out)

    def _check(self, marker: str) -> str:
        """The marker's valid numbers as ``[n]`` markers; the others recorded as removed."""
        kept = []
        for number in _cited_numbers(marker):
            if number in self.valid:
                self.cited.add(number)
                kept.append(f"[{number}]")
            else:
                self.removed.append(number)
        return "".join(kept)

    def flush(self) -> str:
        pending, self._pending = self._pending, ""
        return pending


def check_citations(text: str, valid: Iterable[int]) -> tuple[str, list[int]]:
    """``text`` without markers that name no evidence item, and the numbers removed."""
    checker = CitationFilter(valid=set(valid))
    cleaned = checker.feed(text) + checker.flush()
    return tidy_spacing(cleaned), checker.removed


_MARKER = re.compile(r"\[\d+\]")
_LEADING_MARKERS = re.compile(r"^(?:\s*\[\d+\])+")


_MARKER_RUN = re.compile(r"(?:\[\d+\])+")


def marker_segments(text: str) -> list[Segment]:
    """A checked answer (:class:`CitationFilter`'s output, where every ``[n]`` is a marker
    naming real evidence and no other marker form is left) as segments: the markers parsed
    once, here, so no client has to find them in the text."""
    segments: list[Segment] = []
    start = 0
    for run in _MARKER_RUN.finditer(text):
        numbers = [int(n) for n in re.findall(r"\d+", run.group(0))]
        segments.append(Segment(text[start : run.start()], numbers))
        start = run.end()
    if start < len(text):
        segments.append(Segment(text[start:]))
    return segments


def uncited_sentences(text: str, *, cut: bool = False) -> tuple[int, int]:
    """(sentences citing no evidence, sentences) in a checked answer. A marker the model put
    after the full stop ("... loss. [1] It ...") belongs to the sentence before it.

    ``cut``: the text was cut short (``llm_truncated``), so its last sentence is unfinished
    and its citation may have been still to come: it is not counted."""
    from carqa.index.search.sentences import split_sentences

    cited: list[bool] = []
    for sentence in (s.text for s in split_sentences(text)):
        lead = _LEADING_MARKERS.match(sentence)
        if lead and cited:
            cited[-1] = True
            sentence = sentence[lead.end() :]
        if _LETTER.search(sentence):
            cited.append(bool(_MARKER.search(sentence)))
    if cut and cited:
        cited.pop()
    return cited.count(False), len(cited)


def uncited_message(uncited: int, sentences: int) -> str:
    if uncited == sentences:
        return "The answer cites none of the evidence: check it against the sources."
    verb, them = ("cites", "it") if uncited == 1 else ("cite", "them")
    return (
        f"{uncited} of the answer's {sentences} sentences {verb} no evidence: check {them} "
        "against the sources."
    )


def tidy_spacing(text: str) -> str:
    """Spaces left behind by removed markers ("word  [1]" / "word ."), collapsed."""
    return _tidy_runs(text).strip()


def _tidy_runs(text: str) -> str:
    text = re.sub(r"[ \t]+([.,;:!?])", r"\1", text)
    return re.sub(r"[ \t]{2,}", " ", text)


@dataclass
class SpacingTidier:
    """:func:`tidy_spacing` as text streams, so the pieces a client shows add up to the final
    answer: ``"".join(feed(p) for p in pieces) + flush() == tidy_spacing("".join(pieces))``.

    Whitespace is held back until the next visible character shows whether it goes (before
    punctuation, at either end) or shrinks to one space."""

    _held: str = ""
    _started: bool = False

    def feed(self, text: str) -> str:
        text = self._held + text
        body = text.rstrip()
        self._held = text[len(body) :]
        if not self._started:
            body = body.lstrip()
            if not body:
                return ""
            self._started = True
        return _tidy_runs(body)

    def flush(self) -> str:
        self._held = ""
        return ""


class LLMWriter:
    """Writes answers (and condenses chat follow-ups) with a LangChain chat model."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def stream(
        self, question: str, evidence: Sequence[Citation], checker: CitationFilter
    ) -> Iterator[str]:
        """Answer text piece by piece, passed through ``checker`` (the caller's, so concurrent
        answers never share one; read its ``removed`` and ``cited`` afterwards), then spaced
        as :func:`tidy_spacing` spaces it: the pieces add up to the final answer."""
        tidier = SpacingTidier()
        try:
            for chunk in self.model.stream(answer_messages(question, evidence)):
                piece = tidier.feed(checker.feed(_text_of(chunk)))
                if piece:
                    yield piece
        except Exception as error:
            raise _failed(self.model, error) from error
        tail = tidier.feed(checker.flush()) + tidier.flush()
        if tail:
            yield tail

    def condense(self, history: Sequence[tuple[str, str]], message: str) -> str:
        """A standalone question from the conversation (``(question, answer)`` pairs), or ""
        when the model wrote none (see :func:`standalone_line`): the caller falls back."""
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        messages: list[Any] = [SystemMessage(content=CONDENSE_PROMPT)]
        for question, answer in history:
            messages.append(HumanMessage(content=question))
            messages.append(AIMessage(content=answer))
        messages.append(HumanMessage(content=message))
        try:
            text = _text_of(self.model.invoke(messages))
        except Exception as error:
            raise _failed(self.model, error) from error
        return standalone_line(text)


_LABEL = re.compile(r"^(?:(?:standalone|rewritten)\s+)?(?:question|query)\s*:\s*", re.IGNORECASE)
_QUOTES = "\"'\u201c\u201d\u2018\u2019`"
_LETTER = re.compile(r"[^\W\d_]")


def standalone_line(text: str) -> str:
    """The question in a condensation reply: its first line with a letter in it, without a
    "Standalone question:" label or quotes around it, as it reads
    (:func:`carqa.qa.blank.visible_text`).
    "" when there is none (an empty reply, invisible characters, a stray "[1]")."""
    for line in text.splitlines():
        line = _LABEL.sub("", visible_text(line))
        if len(line) > 1 and line[0] in _QUOTES and line[-1] in _QUOTES:
            line = line[1:-1].strip()
        if _LETTER.search(line):
            return line
    return ""


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
