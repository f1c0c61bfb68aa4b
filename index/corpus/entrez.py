"""A small NCBI E-utilities client: Bio.Entrez parsing, our own transport, cache and manners.

Why not call ``Bio.Entrez.efetch`` & co. directly: those functions send requests through
module-global state (``Entrez.email``, ``Entrez.api_key``, a process-wide rate limiter) and
``urllib.request.urlopen`` with no timeout and fixed 15 s retries, with no seam for tests or a
disk cache. So this module builds the (simple, documented) E-utilities requests itself and
hands them to an injectable **transport** — a callable ``(url, params, post) -> bytes`` — while
every response is parsed by Bio.Entrez (``Entrez.read``/``Entrez.parse``, through
:mod:`carqa.index.corpus.pubmed_xml`). Tests replay XML through a fake transport; production uses
:func:`~carqa.index.corpus.entrez_transport.urllib_transport`. The transport, the response cache
and the rate limiter live in :mod:`carqa.index.corpus.entrez_transport`; the values elink and
ECitMatch answers are read into, in :mod:`carqa.index.corpus.entrez_links`. This module is the
client: which requests to send, retries, and the messages a user sees when PubMed fails.

Around the transport the client adds what NCBI asks of clients and what resuming needs:

* ``tool`` and ``email`` (and ``api_key`` when given) on every request;
* at most 3 requests/s without an API key, 10/s with one;
* retries with exponential backoff on HTTP 429/5xx, timeouts and connection errors
  (``Retry-After`` honoured up to ``max_backoff``; a longer one stops the run with a message);
  other HTTP errors fail at once;
* every successful raw response cached on disk, keyed by the request (credentials excluded),
  so a re-run or an interrupted run resumes without refetching; ``stats`` counts cached vs
  fetched requests. Inside :meth:`EntrezClient.fresh` cached answers are not used (but new
  ones still are stored): ``carqa build --update`` asks PubMed again what links to the seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlencode

from carqa.index.corpus.entrez_links import (
    CITED_IN,
    SIMILAR,
    CitationQuery,
    Link,
    ecitmatch_answers,
    link_sets,
    refs_link_sets,
)
from carqa.index.corpus.entrez_transport import (
    Params,
    RateLimiter,
    ResponseCache,
    Transport,
    TransportError,
    ncbi_reason,
    request_key,
    urllib_transport,
)
from carqa.index.corpus.models import Paper
from carqa.index.corpus.pubmed_xml import MalformedXML, parse_bytes, read_entrez

from carqa.errors import SourceError

EUTILS_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"
EFETCH_BATCH = 200
"""NCBI: use POST and at most ~200 ids a request for efetch."""
ECITMATCH_BATCH = 20
"""ECitMatch is GET-only: keep each request's URL short."""
POST_THRESHOLD_CHARS = 1000
"""Like Bio.Entrez: switch to POST when the encoded parameters get longer than this."""
OFFLINE_HINT = (
    "Build without PubMed: `carqa build --from FILE` (PubMed/MEDLINE XML or JSONL) or "
    "`carqa snapshot import FILE`."
)

T = TypeVar("T")


@dataclass
class EntrezStats:
    """What the client did: requests answered from the cache, sent over the network, retried."""

    cached: int = 0
    fetched: int = 0
    retries: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"cached": self.cached, "fetched": self.fetched, "retries": self.retries}


@dataclass
class EntrezClient:
    """E-utilities for PubMed with rate limiting, retries and a response cache.

    ``transport``, ``sleep`` and ``clock`` are injectable so tests run offline and instantly.
    ``cache_dir`` None disables caching.
    """

    email: str | None = None
    api_key: str | None = field(default=None, repr=False)  # secret: kept out of reprs
    tool: str = "carqa"
    cache_dir: Path | None = None
    transport: Transport = urllib_transport
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    max_tries: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    batch_size: int = EFETCH_BATCH
    stats: EntrezStats = field(default_factory=EntrezStats)

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= EFETCH_BATCH:
            raise ValueError(f"batch_size must be 1..{EFETCH_BATCH}")
        self._cache = ResponseCache(self.cache_dir) if self.cache_dir is not None else None
        self._limiter = RateLimiter(
            10.0 if self.api_key else 3.0, clock=self.clock, sleep=self.sleep
        )
        self._fresh = False

    @contextmanager
    def fresh(self) -> Iterator[None]:
        """Within the block, ask PubMed rather than the cache (answers are still cached):
        what links to a paper changes as new papers appear."""
        previous, self._fresh = self._fresh, True
        try:
            yield
        finally:
            self._fresh = previous

    # -- E-utilities ---------------------------------------------------------------------

    def search_doi(self, doi: str) -> list[str]:
        """PMIDs whose record carries ``doi`` (esearch ``"<doi>"[doi]``)."""
        term = f'"{doi.strip()}"[doi]'
        # An empty answer is not cached: the record may simply not be indexed yet.
        record = self._call(
            "esearch.fcgi",
            [("db", "pubmed"), ("term", term), ("retmax", "20")],
            read_entrez,
            keep=lambda result: bool(result.get("IdList")),
        )
        return [str(pmid) for pmid in record.get("IdList", [])]

    def fetch(
        self, pmids: Sequence[str], *, on_batch: Callable[[int], None] | None = None
    ) -> list[Paper]:
        """PubMed records for ``pmids`` (efetch XML), in batches of at most ``batch_size``.

        Ids PubMed does not return (withdrawn, wrong) are simply absent from the result.
        ``on_batch(n)`` is called after each batch with the number of ids it asked for.
        """
        papers: list[Paper] = []
        unique = list(dict.fromkeys(pmids))
        for start in range(0, len(unique), self.batch_size):
            batch = unique[start : start + self.batch_size]
            params = [("db", "pubmed"), ("retmode", "xml"), ("id", ",".join(batch))]
            papers.extend(
                self._call("efetch.fcgi", params, lambda data: parse_bytes(data, origin="efetch"))
            )
            if on_batch is not None:
                on_batch(len(batch))
        return papers

    def cited_by(self, pmids: Sequence[str]) -> dict[str, list[str]]:
        """For each PMID, the PMIDs its PubMed record links as references
        (elink ``pubmed_pubmed_refs``). One ``id=`` parameter per PMID: a comma-joined list
        would merge every input's links into one set."""
        if not pmids:
            return {}
        params: Params = [("dbfrom", "pubmed"), ("db", "pubmed")]
        params += [("linkname", "pubmed_pubmed_refs")]
        params += [("id", str(pmid)) for pmid in pmids]
        record = self._call("elink.fcgi", params, read_entrez)
        return refs_link_sets(record)

    def links(self, pmid: str, linkname: str, *, scores: bool = False) -> list[Link]:
        """The PMIDs PubMed links to ``pmid`` under ``linkname`` (elink), in PubMed's order;
        ``scores`` asks for each link's relatedness score (``cmd=neighbor_score``, only
        meaningful for ``pubmed_pubmed``). ``pmid`` itself is left out (similar articles
        list the paper first)."""
        params: Params = [("dbfrom", "pubmed"), ("db", "pubmed"), ("linkname", linkname)]
        if scores:
            params.append(("cmd", "neighbor_score"))
        params.append(("id", str(pmid)))
        record = self._call("elink.fcgi", params, read_entrez)
        found = link_sets(record, linkname).get(str(pmid), [])
        return [link for link in found if link.pmid != str(pmid)]

    def citing(self, pmid: str) -> list[str]:
        """PMIDs of the papers that cite ``pmid`` (PubMed's "Cited by":
        elink ``pubmed_pubmed_citedin``)."""
        return [link.pmid for link in self.links(pmid, CITED_IN)]

    def similar(self, pmid: str) -> list[Link]:
        """``pmid``'s similar articles (elink ``pubmed_pubmed``, ``cmd=neighbor_score``), the
        highest score first; links without a score keep PubMed's order, which is by score."""
        found = self.links(pmid, SIMILAR, scores=True)
        order = {link.pmid: i for i, link in enumerate(found)}
        return sorted(
            found,
            key=lambda link: (-(link.score if link.score is not None else 0), order[link.pmid]),
        )

    def citation_match(self, queries: Sequence[CitationQuery]) -> dict[str, str]:
        """ECitMatch: ``{query key: pmid}`` for the citations PubMed matched uniquely."""
        matches: dict[str, str] = {}
        for start in range(0, len(queries), ECITMATCH_BATCH):
            batch = queries[start : start + ECITMATCH_BATCH]
            keys = {query.key for query in batch}
            params = [("db", "pubmed"), ("retmode", "xml")]
            params.append(("bdata", "\r".join(query.bdata() for query in batch)))
            # ECitMatch answers every citation with a line; an answer missing some (an empty
            # or cut-off body) is used but not cached, or a re-run could never match them.
            answers = self._call(
                "ecitmatch.cgi",
                params,
                ecitmatch_answers,
                keep=lambda got, keys=keys: keys <= got.keys(),
            )
            matches.update({key: pmid for key, pmid in answers.items() if pmid.isdigit()})
        return matches

    # -- plumbing ------------------------------------------------------------------------

    def _call(
        self,
        endpoint: str,
        params: Params,
        parse: Callable[[bytes], T],
        keep: Callable[[T], bool] = lambda result: True,
    ) -> T:
        """Cached → parse; else fetch (rate-limited, retried) → parse → cache (if ``keep``).

        A cached entry that does not parse, or that ``keep`` would not have cached (written
        by an older version, or cut short), is discarded and fetched again."""
        key = request_key(endpoint, params)
        if self._cache is not None and not self._fresh:
            cached = self._cache.get(endpoint, key)
            if cached is not None:
                try:
                    result = parse(cached)
                    usable = keep(result)
                except MalformedXML:
                    usable = False
                if usable:
                    self.stats.cached += 1
                    return result
                self._cache.discard(endpoint, key)  # damaged entry: fetch it again
        data = self._fetch(endpoint, params)
        again = "This is usually temporary; run the same command again. " + OFFLINE_HINT
        # An <ERROR> element ("Search Backend failed", "Unable to obtain query #1") in a 200
        # answer: say what NCBI said. Checked before parsing, as the efetch error document
        # names a DTD Biopython does not ship (parsing would try to download it, then hide
        # the reason behind that failure).
        reason = ncbi_reason(data) if b"<ERROR>" in data or data.lstrip()[:1] == b"{" else None
        if reason is not None:
            raise self._redacted(
                SourceError(
                    f"PubMed answered the {endpoint.split('.')[0]} request with an error: {reason}",
                    hint=again,
                )
            )
        try:
            result = parse(data)
        except MalformedXML as error:
            raise SourceError(
                f"PubMed returned an unreadable {endpoint.split('.')[0]} response: {error}",
                hint=again,
            ) from None
        self.stats.fetched += 1
        if self._cache is not None and keep(result):
            self._cache.put(endpoint, key, data)
        return result

    def _fetch(self, endpoint: str, params: Params) -> bytes:
        full = [*params, ("tool", self.tool)]
        if self.email:
            full.append(("email", self.email))
        if self.api_key:
            full.append(("api_key", self.api_key))
        # Long id lists go by POST, as NCBI asks; ECitMatch only answers GET (and is batched).
        ids = sum(v.count(",") + 1 for k, v in full if k == "id")
        post = endpoint != "ecitmatch.cgi" and (
            len(urlencode(full)) > POST_THRESHOLD_CHARS or ids >= EFETCH_BATCH
        )
        url = EUTILS_URL + endpoint
        for attempt in range(1, self.max_tries + 1):
            self._limiter.wait()
            try:
                return self.transport(url, full, post)
            except TransportError as error:
                if not error.transient:
                    raise self._redacted(_rejected(endpoint, error)) from None
                if attempt == self.max_tries:
                    raise self._redacted(_give_up(error, self.max_tries)) from None
                if error.retry_after is not None and error.retry_after > self.max_backoff:
                    # Waiting hours without a word looks like a hang; say so and stop.
                    raise self._redacted(_asked_to_wait(error)) from None
                self.stats.retries += 1
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                self.sleep(max(delay, error.retry_after or 0.0))
        raise AssertionError("unreachable")  # pragma: no cover

    def _redacted(self, error: SourceError) -> SourceError:
        """``error`` with the API key masked, whatever the server or the network echoed."""
        if self.api_key:
            error.message = error.message.replace(self.api_key, "***")
            error.args = (error.message,)
        return error


def _rejected(endpoint: str, error: TransportError) -> SourceError:
    name = endpoint.split(".")[0]
    if "api key" in str(error).lower():
        hint = (
            "Check the NCBI API key given (--api-key, CARQA_NCBI_API_KEY or NCBI_API_KEY), "
            "or leave it out to send 3 requests/s."
        )
    else:
        hint = OFFLINE_HINT
    return SourceError(f"PubMed rejected the {name} request ({error}).", hint=hint)


def _asked_to_wait(error: TransportError) -> SourceError:
    return SourceError(
        f"PubMed answered {error} and asked to wait {error.retry_after:.0f} s before retrying.",
        hint="Run the same command again later (finished requests are cached), or pass "
        "--api-key. " + OFFLINE_HINT,
    )


def _give_up(error: TransportError, tries: int) -> SourceError:
    if error.status is None:
        return SourceError(
            f"PubMed (eutils.ncbi.nlm.nih.gov) is unreachable: {error} (tried {tries} times).",
            hint="Check the network connection. " + OFFLINE_HINT,
        )
    return SourceError(
        f"PubMed kept failing with {error} after {tries} tries.",
        hint="NCBI may be busy: try again later, or pass --api-key. " + OFFLINE_HINT,
    )
