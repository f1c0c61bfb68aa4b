"""carqa's answering layer: retrieval over a :mod:`carqa.index` search index, cited answers,
chat sessions, evaluation."""
