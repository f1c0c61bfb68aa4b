"""Getting papers: PubMed through Bio.Entrez (the seed review and what it cites), MEDLINE/PubMed
XML and JSONL files, snapshots; all become :class:`~carqa.index.corpus.models.Paper` objects kept
in one SQLite corpus store (:mod:`carqa.index.corpus.store`)."""
