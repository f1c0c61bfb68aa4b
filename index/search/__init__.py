"""The search index built from a corpus store: sentences and chunks, their embeddings, FAISS
indexes and SQLite metadata written atomically under a manifest (:mod:`.build`), and opened
again for answering (:mod:`.reader`)."""
