from __future__ import annotations

import socket
import threading
from pathlib import Path

import carqa.index.corpus.entrez
import pytest
from carqa.index.corpus.entrez import EntrezClient
from carqa.index.corpus.entrez_links import CitationQuery, parse_ecitmatch, refs_link_sets
from carqa.index.corpus.entrez_transport import TransportError, request_key, urllib_transport
from carqa.index.corpus.pubmed_xml import read_entrez

from carqa.errors import SourceError
from tests.index.fixtures.entrez.fake_entrez import (
    SEED_DOI,
    SEED_PMID,
    FakeClock,
    FakeEntrez,
    ecitmatch_answer,
    efetch_for_ids,
    fixture,
    transient,
)


def _client(fake: FakeEntrez, clock: FakeClock | None = None, **kwargs) -> EntrezClient:
    clock = clock or FakeClock()
    kwargs.setdefault("email", "dev@example.org")
    return EntrezClient(transport=fake, sleep=clock.sleep, clock=clock, **kwargs)


def test_doi_resolution_sends_doi_query_and_credentials() -> None:
    fake = FakeEntrez()
    client = _client(fake, api_key="k123")
    assert client.search_doi(SEED_DOI) == [SEED_PMID]
    (call,) = fake.calls
    assert call.endpoint == "esearch"
    assert call.one("term") == f'"{SEED_DOI}"[doi]'
    assert call.one("db") == "pubmed"
    assert (call.one("tool"), call.one("email"), call.one("api_key")) == (
        "carqa",
        "dev@example.org",
        "k123",
    )


def test_unknown_doi_finds_nothing() -> None:
    assert _client(FakeEntrez()).search_doi("10.9999/nothing") == []


def test_every_request_carries_tool_and_email() -> None:
    fake = FakeEntrez()
    client = _client(fake)
    client.search_doi(SEED_DOI)
    client.fetch([SEED_PMID])
    client.cited_by([SEED_PMID])
    client.citation_match([CitationQuery(key="0", journal="x", year="2015", author="epsilon e")])
    assert len(fake.calls) == 4
    assert all(c.one("tool") == "carqa" and c.one("email") == "dev@example.org" for c in fake.calls)
    assert all("api_key" not in c.params for c in fake.calls)


def test_reference_list_is_parsed_from_efetch() -> None:
    (seed,) = _client(FakeEntrez()).fetch([SEED_PMID])
    assert [r.pmid for r in seed.references] == [
        "90200002",
        "90200003",
        "90200004",
        None,
        None,
        None,
    ]
    assert seed.references[3].doi == "10.9999/invented.ref5"
    assert seed.references[4].citation.startswith("Epsilon E, et al.")


def test_elink_sends_one_id_parameter_per_pmid() -> None:
    fake = FakeEntrez()
    links = _client(fake).cited_by([SEED_PMID, "90200002"])
    call = fake.calls[0]
    assert call.params["id"] == [SEED_PMID, "90200002"]
    assert call.one("linkname") == "pubmed_pubmed_refs"
    # only the pubmed_pubmed_refs link set counts, not "similar articles"
    assert links[SEED_PMID] == ["90200002", "90200003", "90200007"]


def test_ecitmatch_request_format_and_answer() -> None:
    fake = FakeEntrez()
    query = CitationQuery(
        key="4",
        journal="invented immunother",
        year="2015",
        volume="7",
        first_page="101",
        author="epsilon e",
    )
    other = CitationQuery(key="5", journal="unknown j", year="2001", author="nobody n")
    assert _client(fake).citation_match([query, other]) == {"4": "90200006"}
    call = fake.calls[0]
    assert call.endpoint == "ecitmatch" and not call.post
    assert call.one("bdata") == (
        "invented immunother|2015|7|101|epsilon e|4|\runknown j|2001|||nobody n|5|"
    )


def test_parse_ecitmatch_ignores_unmatched_lines() -> None:
    text = b"j|2015|7|1|a b|1|123\nj|2015|7|1|a b|2|NOT_FOUND;INVALID_JOURNAL\nj||||c|3|AMBIGUOUS\n"
    assert parse_ecitmatch(text) == {"1": "123"}


def test_efetch_batches_of_at_most_200_with_post_for_long_lists() -> None:
    ids = [str(90300000 + i) for i in range(450)]
    fake = FakeEntrez(handler=lambda endpoint, params: efetch_for_ids(params["id"][0].split(",")))
    done: list[int] = []
    papers = _client(fake).fetch(ids, on_batch=done.append)
    assert [p.pmid for p in papers] == ids
    assert [len(c.one("id").split(",")) for c in fake.calls] == [200, 200, 50]
    assert [c.post for c in fake.calls] == [True, True, False]
    assert done == [200, 200, 50]


def test_small_batch_size_is_honoured() -> None:
    fake = FakeEntrez(handler=lambda endpoint, params: efetch_for_ids(params["id"][0].split(",")))
    _client(fake, batch_size=2).fetch(["1", "2", "3", "2"])
    assert [c.one("id") for c in fake.calls] == ["1,2", "3"]


def test_429_is_retried_with_backoff_honouring_retry_after() -> None:
    clock = FakeClock()
    fake = FakeEntrez(failures={"esearch": [transient(429, retry_after=5), transient(503)]})
    client = _client(fake, clock)
    assert client.search_doi(SEED_DOI) == [SEED_PMID]
    assert fake.count("esearch") == 3
    assert client.stats.retries == 2
    assert 5 in clock.sleeps  # Retry-After beats the 1 s first backoff
    assert 2 in clock.sleeps  # then exponential: 1, 2, 4, ...


def test_retry_after_longer_than_the_backoff_cap_stops_with_a_message_not_a_silent_wait() -> None:
    clock = FakeClock()
    fake = FakeEntrez(failures={"efetch": [transient(429, retry_after=3600)] * 5})
    with pytest.raises(SourceError, match="asked to wait 3600 s") as raised:
        _client(fake, clock).fetch(["1"])
    assert "again later" in (raised.value.hint or "")
    assert fake.count("efetch") == 1
    assert max(clock.sleeps, default=0) <= 60


def test_timeouts_are_retried_then_reported_as_unreachable() -> None:
    fake = FakeEntrez(failures={"esearch": [transient(None)] * 10})
    client = _client(fake, max_tries=3)
    with pytest.raises(SourceError, match="unreachable") as raised:
        client.search_doi(SEED_DOI)
    assert fake.count("esearch") == 3
    assert "--from" in raised.value.hint and "snapshot import" in raised.value.hint


def test_persistent_5xx_gives_up_with_a_clear_error() -> None:
    fake = FakeEntrez(failures={"efetch": [transient(502)] * 10})
    with pytest.raises(SourceError, match="kept failing with HTTP 502"):
        _client(fake, max_tries=2).fetch(["1"])


def test_client_errors_are_not_retried() -> None:
    fake = FakeEntrez(failures={"esearch": [TransportError("HTTP 400", status=400)]})
    with pytest.raises(SourceError, match="rejected"):
        _client(fake).search_doi(SEED_DOI)
    assert fake.count("esearch") == 1


def test_rate_limit_three_per_second_without_key_ten_with() -> None:
    for api_key, interval in ((None, 1 / 3), ("key", 1 / 10)):
        clock = FakeClock()
        client = _client(FakeEntrez(), clock, api_key=api_key)
        start = clock.now
        for _ in range(7):
            client.search_doi(SEED_DOI)
        assert clock.now - start == pytest.approx(6 * interval)


def test_responses_are_cached_and_replayed(tmp_path: Path) -> None:
    fake = FakeEntrez()
    first = _client(fake, cache_dir=tmp_path)
    first.search_doi(SEED_DOI)
    first.fetch([SEED_PMID])
    assert first.stats.as_dict() == {"cached": 0, "fetched": 2, "retries": 0}

    replay = FakeEntrez(handler=lambda *_: pytest.fail("should come from the cache"))
    second = _client(replay, cache_dir=tmp_path, email="someone-else@example.org")
    assert second.search_doi(SEED_DOI) == [SEED_PMID]
    assert second.fetch([SEED_PMID])[0].pmid == SEED_PMID
    assert second.stats.as_dict() == {"cached": 2, "fetched": 0, "retries": 0}


def test_empty_doi_search_is_not_cached(tmp_path: Path) -> None:
    _client(FakeEntrez(), cache_dir=tmp_path).search_doi("10.9999/nothing")
    assert not list(tmp_path.rglob("*.raw"))


def test_damaged_cache_entry_is_refetched(tmp_path: Path) -> None:
    _client(FakeEntrez(), cache_dir=tmp_path).search_doi(SEED_DOI)
    (entry,) = (tmp_path / "esearch").iterdir()
    entry.write_bytes(b"<half an answ")
    client = _client(FakeEntrez(), cache_dir=tmp_path)
    assert client.search_doi(SEED_DOI) == [SEED_PMID]
    assert client.stats.fetched == 1


def test_unreadable_response_is_a_source_error_and_not_cached(tmp_path: Path) -> None:
    fake = FakeEntrez(handler=lambda *_: b"<html>Service unavailable</html>")
    with pytest.raises(SourceError, match="unreadable esearch response"):
        _client(fake, cache_dir=tmp_path).search_doi(SEED_DOI)
    assert not list(tmp_path.rglob("*.raw"))


# -- the real transport against a local socket: what urllib raises must become TransportError --


def _serve(replies: list[bytes]) -> str:
    """A one-thread HTTP "server" on localhost answering each connection with the next raw
    reply, then closing it; returns its base URL."""
    server = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        with server:
            for reply in replies:
                conn, _ = server.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(reply)

    threading.Thread(target=run, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}/"


def _ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body


CUT_OFF = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n<?xml version="
CUT_OFF_CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n<?xml version="
GARBAGE = b"not http at all\r\n\r\n"


@pytest.mark.parametrize(
    "reply", [CUT_OFF, CUT_OFF_CHUNKED, GARBAGE], ids=["cut-off", "cut-off-chunked", "not-http"]
)
def test_a_connection_broken_off_mid_response_is_a_transient_transport_error(
    reply: bytes,
) -> None:
    with pytest.raises(TransportError, match="connection broke off") as raised:
        urllib_transport(_serve([reply]) + "efetch.fcgi", [("id", "1")], False, timeout=5)
    assert raised.value.transient


def test_client_retries_a_response_cut_off_mid_body(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = fixture("esearch_seed_doi.xml")
    monkeypatch.setattr(carqa.index.corpus.entrez, "EUTILS_URL", _serve([CUT_OFF, _ok(answer)]))
    clock = FakeClock()
    client = EntrezClient(email="dev@example.org", sleep=clock.sleep, clock=clock)
    assert client.search_doi(SEED_DOI) == [SEED_PMID]
    assert client.stats.retries == 1


def test_ncbi_error_body_is_reported_without_the_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "0123456789abcdef0123456789abcdef0123"
    body = b'{"error":"API key invalid","api-key":"%s","type":"invalid","status":"unknown"}' % (
        key.encode()
    )
    reply = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
    reply += b"Content-Length: %d\r\n\r\n" % len(body) + body
    monkeypatch.setattr(carqa.index.corpus.entrez, "EUTILS_URL", _serve([reply]))
    clock = FakeClock()
    client = EntrezClient(email="d@e.org", api_key=key, sleep=clock.sleep, clock=clock)
    with pytest.raises(SourceError) as raised:
        client.search_doi(SEED_DOI)
    assert "HTTP 400 Bad Request: API key invalid" in raised.value.message
    assert "--api-key" in (raised.value.hint or "")
    assert key not in str(raised.value)


def test_efetch_error_element_in_a_400_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    body = b"<eFetchResult>\n\t<ERROR>ID list is empty! Possibly it has no correct IDs.</ERROR>"
    body += b"\n</eFetchResult>\n"
    reply = b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    monkeypatch.setattr(carqa.index.corpus.entrez, "EUTILS_URL", _serve([reply]))
    clock = FakeClock()
    client = EntrezClient(email="d@e.org", sleep=clock.sleep, clock=clock)
    with pytest.raises(SourceError, match="ID list is empty! Possibly it has no correct IDs"):
        client.fetch(["99999999999"])


def test_api_key_echoed_in_a_transport_error_is_masked() -> None:
    key = "fedcba9876543210"
    fake = FakeEntrez(failures={"esearch": [transient(None, message=f"refused for {key}")] * 9})
    with pytest.raises(SourceError) as raised:
        _client(fake, api_key=key, max_tries=2).search_doi(SEED_DOI)
    assert key not in str(raised.value) and "***" in raised.value.message


EFETCH_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8" ?>\n<!DOCTYPE eFetchResult PUBLIC "-//NLM//DTD efetch '
    b'20131226//EN" "https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20131226/efetch.dtd">\n'
    b"<eFetchResult>\n\t<ERROR>Unable to obtain query #1</ERROR>\n</eFetchResult>\n"
)


def test_efetch_error_element_in_a_200_answer_is_reported_and_not_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No DTD download either: Bio.Entrez would fetch efetch.dtd, which it does not ship.
    monkeypatch.setattr("Bio.Entrez.Parser.urlopen", lambda *a, **k: pytest.fail("network used"))
    client = _client(FakeEntrez(handler=lambda *_: EFETCH_ERROR), cache_dir=tmp_path)
    with pytest.raises(SourceError, match="with an error: Unable to obtain query #1") as raised:
        client.fetch(["1"])
    assert "run the same command again" in (raised.value.hint or "")
    assert not list(tmp_path.rglob("*.raw"))


def test_request_key_ignores_credentials() -> None:
    base = [("db", "pubmed"), ("id", "1")]
    assert request_key("efetch.fcgi", base) == request_key(
        "efetch.fcgi", [*base, ("email", "a@b"), ("api_key", "x"), ("tool", "t")]
    )
    assert request_key("efetch.fcgi", base) != request_key("efetch.fcgi", [("id", "2")])


# -- the real E-utilities responses in ../shared/data/entrez ----------------------------


def test_real_reference_list_yields_49_pmids(shared_data: Path) -> None:
    data = (shared_data / "entrez" / "pubmed7.xml").read_bytes()
    (paper,) = _client(FakeEntrez(handler=lambda *_: data)).fetch(["29963580"])
    assert paper.pmid == "29963580"
    assert len(paper.references) == 49
    assert len({r.pmid for r in paper.references if r.pmid}) == 49


def test_real_elink_refs_link_set_yields_56(shared_data: Path) -> None:
    data = (shared_data / "entrez" / "elink1.xml").read_bytes()
    links = _client(FakeEntrez(handler=lambda *_: data)).cited_by(["9298984"])
    assert len(links["9298984"]) == 56


def test_real_esearch_and_efetch_shapes(shared_data: Path) -> None:
    record = read_entrez((shared_data / "entrez" / "esearch1.xml").read_bytes())
    assert len(record["IdList"]) == 20
    merged = refs_link_sets(read_entrez((shared_data / "entrez" / "elink3.xml").read_bytes()))
    assert merged  # comma-joined ids: one merged set keyed by each input id
    for name in ("pubmed1.xml", "pubmed2.xml", "pubmed4.xml"):
        data = (shared_data / "entrez" / name).read_bytes()
        papers = _client(FakeEntrez(handler=lambda *_, d=data: d)).fetch(["1"])
        assert papers and all(p.pmid.isdigit() and p.title for p in papers)


def test_fixture_records_are_invented() -> None:
    # Guard against pasting real abstracts: fixture PMIDs live in the invented 90xxxxxx range.
    for name in ("efetch_seed.xml", "efetch_cited.xml", "efetch_markup.xml", "efetch_book.xml"):
        papers = _client(FakeEntrez(handler=lambda *_, n=name: fixture(n))).fetch(["1"])
        assert papers and all(p.pmid.startswith("90") for p in papers)


def _queries(count: int) -> list[CitationQuery]:
    return [
        CitationQuery(key=str(i), journal="invented immunother", year="2015", author="epsilon e")
        for i in range(count)
    ]


def test_ecitmatch_answer_missing_citations_is_used_but_not_cached(tmp_path: Path) -> None:
    # The body was cut off after the first line: that match counts, the rest must be asked again.
    def cut(endpoint: str, params: dict[str, list[str]]) -> bytes:
        return ecitmatch_answer(params, {"epsilon e": "90200006"}).split(b"\n")[0] + b"\n"

    assert _client(FakeEntrez(handler=cut), cache_dir=tmp_path).citation_match(_queries(3)) == {
        "0": "90200006"
    }
    assert not list(tmp_path.rglob("*.raw"))
    full = FakeEntrez(handler=lambda _, params: ecitmatch_answer(params, {"epsilon e": "1"}))
    client = _client(full, cache_dir=tmp_path)
    assert client.citation_match(_queries(3)) == {"0": "1", "1": "1", "2": "1"}
    assert client.stats.fetched == 1 and list(tmp_path.rglob("*.raw"))


def test_cached_entry_the_client_would_not_keep_is_refetched(tmp_path: Path) -> None:
    # An empty ECitMatch body cached by an older version (or an empty DOI search): not final.
    first = FakeEntrez(handler=lambda _, params: ecitmatch_answer(params, {}))
    _client(first, cache_dir=tmp_path).citation_match(_queries(2))
    (entry,) = (tmp_path / "ecitmatch").iterdir()
    entry.write_bytes(b"")
    full = FakeEntrez(handler=lambda _, params: ecitmatch_answer(params, {"epsilon e": "7"}))
    client = _client(full, cache_dir=tmp_path)
    assert client.citation_match(_queries(2)) == {"0": "7", "1": "7"}
    assert client.stats.as_dict() == {"cached": 0, "fetched": 1, "retries": 0}
    assert entry.read_bytes() != b""
