"""Beyond the reference list: the papers that cite the seed review and its similar articles.

A seed review is a snapshot of its field on the day it was written; what came after it is
found through PubMed's two other lists on the review's page, both served by elink:

* **Cited by** — ``elink linkname=pubmed_pubmed_citedin`` (relation ``citing``), in PubMed's
  order (newest first);
* **Similar articles** — ``elink linkname=pubmed_pubmed cmd=neighbor_score`` (relation
  ``similar``), ranked by PubMed's relatedness score, best first.

The linked PMIDs not in the corpus yet are fetched with efetch in the seed flow's batches,
rate limit and response cache (so an interrupted run resumes). ``max_expand`` caps the papers
each relation adds (the best-ranked first: for similar articles, fetching stops once that many
passed ``since``); ``since`` keeps papers published that year or later (a paper without a year
is left out, as a year filter leaves it out). Both are applied here, after efetch, as elink's own
date limits are not documented for these link names.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

from carqa.index.corpus.entrez import EntrezClient
from carqa.index.corpus.models import Paper

from carqa.errors import InputError
from carqa.progress import ProgressCallback, no_progress

EXPANSIONS = {"cited-by": "citing", "citing": "citing", "similar": "similar"}
"""``--expand`` names (as PubMed's page calls the lists) → the relation they add."""

_STAGES = {"citing": "Fetching citing papers", "similar": "Fetching similar articles"}


def parse_expand(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"cited-by,similar"`` (or a list of such) → the relations, in a fixed order; an
    :class:`InputError` names an unknown one."""
    if value is None:
        return ()
    parts = [value] if isinstance(value, str) else list(value)
    names = [name.strip().lower() for part in parts for name in part.split(",") if name.strip()]
    unknown = [name for name in names if name not in EXPANSIONS]
    if unknown:
        raise InputError(
            f"Unknown --expand value {', '.join(repr(name) for name in unknown)}.",
            hint="--expand takes cited-by, similar or both: --expand cited-by,similar.",
        )
    relations = {EXPANSIONS[name] for name in names}
    return tuple(relation for relation in ("citing", "similar") if relation in relations)


@dataclass
class ExpandReport:
    """What the expansion found and added, per relation (``citing``, ``similar``)."""

    relations: tuple[str, ...] = ()
    since: int | None = None
    max_expand: int | None = None
    linked: dict[str, int] = field(default_factory=dict)  # PMIDs PubMed lists
    already_stored: dict[str, int] = field(default_factory=dict)  # ... the corpus holds
    added: dict[str, list[str]] = field(default_factory=dict)  # ... fetched and kept
    too_old: dict[str, int] = field(default_factory=dict)  # ... published before since
    missing_records: list[str] = field(default_factory=list)  # ... efetch did not return

    def as_dict(self) -> dict:
        return {
            "relations": list(self.relations),
            "since": self.since,
            "max_expand": self.max_expand,
            "linked": dict(self.linked),
            "already_stored": dict(self.already_stored),
            "added": {relation: len(pmids) for relation, pmids in self.added.items()},
            "too_old": dict(self.too_old),
            "missing_records": list(self.missing_records),
        }


def expand_corpus(
    client: EntrezClient,
    seed_pmid: str,
    relations: Sequence[str],
    *,
    known: Collection[str] = (),
    since: int | None = None,
    max_expand: int | None = None,
    stored_counts: dict[str, int] | None = None,
    fresh: bool = False,
    on_progress: ProgressCallback | None = None,
) -> tuple[list[Paper], ExpandReport]:
    """The papers ``relations`` add around ``seed_pmid`` (relation set on each), skipping
    ``known`` PMIDs (the corpus so far). ``stored_counts`` (relation → papers the corpus
    already holds) lowers each relation's ``max_expand`` cap on an update. With ``fresh`` the
    elink lists come from PubMed, not the response cache."""
    progress = on_progress or no_progress
    report = ExpandReport(relations=tuple(relations), since=since, max_expand=max_expand)
    taken = set(known) | {seed_pmid}
    papers: list[Paper] = []
    for relation in relations:
        progress(f"Linking {relation} papers", 0, None)
        with client.fresh() if fresh else nullcontext():
            if relation == "citing":
                linked = client.citing(seed_pmid)
            else:
                linked = [link.pmid for link in client.similar(seed_pmid)]
        report.linked[relation] = len(linked)
        candidates = [pmid for pmid in dict.fromkeys(linked) if pmid not in taken]
        report.already_stored[relation] = len(set(linked) & taken)
        cap = None
        if max_expand is not None:
            cap = max(0, max_expand - (stored_counts or {}).get(relation, 0))
        kept, too_old, missing = _fetch_ranked(
            client, candidates, since=since, cap=cap, stage=_STAGES[relation], progress=progress
        )
        report.too_old[relation] = too_old
        report.missing_records += missing
        report.added[relation] = [paper.pmid for paper in kept]
        taken.update(paper.pmid for paper in kept)
        papers += [replace(paper, relation=relation) for paper in kept]
    return papers, report


def _fetch_ranked(
    client: EntrezClient,
    candidates: list[str],
    *,
    since: int | None,
    cap: int | None,
    stage: str,
    progress: ProgressCallback,
) -> tuple[list[Paper], int, list[str]]:
    """Fetch ``candidates`` in order, batch by batch, until ``cap`` papers passed ``since``.

    Returns the papers kept, how many were too old, and the PMIDs PubMed did not return."""
    kept: list[Paper] = []
    too_old = 0
    missing: list[str] = []
    total = len(candidates) if cap is None else min(cap, len(candidates))
    progress(stage, 0, total)
    step = client.batch_size
    for start in range(0, len(candidates), step):
        if cap is not None and len(kept) >= cap:
            break
        batch = candidates[start : start + step]
        fetched = {paper.pmid: paper for paper in client.fetch(batch)}
        for pmid in batch:
            paper = fetched.get(pmid)
            if paper is None:
                missing.append(pmid)
            elif since is not None and (paper.year is None or paper.year < since):
                too_old += 1
            elif cap is None or len(kept) < cap:
                kept.append(paper)
        progress(stage, min(len(kept) if cap is not None else start + len(batch), total), total)
    return kept, too_old, missing
