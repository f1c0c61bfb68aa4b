"""Which engine answers the candidate step of retrieval: ``CARQA_BACKEND``.

- ``embedded`` (the default): the opened index itself — paper centroids with FAISS and BM25 with
  bm25s, in the serving process (``carqa.qa.candidates``). Nothing to install or run.
- ``milvus``: a Milvus collection written from the published build
  (:mod:`carqa.index.search.milvus`): Milvus Lite in a local file (``CARQA_MILVUS_URI``, default
  ``<index_dir>/milvus.db``) or a Milvus server (``http://host:19530``).

The retriever asks :func:`open_backend` for a backend and, when it gets one, hands it the papers
(centroids, analysed terms, filter fields) it would otherwise search itself; the backend returns
a candidate source with the same ``candidates`` method. The retriever never learns which engine
it talks to, and both give the same candidates for the same question.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from carqa.errors import InputError
from carqa.progress import ProgressCallback

log = logging.getLogger(__name__)

BACKENDS = ("embedded", "milvus")
WRITING = "Writing to Milvus"


@dataclass(frozen=True)
class PaperDocs:
    """What the collection holds per paper, by position (papers in sorted pmid order, as the
    retriever numbers them): the centroid, the analysed BM25 terms and the filter fields."""

    pmids: Sequence[str]
    centroids: np.ndarray
    terms: Callable[[int], Sequence[str]]
    years: np.ndarray  # -1 for a paper without a year
    is_seed: np.ndarray
    cited_by_seed: np.ndarray


class SearchBackend(Protocol):
    """An engine that answers the candidate step for one opened index."""

    name: str

    def source(self, docs: PaperDocs, *, expansion_weight: float) -> Any:
        """A candidate source (``carqa.qa.candidates.CandidateSource``) over ``docs``, writing
        the engine's copy of them first when it does not hold them yet."""
        ...


@dataclass
class MilvusBackend:
    """Milvus Lite or a Milvus server, one collection per published build."""

    uri: str
    collection: str
    dense_index: str = "flat"
    name: str = "milvus"
    on_progress: ProgressCallback | None = None
    """Progress of writing the collection (``carqa build --backend milvus`` shows it)."""

    def source(self, docs: PaperDocs, *, expansion_weight: float) -> Any:
        from carqa.index.search import milvus

        client = milvus.connect(self.uri)
        report = self.on_progress
        written = milvus.ensure_collection(
            client,
            self.collection,
            docs,
            dense_index=self.dense_index,
            on_progress=None if report is None else lambda n, of: report(WRITING, n, of),
        )
        if written:
            log.info(
                "Wrote %d papers to Milvus collection %s at %s.",
                len(docs.pmids),
                self.collection,
                self.uri,
            )
        source = milvus.MilvusSource(
            client,
            self.collection,
            docs.pmids,
            expansion_weight=expansion_weight,
            dense_index=self.dense_index,
        )
        try:
            source.warm_up()
        except Exception as error:  # only a head start: the questions still get answered
            log.warning("Milvus warm-up failed (%s): the first question will be slower.", error)
        return source


def check_backend(settings: Any) -> None:
    """Raise the :class:`InputError` :func:`open_backend` would raise for a backend whose
    client is not installed, without opening anything."""
    if (getattr(settings, "backend", None) or "embedded").lower() == "milvus":
        from carqa.index.search import milvus

        milvus._pymilvus()


def open_backend(
    settings: Any,
    manifest: dict[str, Any],
    index_dir: Path,
    *,
    on_progress: ProgressCallback | None = None,
) -> SearchBackend | None:
    """The backend ``settings.backend`` names for the build ``manifest`` describes; None for
    the embedded one (the retriever searches the index itself). ``on_progress``: of writing
    the engine's copy of the build, when it is written."""
    choice = (getattr(settings, "backend", None) or "embedded").lower()
    if choice == "embedded":
        return None
    if choice == "milvus":
        from carqa.index.search import milvus

        uri = getattr(settings, "milvus_uri", None) or milvus.default_uri(index_dir)
        dense = (getattr(settings, "milvus_index", None) or "flat").lower()
        if dense not in milvus.DENSE_INDEXES:
            raise InputError(
                f"Unknown Milvus index {dense!r}.",
                hint=f"Set CARQA_MILVUS_INDEX to one of {', '.join(milvus.DENSE_INDEXES)}.",
            )
        milvus._pymilvus()  # a clear error now, not when the first question comes
        name = milvus.collection_name(manifest) + ("" if dense == "flat" else f"_{dense}")
        return MilvusBackend(
            uri=str(uri), collection=name, dense_index=dense, on_progress=on_progress
        )
    raise InputError(
        f"Unknown search backend {choice!r}.",
        hint=f"Set CARQA_BACKEND to one of: {', '.join(BACKENDS)}.",
    )
