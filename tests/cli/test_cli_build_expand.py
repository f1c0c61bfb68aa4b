"""``carqa build --expand/--since/--max-expand/--update`` through the CLI, PubMed faked."""

from __future__ import annotations

from pathlib import Path

from carqa.index.corpus.store import CorpusStore

from tests.cli.helpers import invoke, no_traceback
from tests.index.fixtures.entrez.fake_entrez import FakeEntrez, Invented, NeighbourRoutes


def _routes() -> NeighbourRoutes:
    return NeighbourRoutes(
        citing=[Invented("90300001", 2021, "Clinical Trial, Phase II")],
        similar=[Invented("90400001", 2022, score=50), Invented("90400002", 2016, score=40)],
    )


def test_expand_then_update_report_per_relation(
    tmp_path: Path,
    fake_pubmed: FakeEntrez,
) -> None:
    routes = _routes()
    fake_pubmed.handler = routes
    index_dir = str(tmp_path / "index")
    result = invoke(
        *("build", "--index-dir", index_dir, "--no-index", "--pmid", "90200001"),
        *("--expand", "cited-by,similar", "--since", "2020"),
    )
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())
    assert "Papers by relation │ 1 seed, 5 cited, 1 citing, 1 similar" in shown
    assert "Citing papers │ 1 added (1 listed by PubMed, 0 already in the corpus)" in shown
    assert (
        "Similar articles │ 1 added (2 listed by PubMed, 0 already in the corpus, 1 older" in shown
    )

    routes.citing.append(Invented("90300002", 2024, "Review"))
    result = invoke("build", "--index-dir", index_dir, "--no-index", "--update")
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())
    assert "Mode │ update: only what is new" in shown
    assert "New papers │ 1: 1 citing" in shown
    with CorpusStore.open(Path(index_dir)) as store:
        assert store.relations()["90300002"] == "citing"
        assert store.get_meta("since") == "2020"  # remembered by the update


def test_expand_with_from_is_a_clear_error(tmp_path: Path) -> None:
    source = tmp_path / "c.jsonl"
    source.write_text('{"pmid": "1", "abstract": "Invented."}\n')
    result = invoke("build", "--from", str(source), "--expand", "cited-by", "--no-index")
    assert result.exit_code == 2
    assert "not on --from files" in result.output
    no_traceback(result)
    result = invoke("build", "--expand", "cites", "--index-dir", str(tmp_path / "i"))
    assert result.exit_code == 2 and "Unknown --expand value 'cites'" in result.output
    no_traceback(result)
