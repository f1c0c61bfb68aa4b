"""A corpus's identity: each paper as plain data, and one hash over the whole corpus.

Snapshots export papers in the :func:`paper_to_dict` shape and record :func:`corpus_hash`;
the corpus store computes the same hash over what it holds
(:meth:`carqa.index.corpus.store.CorpusStore.content_hash`). Keeping both here, apart from the
store's SQL, means a snapshot and a store agree on what "the same corpus" is by construction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from carqa.index.corpus.models import Paper


def paper_to_dict(paper: Paper) -> dict:
    """A paper as plain JSON-able data (the snapshot and hashing shape)."""
    return {
        "pmid": paper.pmid,
        "title": paper.title,
        "journal": paper.journal,
        "year": paper.year,
        "authors": list(paper.authors),
        "doi": paper.doi,
        "mesh": list(paper.mesh),
        "publication_types": list(paper.publication_types),
        "sections": [
            {"label": s.label, "category": s.category, "text": s.text} for s in paper.sections
        ],
        "references": [
            {"citation": r.citation, "pmid": r.pmid, "doi": r.doi} for r in paper.references
        ],
        "relation": paper.relation,
    }


HASHED_RELATIONS = frozenset({"citing", "similar"})
"""Relations that count in the content hash. ``seed`` and ``cited`` follow from the seed pmid
and the references (hashed already) and ``file`` from their absence, so leaving them out keeps
the hash of every corpus without expansion what it was before relations were recorded."""


def corpus_hash(papers: Iterable[Paper], seed_pmid: str | None) -> str:
    """The store's :meth:`CorpusStore.content_hash` for papers not (yet) in a store."""
    digests = sorted(_paper_digest(paper) for paper in papers)
    outer = hashlib.sha256()
    outer.update(f"seed:{seed_pmid or ''}\n".encode())
    for digest in digests:
        outer.update(digest.encode() + b"\n")
    return outer.hexdigest()


def _paper_digest(paper: Paper) -> str:
    data = paper_to_dict(paper)
    if data["relation"] not in HASHED_RELATIONS:
        del data["relation"]
    canonical = json.dumps(data, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
