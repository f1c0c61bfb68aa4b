"""Milvus as the engine behind the candidate step of retrieval (``CARQA_BACKEND=milvus``).

Retrieval ranks papers in two stages (:mod:`carqa.qa.retrieve`): a *candidate* step that looks at
the whole corpus — the best papers by similarity to their centroid (the normalised mean of their
sentence vectors) and the best by BM25 — and a sentence stage that scores only those candidates.
Only the first stage grows with the corpus, so it is the part a search engine takes over. This
module writes one Milvus collection per published build and answers that step from it:

- a dense field (the paper centroids the build already computed: nothing is embedded again),
- a BM25 full-text field made by Milvus's own BM25 function and analyzer from a VARCHAR field,
- ``hybrid_search`` of both with ``RRFRanker``, whose result is the union of the two top-k lists
  (the candidates), and scalar fields for the filters (year, pmid, seed, cited by the seed).

Why the text field holds *analysed* terms (our tokenizer's stems, space-separated) and Milvus's
analyzer only splits them: BM25 then scores exactly the terms the embedded backend scores
(hyphenated names kept joined and split, our stop words, Snowball stems), so both backends rank
alike and answers do not depend on where the index is served from. Milvus's ``english``
analyzer would differ on hyphenated drug and gene names ("CAR-T", "IL-6", "4-1BB").
The BM25 function scores ``(k1 + 1)`` times the bm25s "lucene" formula and weighs a query term by
how often it occurs in the query text; the lexicon's expansion terms (weight 0.5) are therefore
sent once and the question's own terms twice, and the score divided back.

Milvus Lite (a local file, ``<index_dir>/milvus.db`` by default) and a Milvus cluster
(``http://host:19530``) are the same client. Milvus Lite keeps BM25 statistics per segment, so
the collection is written in one flush (one segment up to Lite's 100k rows per segment); a
cluster aggregates them over segments itself.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from carqa.index.search.backends import PaperDocs

from carqa.errors import CarqaError, InputError

log = logging.getLogger(__name__)

COLLECTION_PREFIX = "carqa_"
BM25_K1 = 1.2
BM25_B = 0.75
"""The embedded BM25's parameters (``carqa.qa.lexical.LexicalIndex``)."""
MAX_TERMS_CHARS = 65_535
"""Milvus's longest VARCHAR; a paper's analysed text is far shorter (checked when written)."""
WRITE_BATCH = 1000
DENSE_INDEXES = {
    # name: (index_type, build params, search params)
    "flat": ("FLAT", {}, {}),
    "hnsw": ("HNSW", {"M": 32, "efConstruction": 200}, {"ef": 256}),
    "ivf_sq8": ("IVF_SQ8", {"nlist": 256}, {"nprobe": 32}),
    "ivf_flat": ("IVF_FLAT", {"nlist": 256}, {"nprobe": 32}),
}
RRF_K = 60


def _pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError as error:
        raise InputError(
            "CARQA_BACKEND=milvus needs the Milvus client, which is not installed.",
            hint='Install the scale extra: pip install "carqa[scale]" (or pip install '
            "pymilvus milvus-lite), or unset CARQA_BACKEND to use the embedded index.",
        ) from error
    return pymilvus


def collection_name(manifest: dict[str, Any]) -> str:
    """The collection of one published build: ``carqa_<build id>`` (a new build, a new
    collection, so a served index never reads a collection written for another build)."""
    build_id = str(manifest.get("build_id") or "")
    if not build_id:
        raise CarqaError(
            "The index has no build id, so it has no Milvus collection.",
            hint="Rebuild it with `carqa build`.",
        )
    return COLLECTION_PREFIX + re.sub(r"[^0-9A-Za-z_]", "_", build_id)


def default_uri(index_dir: Path) -> str:
    """Milvus Lite's file beside the index: ``<index_dir>/milvus.db``."""
    return str(Path(index_dir).expanduser() / "milvus.db")


@dataclass(frozen=True)
class Found:
    """The candidate step's answer: the same fields as ``carqa.qa.candidates.Candidates``."""

    papers: np.ndarray  # int64 paper positions, ascending
    centroid: np.ndarray  # float32 cosine of the question with each paper's centroid
    lexical: np.ndarray  # float32 BM25 of each paper (0 when it has none of the terms)
    lexical_max: float  # the best BM25 of the whole corpus


def filter_expr(filters: Any) -> str | None:
    """A Milvus boolean expression for ``carqa.qa.types.Filters`` (None: no restriction).

    The same rules as the embedded mask: years inclusive and a paper without a year fails any
    year bound; ``exclude_pmids`` wins over ``pmids``; ``cited_only`` keeps the papers the seed
    cites and the seed itself; ``include_seed=False`` leaves the seed out."""
    if filters is None:
        return None
    parts: list[str] = []
    if filters.year_from is not None or filters.year_to is not None:
        parts.append("year >= 0")
    if filters.year_from is not None:
        parts.append(f"year >= {int(filters.year_from)}")
    if filters.year_to is not None:
        parts.append(f"year <= {int(filters.year_to)}")
    if filters.pmids is not None:
        parts.append(f"pmid in {_pmid_list(filters.pmids)}")
    if filters.exclude_pmids:
        parts.append(f"not (pmid in {_pmid_list(filters.exclude_pmids)})")
    if filters.cited_only:
        parts.append("(cited_by_seed or is_seed)")
    if not filters.include_seed:
        parts.append("not is_seed")
    return " and ".join(parts) or None


def _pmid_list(pmids: Iterable[str]) -> str:
    # PMIDs are digits (the API and CLI check them); anything else is quoted safely anyway.
    cleaned = sorted({re.sub(r"[^0-9A-Za-z]", "", str(p).strip()) for p in pmids} - {""})
    return "[" + ",".join(f'"{p}"' for p in cleaned) + "]"


class MilvusSource:
    """The candidate step answered by Milvus (``carqa.qa.candidates.CandidateSource``)."""

    name = "milvus"

    def __init__(
        self,
        client: Any,
        collection: str,
        pmids: Sequence[str],
        *,
        expansion_weight: float,
        dense_index: str = "flat",
    ) -> None:
        self.client = client
        self.collection = collection
        self.pmids = list(pmids)
        self.position = {pmid: i for i, pmid in enumerate(self.pmids)}
        repeat = 1.0 / expansion_weight if expansion_weight > 0 else 0.0
        if expansion_weight <= 0 or abs(repeat - round(repeat)) > 1e-9:
            raise ValueError("the expansion weight must be 1/n for a whole n")
        self._own_repeat = round(repeat)
        self._search_params = DENSE_INDEXES[dense_index][2]

    def warm_up(self) -> None:
        """One BM25 and one dense search now, so the first question does not pay for what an
        engine prepares on first use (Milvus Lite builds each segment's BM25 postings then:
        about a second for 18.7k papers)."""
        self.client.search(
            self.collection,
            data=["a"],
            anns_field="sparse",
            limit=1,
            search_params={"metric_type": "BM25"},
        )
        fields = self.client.describe_collection(self.collection)["fields"]
        dim = next(int(f["params"]["dim"]) for f in fields if f["name"] == "centroid")
        self.client.search(
            self.collection,
            data=[[0.0] * dim],
            anns_field="centroid",
            limit=1,
            search_params={"metric_type": "IP", "params": self._search_params},
        )

    # -- the candidate step --------------------------------------------------------------------

    def candidates(
        self,
        query: Any,
        vector: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        filters: Any = None,
    ) -> Found:
        """The best ``k`` papers by centroid and the best ``k`` by BM25 among the papers that
        pass ``filters`` (``allowed``, the same papers as a mask by position, says how many);
        all of them when at most ``2k`` pass."""
        expr = filter_expr(filters)
        if allowed is not None and expr is None and not allowed.all():
            expr = f"pmid in {_pmid_list(self.pmids[i] for i in np.flatnonzero(allowed))}"
        passing = len(self.pmids) if allowed is None else int(allowed.sum())
        text = self._bm25_text(query)
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if passing == 0:
            return self._empty()
        if passing <= 2 * k:
            rows = self.client.query(
                self.collection, filter=expr or "year >= -1", output_fields=["pmid", "centroid"]
            )
            chosen = {row["pmid"]: row["centroid"] for row in rows}
        else:
            chosen = self._hybrid(text, vector, k, expr)
        lexical_of = self._bm25(text, len(chosen), _in(chosen)) if text else {}
        if text and passing > 2 * k and len(lexical_of) < k:
            # Fewer than k passing papers share a term: all of them are among the hybrid
            # search's candidates (its BM25 list holds every paper with a term), and the
            # embedded path fills the BM25 top k with zeros, lowest positions first.
            chosen.update(self._zero_scored(lexical_of, allowed, k - len(lexical_of)))
        papers = np.array(sorted(self.position[p] for p in chosen), dtype=np.int64)
        vectors = np.array(
            [chosen[self.pmids[i]] for i in papers.tolist()], dtype=np.float32
        ).reshape(len(papers), len(vector))
        lexical = np.array([lexical_of.get(self.pmids[i], 0.0) for i in papers], np.float32)
        if not text:
            top = 0.0
        elif expr is None:
            top = float(lexical.max(initial=0.0))  # the BM25 top-k are among the candidates
        else:
            best = self._bm25(text, 1, None)
            top = max(best.values(), default=0.0)
        return Found(
            papers=papers,
            centroid=(vectors @ vector).astype(np.float32),
            lexical=lexical,
            lexical_max=float(top),
        )

    def _bm25_text(self, query: Any) -> str:
        own = list(getattr(query, "own", ()))
        extra = list(getattr(query, "extra", ()))
        return " ".join(own * self._own_repeat + extra)

    def _scale(self) -> float:
        return (BM25_K1 + 1.0) * self._own_repeat

    def _bm25(self, text: str, limit: int, expr: str | None) -> dict[str, float]:
        """pmid → BM25 (the embedded scale) of the best ``limit`` papers with a term."""
        if limit <= 0:
            return {}
        hits = self.client.search(
            self.collection,
            data=[text],
            anns_field="sparse",
            limit=limit,
            filter=expr or "",
            output_fields=["pmid"],
            search_params={"metric_type": "BM25"},
        )[0]
        # Milvus reports the BM25 score as a distance (Lite negates it; a cluster does not).
        return {hit["pmid"]: abs(float(hit["distance"])) / self._scale() for hit in hits}

    def _hybrid(self, text: str, vector: np.ndarray, k: int, expr: str | None) -> dict[str, Any]:
        """pmid → centroid of the union of the top ``k`` by centroid and by BM25 (RRF)."""
        pymilvus = _pymilvus()
        requests = [
            pymilvus.AnnSearchRequest(
                data=[vector.tolist()],
                anns_field="centroid",
                param={"metric_type": "IP", "params": self._search_params},
                limit=k,
                expr=expr,
            )
        ]
        if text:
            requests.append(
                pymilvus.AnnSearchRequest(
                    data=[text],
                    anns_field="sparse",
                    param={"metric_type": "BM25"},
                    limit=k,
                    expr=expr,
                )
            )
        hits = self.client.hybrid_search(
            self.collection,
            reqs=requests,
            ranker=pymilvus.RRFRanker(RRF_K),
            limit=2 * k,
            output_fields=["pmid", "centroid"],
        )[0]
        return {hit["pmid"]: hit["entity"]["centroid"] for hit in hits}

    def _zero_scored(
        self, scored: dict[str, float], allowed: np.ndarray | None, want: int
    ) -> dict[str, Any]:
        """The ``want`` lowest-positioned passing papers with no BM25 score (how the embedded
        path breaks the tie among zeros), with their centroids."""
        taken = {self.position[p] for p in scored}
        picked: list[str] = []
        for position in range(len(self.pmids)):
            if position in taken or (allowed is not None and not allowed[position]):
                continue
            picked.append(self.pmids[position])
            if len(picked) >= want:
                break
        if not picked:
            return {}
        rows = self.client.query(
            self.collection, filter=_in(picked), output_fields=["pmid", "centroid"]
        )
        return {row["pmid"]: row["centroid"] for row in rows}

    @staticmethod
    def _empty() -> Found:
        empty = np.zeros(0, dtype=np.float32)
        return Found(np.zeros(0, dtype=np.int64), empty, empty, 0.0)


def _in(pmids: Iterable[str]) -> str:
    return f"pmid in {_pmid_list(pmids)}"


# -- writing a collection ------------------------------------------------------------------------


def connect(uri: str) -> Any:
    """A ``MilvusClient`` for a Milvus Lite file or a cluster URI."""
    pymilvus = _pymilvus()
    if "://" not in uri:
        Path(uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # Lite keeps BM25 statistics per segment: let one flush hold a whole corpus of this
        # size in one segment (the memtable's default, 128 MB, holds ~25k papers).
        os.environ.setdefault("MILVUS_LITE_MEMTABLE_MEMORY_LIMIT_BYTES", str(2 << 30))
    try:
        return pymilvus.MilvusClient(uri)
    except Exception as error:  # the client's own exception types vary by version
        raise CarqaError(
            f"Cannot reach Milvus at {uri}: {error}",
            hint="Check CARQA_MILVUS_URI (a file path for Milvus Lite, http://host:19530 for "
            "a server), or unset CARQA_BACKEND to use the embedded index.",
        ) from error


def ensure_collection(
    client: Any,
    name: str,
    docs: PaperDocs,
    *,
    dense_index: str = "flat",
    on_progress: Callable[[int, int], None] | None = None,
) -> bool:
    """Write the collection ``name`` from ``docs`` unless it already holds them (same paper
    count). Returns True when it was written now. A half-written collection (a killed write)
    has the wrong count and is written again."""
    if client.has_collection(name):
        count = _count(client, name)
        if count == len(docs.pmids):
            client.load_collection(name)
            return False
        log.warning(
            "Milvus collection %s holds %d of %d papers: writing it again.",
            name,
            count,
            len(docs.pmids),
        )
        client.drop_collection(name)
    write_collection(client, name, docs, dense_index=dense_index, on_progress=on_progress)
    return True


def _count(client: Any, name: str) -> int:
    rows = client.query(name, filter="", output_fields=["count(*)"])
    return int(rows[0]["count(*)"]) if rows else 0


def write_collection(
    client: Any,
    name: str,
    docs: PaperDocs,
    *,
    dense_index: str = "flat",
    on_progress: Callable[[int, int], None] | None = None,
) -> None:
    """Create the collection (schema, BM25 function, indexes) and insert every paper."""
    pymilvus = _pymilvus()
    dim = int(docs.centroids.shape[1])
    schema = client.create_schema(auto_id=False, description="carqa papers")
    schema.add_field("pmid", pymilvus.DataType.VARCHAR, max_length=32, is_primary=True)
    schema.add_field(
        "terms",
        pymilvus.DataType.VARCHAR,
        max_length=MAX_TERMS_CHARS,
        enable_analyzer=True,
        analyzer_params={"tokenizer": "standard"},
    )
    schema.add_field("sparse", pymilvus.DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("centroid", pymilvus.DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("year", pymilvus.DataType.INT64)
    schema.add_field("is_seed", pymilvus.DataType.BOOL)
    schema.add_field("cited_by_seed", pymilvus.DataType.BOOL)
    schema.add_function(
        pymilvus.Function(
            name="bm25",
            function_type=pymilvus.FunctionType.BM25,
            input_field_names=["terms"],
            output_field_names=["sparse"],
        )
    )
    index_type, build, _ = DENSE_INDEXES[dense_index]
    params = client.prepare_index_params()
    params.add_index("centroid", index_type=index_type, metric_type="IP", params=dict(build))
    bm25 = {"bm25_k1": BM25_K1, "bm25_b": BM25_B}
    # A cluster reads the flat keys; Milvus Lite reads them from a nested "params".
    params.add_index(
        "sparse",
        index_type="SPARSE_INVERTED_INDEX",
        metric_type="BM25",
        params={**bm25, "params": bm25},
    )
    client.create_collection(name, schema=schema, index_params=params)
    total = len(docs.pmids)
    try:
        for begin in range(0, total, WRITE_BATCH):
            rows = []
            for i in range(begin, min(total, begin + WRITE_BATCH)):
                terms = " ".join(docs.terms(i))
                if len(terms.encode()) > MAX_TERMS_CHARS:
                    raise CarqaError(
                        f"Paper {docs.pmids[i]} has {len(terms)} characters of terms, more "
                        f"than Milvus holds in one field ({MAX_TERMS_CHARS}).",
                        hint="Use the embedded backend for this corpus.",
                    )
                rows.append(
                    {
                        "pmid": str(docs.pmids[i]),
                        "terms": terms,
                        "centroid": np.asarray(docs.centroids[i], np.float32).tolist(),
                        "year": int(docs.years[i]),
                        "is_seed": bool(docs.is_seed[i]),
                        "cited_by_seed": bool(docs.cited_by_seed[i]),
                    }
                )
            client.insert(name, rows)
            if on_progress is not None:
                on_progress(min(total, begin + WRITE_BATCH), total)
        client.flush(name)
        client.load_collection(name)
    except BaseException:
        client.drop_collection(name)  # never leave a half-written collection that looks whole
        raise
