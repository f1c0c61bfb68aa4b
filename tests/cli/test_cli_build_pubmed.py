"""``carqa build`` from PubMed (a fake transport behind the real client): the seed flow's
summary, credentials, and the failures a user must be able to act on."""

from __future__ import annotations

from pathlib import Path

import pytest
from carqa.index.corpus.store import CorpusStore

from tests.cli.helpers import (
    invoke,
    no_traceback,
)
from tests.index.fixtures.entrez.fake_entrez import SEED_DOI, FakeEntrez, transient


def test_pubmed_seed_flow_summary(tmp_path: Path, fake_pubmed: FakeEntrez) -> None:
    args = (
        "build",
        "--doi",
        SEED_DOI,
        "--email",
        "dev@example.org",
        "--index-dir",
        str(tmp_path),
        "--no-index",
    )
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "PubMed, seed PMID 90200001" in out
    assert "5/6 (83%)" in out
    assert "Unresolved references (1)" in out and "Invented Society" in out
    assert "1 elink-only" in out
    assert "PubMed returned no record for 1 cited PMIDs: 90200004" in out
    assert "6 fetched, 0 from cache" in out
    assert all(call.one("email") == "dev@example.org" for call in fake_pubmed.calls)
    with CorpusStore.open(tmp_path) as store:
        assert store.seed_pmid() == "90200001"
        assert store.counts()["papers"] == 6
        assert store.cited_pmids() == {f"9020000{i}" for i in range(2, 8)}
    # A re-run is served from the cache.
    again = invoke(*args)
    assert again.exit_code == 0
    assert "0 fetched, 6 from cache" in again.output


def test_pubmed_credentials_from_ncbi_env(tmp_path: Path, fake_pubmed: FakeEntrez) -> None:
    result = invoke(
        "build",
        "--pmid",
        "90200001",
        "--index-dir",
        str(tmp_path),
        "--no-index",
        env={"NCBI_EMAIL": "env@example.org", "NCBI_API_KEY": "envkey"},
    )
    assert result.exit_code == 0, result.output
    assert {c.one("email") for c in fake_pubmed.calls} == {"env@example.org"}
    assert {c.one("api_key") for c in fake_pubmed.calls} == {"envkey"}
    assert fake_pubmed.count("esearch") == 1  # --pmid: no seed DOI search


def test_missing_email_is_noted(
    tmp_path: Path, fake_pubmed: FakeEntrez, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NCBI_EMAIL", "CARQA_NCBI_EMAIL"):
        monkeypatch.delenv(name, raising=False)
    result = invoke("build", "--pmid", "90200001", "--index-dir", str(tmp_path), "--no-index")
    assert result.exit_code == 0
    assert "No contact email" in result.output


def test_unknown_doi_is_a_clear_error(tmp_path: Path, fake_pubmed: FakeEntrez) -> None:
    result = invoke("build", "--doi", "10.9999/nothing", "--index-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "No PubMed record has the DOI 10.9999/nothing" in result.output
    no_traceback(result)


def test_unreachable_pubmed_points_to_offline_paths(
    tmp_path: Path, fake_pubmed: FakeEntrez
) -> None:
    fake_pubmed.failures["esearch"] = [transient(None)] * 10
    result = invoke("build", "--index-dir", str(tmp_path))
    assert result.exit_code == 1
    assert "unreachable" in result.output
    assert "--from" in result.output and "snapshot import" in result.output
    no_traceback(result)
