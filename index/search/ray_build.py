"""``carqa build --runner ray``: the same build, its heavy steps run by Ray Data.

The in-process build reads the ``--from`` files, splits every paper into sentences and chunks,
and embeds the texts not in the embedding cache, one after the other in one process. Here each
of those steps is a Ray Data stage, so a cluster (``--ray-address`` / ``RAY_ADDRESS``; KubeRay or
``ray up``, see docs/scale.md) spreads them over its nodes, and ``ray.init()`` runs them locally:

- parse: one task per file, running our parser (:func:`carqa.index.corpus.sources.read_path`);
  the driver then applies duplicates and ``<DeleteCitation>`` in file order, as
  :func:`carqa.index.corpus.sources.load_sources` does (it *is* that function, fed the parsed
  items), so the corpus store holds exactly what the in-process build stores;
- chunk: :func:`carqa.index.search.chunking.chunk_paper` over batches of papers; ids are given
  on the driver in store order, so chunk and sentence ids are the in-process build's;
- embed: an actor pool, each actor holding our encoder (the build's verified ONNX export, else
  sentence-transformers) and encoding batches of similar-length texts. Vectors come back to the
  driver, which writes them to the embedding cache as they arrive: a killed build continues
  from the cache, as the in-process one does.

Everything else (the FAISS files, ``meta.sqlite``, the manifest, the atomic publish) is the
in-process build's own code; the manifest records ``runner: ray``. Progress: Ray Data's own
bars for each stage, and the build's bars around them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from carqa.errors import CarqaError, InputError

log = logging.getLogger(__name__)

RAY_ADDRESS_ENV = "RAY_ADDRESS"
WORKERS_ENV = "CARQA_RAY_WORKERS"
EMBED_BATCH = 512
"""Texts per actor call: the in-process build's cache window (``build.CACHE_FLUSH``)."""
CHUNK_BATCH = 256
"""Papers per chunking task."""


def _ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise InputError(
            "--runner ray needs Ray, which is not installed.",
            hint='Install the scale extra: pip install "carqa[scale]" (or pip install '
            '"ray[data]"), or drop --runner to build in-process.',
        ) from error
    return ray


@contextmanager
def ray_session(address: str | None = None, *, progress: bool = True) -> Iterator[Any]:
    """``ray.init`` for the duration of a build: ``address`` (or ``RAY_ADDRESS``) joins a
    cluster; none starts a local Ray on this machine. Shuts down only what it started."""
    ray = _ray()
    started = False
    if not ray.is_initialized():
        address = address or os.environ.get(RAY_ADDRESS_ENV) or None
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
                # The driver's carqa is what the workers import: a local Ray shares the venv; a
                # cluster's image installs the same carqa (docs/scale.md).
            )
        except Exception as error:  # Ray raises plain Exception/ConnectionError on start-up
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise CarqaError(
                f"Could not start or join {where}: {error}",
                hint="Check --ray-address / RAY_ADDRESS (ray://head:10001); a local Ray can "
                "time out starting on a busy machine: try again, or build without --runner.",
            ) from error
        started = True
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
    context.print_on_execution_start = False
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def workers() -> int:
    """Embedding actors: ``CARQA_RAY_WORKERS``, else one per CPU the Ray cluster has."""
    configured = os.environ.get(WORKERS_ENV)
    if configured:
        try:
            value = int(configured)
        except ValueError:
            value = 0
        if value <= 0:
            raise InputError(
                f"{WORKERS_ENV}={configured!r} is not a positive whole number.",
                hint=f"Set {WORKERS_ENV} to the number of embedding actors, or unset it.",
            )
        return value
    cpus = int(_ray().cluster_resources().get("CPU", 1))
    return max(1, cpus)


# -- parse ---------------------------------------------------------------------------------------


def read_files(paths: Sequence[Path], *, on_file: Callable[[int, int], None] | None = None) -> Any:
    """``load_sources(paths)``, each file parsed by a Ray task (see the module doc)."""
    from carqa.index.corpus.sources import expand_paths, load_sources

    ray = _ray()
    files = expand_paths(paths)
    dataset = ray.data.from_items(
        [{"file": n, "path": str(path)} for n, path in enumerate(files)],
        override_num_blocks=max(1, len(files)),
    ).flat_map(_parse_file)
    parsed: dict[int, list[tuple[int, Any]]] = {n: [] for n in range(len(files))}
    for row in dataset.iter_rows():
        parsed[int(row["file"])].append((int(row["seq"]), row["item"]))
    by_path = {
        str(path): [item for _, item in sorted(parsed[n], key=lambda pair: pair[0])]
        for n, path in enumerate(files)
    }
    return load_sources(files, on_file=on_file, read=lambda path: iter(by_path[str(path)]))


def _parse_file(row: dict[str, Any]) -> list[dict[str, Any]]:
    from carqa.index.corpus.sources import read_path

    return [
        {"file": row["file"], "seq": seq, "item": item}
        for seq, item in enumerate(read_path(Path(row["path"])))
    ]


# -- chunk ---------------------------------------------------------------------------------------


def chunk_all(papers: Sequence[Any], settings: Any) -> list[Any]:
    """``chunk_paper(paper, settings)`` of every paper, in order, by Ray tasks."""
    ray = _ray()
    if not papers:
        return []
    dataset = ray.data.from_items(
        [{"i": i, "paper": paper} for i, paper in enumerate(papers)],
        override_num_blocks=max(1, min(len(papers) // CHUNK_BATCH + 1, 4 * workers())),
    ).map_batches(
        _chunk_batch,
        fn_kwargs={"settings": settings},
        batch_size=CHUNK_BATCH,
        batch_format="pandas",
    )
    out: list[Any] = [None] * len(papers)
    for row in dataset.iter_rows():
        out[int(row["i"])] = row["pieces"]
    return out


def _chunk_batch(batch: Any, settings: Any) -> Any:
    """Chunks a batch of papers (one Ray task)."""
    from carqa.index.search.chunking import chunk_paper

    batch["pieces"] = [chunk_paper(paper, settings) for paper in batch["paper"]]
    return batch[["i", "pieces"]]


class RayChunker:
    """What ``build._chunk_corpus`` calls per paper, with every paper chunked by Ray first."""

    def __init__(self, store: Any, settings: Any) -> None:
        papers = list(store.papers())
        pieces = chunk_all(papers, settings)
        self._pieces = {paper.pmid: piece for paper, piece in zip(papers, pieces, strict=True)}

    def __call__(self, paper: Any, settings: Any) -> Any:
        return self._pieces[paper.pmid]


# -- embed ---------------------------------------------------------------------------------------


class _Encode:
    """One embedding actor: our encoder, loaded once, fed batches of texts."""

    def __init__(self, onnx_folder: str | None, spec: Any, threads: int) -> None:
        if onnx_folder is not None:
            from carqa.index.search.onnx_encoder import OnnxEncoder

            self.encoder: Any = OnnxEncoder(Path(onnx_folder), threads=threads)
        else:
            from carqa.index.search.embedding import TorchEncoder

            self.encoder = TorchEncoder(spec, threads=threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from carqa.index.search.embedder import BATCH_SIZE

        vectors = self.encoder.encode([str(t) for t in batch["text"]], batch_size=BATCH_SIZE)
        return {"i": batch["i"], "vector": np.asarray(vectors, dtype=np.float32)}


def embed_texts(
    texts: Sequence[str],
    *,
    onnx_folder: Path | None,
    spec: Any,
    on_vectors: Callable[[np.ndarray, np.ndarray], None],
) -> None:
    """Encode ``texts`` with a pool of actors; ``on_vectors(positions, vectors)`` is called on
    the driver as each batch comes back (in whatever order the pool finishes them)."""
    ray = _ray()
    if not len(texts):
        return
    pool = workers()
    # Batches of consecutive (similar-length) texts: each actor call pads little.
    dataset = ray.data.from_items(
        [{"i": i, "text": text} for i, text in enumerate(texts)],
        override_num_blocks=max(1, min(len(texts) // EMBED_BATCH + 1, 8 * pool)),
    ).map_batches(
        _Encode,
        fn_constructor_kwargs={
            "onnx_folder": str(onnx_folder) if onnx_folder is not None else None,
            "spec": spec,
            "threads": 1,
        },
        batch_size=EMBED_BATCH,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=pool),
        num_cpus=1,
    )
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        on_vectors(np.asarray(batch["i"], dtype=np.int64), np.asarray(batch["vector"]))


def ray_embedder_class() -> type:
    """``embedder.Embedder`` with its encoding step handed to :func:`embed_texts` (cache
    lookup, ordering and the cache writes stay the in-process build's)."""
    from carqa.index.search.embedder import Embedder, check_sample

    from carqa.progress import ProgressCallback

    class RayEmbedder(Embedder):
        def encode_new(
            self,
            unique: list[str],
            store: Callable[[Sequence[str], np.ndarray], None],
            on_progress: ProgressCallback,
        ) -> None:
            sample = check_sample(unique)
            folder = self.onnx_folder(sample) if self.backend in ("auto", "onnx") else None
            if folder is None and self.backend == "onnx":
                self._encoder(sample)  # raises the in-process build's error
            self.backend_used = "onnx" if folder is not None else "torch"
            label, done = f"Embedding ({self.backend_used}, Ray)", 0
            on_progress(label, done, len(unique))

            def arrived(positions: np.ndarray, vectors: np.ndarray) -> None:
                nonlocal done
                store([unique[p] for p in positions.tolist()], vectors)
                done += len(positions)
                on_progress(label, done, len(unique))

            embed_texts(unique, onnx_folder=folder, spec=self.spec, on_vectors=arrived)

    return RayEmbedder
