"""carqa: cited question answering over PubMed abstracts.

The package is four rooms, and data flows one way through them::

    carqa.index.corpus   get papers (PubMed through Bio.Entrez, MEDLINE XML, JSONL, snapshots)
          |              and keep them in a SQLite corpus store
    carqa.index.search   split them into sentences and chunks, embed them, write FAISS indexes
          |              with a manifest, and open them again for reading
    carqa.qa             retrieve, answer with cited sentences (or abstain), chat, evaluate
          |
    carqa.api            the HTTP API and the web chat widget
    carqa.cli            the ``carqa`` command (build, ask, chat, eval, serve, snapshot)

What every room shares lives here: the version, :mod:`carqa.settings` and :mod:`carqa.errors`.
A lower room never imports a higher one.
"""

__version__ = "0.1.0"
