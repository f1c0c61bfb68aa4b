"""The baseline carqa is measured against: the naive LangChain RAG retrieval pipeline.

RecursiveCharacterTextSplitter(1000/100) over each abstract, langchain-community's in-memory
``FAISS`` vector store with HuggingFace (sentence-transformers) embeddings of the same model,
and ``similarity_search(k=4)`` per question. Built in memory only: nothing is loaded from disk
with ``FAISS.load_local`` (which unpickles).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class NaivePipeline:
    store: Any
    chunks: int
    build_seconds: float

    def top_pmids(self, question: str, k: int = 4) -> list[str]:
        return [doc.metadata["pmid"] for doc in self.store.similarity_search(question, k=k)]


def corpus_texts(corpus: Path) -> list[tuple[str, str]]:
    """(pmid, abstract text) for each line of a pubmedqa-shaped JSONL corpus."""
    papers = []
    with corpus.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if "abstract" in record:
                text = record["abstract"]
            else:
                parts = [section["text"] for section in record.get("sections", [])]
                if record.get("conclusion"):
                    parts.append(record["conclusion"])
                text = "\n".join(parts)
            papers.append((str(record["pmid"]), text))
    return papers


def build_naive_pipeline(corpus: Path, model_path: str) -> NaivePipeline:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from langchain_community.embeddings import HuggingFaceEmbeddings
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    started = time.perf_counter()
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=100)
    documents = [
        Document(page_content=chunk, metadata={"pmid": pmid})
        for pmid, text in corpus_texts(corpus)
        for chunk in splitter.split_text(text)
    ]
    embeddings = HuggingFaceEmbeddings(
        model_name=model_path,
        model_kwargs={"device": "cpu"},
        encode_kwargs={"normalize_embeddings": True},
    )
    store = FAISS.from_documents(documents, embeddings)
    return NaivePipeline(store, len(documents), time.perf_counter() - started)
