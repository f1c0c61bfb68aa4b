"""The corpus store: papers, abstract sections, references and seed → cited edges in SQLite.

Why SQLite: it is embedded (no server), ships with Python, and gives us transactions, so
``replace_corpus`` either installs the whole new corpus or — after a crash or an error halfway
through — leaves the previous one untouched. The index builder reads papers back from here, so
the store is the single hand-off point between getting a corpus (PubMed, files, snapshots) and
indexing it.

The file lives at ``<index_dir>/corpus.sqlite``. Lists (authors, MeSH terms, publication types)
are stored as JSON text; sections and references are child tables keyed by (pmid, position).

Each paper's **relation** to the seed (``seed``, ``cited``, ``citing``, ``similar``, ``file``)
is stored in ``papers.relation``, but the citation graph wins: the seed is always ``seed`` and
a paper the seed's references resolve to is always ``cited``. A NULL relation (a store written
before the column existed, which opening migrates by adding the column) means ``cited`` in a
corpus fetched from PubMed (the seed flow fetched nothing else) and ``file`` in one read from
``--from`` files.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from carqa.index.corpus.content_hash import corpus_hash
from carqa.index.corpus.models import RELATIONS, Paper, Reference, Section
from carqa.index.sqlite import SQLiteFile, connect

from carqa.errors import IndexCorrupt, InputError

STORE_FILENAME = "corpus.sqlite"
SCHEMA_VERSION = 2
"""2 added ``papers.relation``; a version 1 store is migrated when opened."""
_MIGRATABLE = {"1"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT
);
CREATE TABLE IF NOT EXISTS papers (
    pmid              TEXT PRIMARY KEY,
    title             TEXT,
    journal           TEXT,
    year              INTEGER,
    authors           TEXT NOT NULL DEFAULT '[]',
    doi               TEXT,
    mesh              TEXT NOT NULL DEFAULT '[]',
    publication_types TEXT NOT NULL DEFAULT '[]',
    source            TEXT NOT NULL DEFAULT '',
    relation          TEXT
);
CREATE TABLE IF NOT EXISTS sections (
    pmid     TEXT NOT NULL REFERENCES papers(pmid) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    label    TEXT,
    category TEXT,
    text     TEXT NOT NULL,
    PRIMARY KEY (pmid, position)
);
CREATE TABLE IF NOT EXISTS refs (
    pmid      TEXT NOT NULL REFERENCES papers(pmid) ON DELETE CASCADE,
    position  INTEGER NOT NULL,
    citation  TEXT,
    ref_pmid  TEXT,
    ref_doi   TEXT,
    PRIMARY KEY (pmid, position)
);
CREATE INDEX IF NOT EXISTS refs_by_ref_pmid ON refs(ref_pmid);
"""

_PMID_ORDER = "ORDER BY length(pmid), pmid"  # numeric order for all-digit PMIDs
_PAPER_COLUMNS = "pmid, title, journal, year, authors, doi, mesh, publication_types"


def check_index_dir(index_dir: Path) -> Path:
    """``index_dir``, after refusing one that exists as a file.

    ``--index-dir corpus.jsonl`` (the file meant for ``--from``) is an easy slip; without this
    check it surfaced as ``FileExistsError`` from ``mkdir`` or as a misleading "no corpus".
    """
    index_dir = Path(index_dir).expanduser()
    if index_dir.exists() and not index_dir.is_dir():
        raise InputError(
            f"{index_dir} is a file, not a directory: it cannot be an index directory.",
            hint="Pass a folder to --index-dir (or CARQA_INDEX_DIR); files to index go to --from.",
        )
    return index_dir


def make_index_dir(index_dir: Path) -> Path:
    """``index_dir``, created if needed; an :class:`InputError` (not ``OSError``) if it cannot
    be: it is a file, sits under a file, or may not be created here."""
    index_dir = check_index_dir(index_dir)
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(
            f"Cannot create the index directory {index_dir}: {error.strerror or error}.",
            hint="Pass a folder you can write to --index-dir (or CARQA_INDEX_DIR).",
        ) from error
    return index_dir


class CorpusStore(SQLiteFile):
    """One corpus in one SQLite file. Every write method is a single transaction.

    Use as a context manager (``with CorpusStore.open(index_dir) as store: ...``) or call
    :meth:`close`. Not shared across threads: open one per thread.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        make_index_dir(self.path.parent)
        try:
            self._conn = connect(self.path, _SCHEMA, pragmas=["foreign_keys = ON"])
            version = self._get_meta("schema_version")
            self._has_relation = True
            if version is None:
                with self._conn:
                    self._set_meta("schema_version", str(SCHEMA_VERSION))
            elif version in _MIGRATABLE:
                self._migrate()
            elif version != str(SCHEMA_VERSION):
                raise IndexCorrupt(
                    f"Corpus store {self.path} has schema version {version}; "
                    f"this carqa expects {SCHEMA_VERSION}.",
                    hint="Rebuild the corpus with `carqa build` or import a snapshot.",
                )
        except sqlite3.DatabaseError as error:
            raise IndexCorrupt(
                f"Corpus store {self.path} is not a readable SQLite database ({error}).",
                hint="Delete it and rebuild with `carqa build` (or `carqa snapshot import`).",
            ) from error

    def _migrate(self) -> None:
        """Version 1 → 2: add ``papers.relation`` (NULL: see the module docstring), in one
        transaction. A store that cannot be written (a read-only copy) is read as it is."""
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(papers)")}
        try:
            with self._conn:
                if "relation" not in columns:
                    self._conn.execute("ALTER TABLE papers ADD COLUMN relation TEXT")
                self._set_meta("schema_version", str(SCHEMA_VERSION))
        except sqlite3.OperationalError:
            self._has_relation = "relation" in columns

    @classmethod
    def open(cls, index_dir: Path) -> CorpusStore:
        """The store of an index directory: ``<index_dir>/corpus.sqlite``."""
        return cls(Path(index_dir) / STORE_FILENAME)

    # -- writing ---------------------------------------------------------------------------

    def replace_corpus(
        self, papers: Iterable[Paper], *, seed_pmid: str | None = None, source: str = ""
    ) -> None:
        """Make the corpus exactly ``papers`` (and ``seed_pmid`` the seed), in one transaction.

        ``papers`` may be a generator: if it raises halfway, the old corpus stays.
        """
        with self._conn:
            self._conn.execute("DELETE FROM refs")
            self._conn.execute("DELETE FROM sections")
            self._conn.execute("DELETE FROM papers")
            for paper in papers:
                self._upsert(paper, source)
            self._set_meta("seed_pmid", seed_pmid)
            self._set_meta("source", source)
            self._touch()

    def add_papers(
        self, papers: Iterable[Paper], *, source: str = "", delete: Iterable[str] = ()
    ) -> list[str]:
        """Insert or replace ``papers`` (by pmid) and remove the papers whose pmids are in
        ``delete`` (a MEDLINE update's DeleteCitation), keeping everything else, in one
        transaction. Returns the pmids in ``delete`` that were stored (and are now removed).
        Deletions are applied first: a pmid both deleted and in ``papers`` stays, as given."""
        removed: list[str] = []
        with self._conn:
            for pmid in dict.fromkeys(delete):
                if self._conn.execute("SELECT 1 FROM papers WHERE pmid = ?", (pmid,)).fetchone():
                    self._conn.execute("DELETE FROM refs WHERE pmid = ?", (pmid,))
                    self._conn.execute("DELETE FROM sections WHERE pmid = ?", (pmid,))
                    self._conn.execute("DELETE FROM papers WHERE pmid = ?", (pmid,))
                    removed.append(pmid)
            for paper in papers:
                self._upsert(paper, source)
            self._touch()
        return removed

    def set_seed_pmid(self, seed_pmid: str | None) -> None:
        """Mark which paper is the seed review (used when ``--add`` brings in a seed)."""
        with self._conn:
            self._set_meta("seed_pmid", seed_pmid)
            self._touch()

    def _upsert(self, paper: Paper, source: str) -> None:
        pmid = paper.pmid
        self._conn.execute("DELETE FROM refs WHERE pmid = ?", (pmid,))
        self._conn.execute("DELETE FROM sections WHERE pmid = ?", (pmid,))
        self._conn.execute(
            "INSERT OR REPLACE INTO papers (pmid, title, journal, year, authors, doi, mesh,"
            " publication_types, source, relation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*paper_row(paper), source, paper.relation),
        )
        self._conn.executemany(
            "INSERT INTO sections (pmid, position, label, category, text) VALUES (?, ?, ?, ?, ?)",
            section_rows(paper),
        )
        self._conn.executemany(
            "INSERT INTO refs (pmid, position, citation, ref_pmid, ref_doi) VALUES (?, ?, ?, ?, ?)",
            [(pmid, i, r.citation, r.pmid, r.doi) for i, r in enumerate(paper.references)],
        )

    # -- reading ---------------------------------------------------------------------------

    def papers(self) -> Iterator[Paper]:
        """Every paper, ordered by pmid, with sections, references and its relation to the
        seed (:meth:`relations`) filled in."""
        relations = self.relations()
        rows = self._conn.execute(f"SELECT {_PAPER_COLUMNS} FROM papers {_PMID_ORDER}").fetchall()
        for row in rows:
            yield self._paper_from_row(row, relations[row[0]])

    def paper(self, pmid: str) -> Paper | None:
        row = self._conn.execute(
            f"SELECT {_PAPER_COLUMNS} FROM papers WHERE pmid = ?", (pmid,)
        ).fetchone()
        return None if row is None else self._paper_from_row(row, self.relations()[row[0]])

    def relations(self) -> dict[str, str]:
        """Every stored paper's relation to the seed (module docstring: the citation graph
        first, then the stored value, then what the corpus's source implies)."""
        seed = self.seed_pmid()
        cited = self.cited_pmids()
        fallback = "cited" if self.source().startswith("pubmed:") else "file"
        column = "relation" if self._has_relation else "NULL"
        found: dict[str, str] = {}
        for pmid, stored in self._conn.execute(f"SELECT pmid, {column} FROM papers"):
            if pmid == seed:
                found[pmid] = "seed"
            elif pmid in cited:
                found[pmid] = "cited"
            else:
                found[pmid] = stored if stored in RELATIONS else fallback
        return found

    def relation_counts(self) -> dict[str, int]:
        """Papers per relation, in :data:`RELATIONS` order (relations with none left out)."""
        counts: dict[str, int] = {}
        for relation in self.relations().values():
            counts[relation] = counts.get(relation, 0) + 1
        return {relation: counts[relation] for relation in RELATIONS if relation in counts}

    def set_meta(self, key: str, value: str | None) -> None:
        """Remember one build setting (e.g. the expansion ``--update`` repeats)."""
        with self._conn:
            self._set_meta(f"build:{key}", value)

    def get_meta(self, key: str) -> str | None:
        return self._get_meta(f"build:{key}")

    def pmids(self) -> list[str]:
        """All pmids in the store, in the same order as :meth:`papers`."""
        return [r[0] for r in self._conn.execute(f"SELECT pmid FROM papers {_PMID_ORDER}")]

    def seed_pmid(self) -> str | None:
        return self._get_meta("seed_pmid")

    def source(self) -> str:
        """What the corpus was last replaced from (e.g. ``pubmed:doi:...`` or a file list)."""
        return self._get_meta("source") or ""

    def updated_at(self) -> str | None:
        return self._get_meta("updated_at")

    def cited_pmids(self) -> set[str]:
        """PMIDs the seed's references resolve to (empty without a seed), never the seed's
        own: a reference list that names the review itself (an erratum's link, a slip in the
        deposited list) made the seed count as a paper it cites, in the counts and in the
        index's "cited" filter, unlike the fetch report."""
        seed = self.seed_pmid()
        if seed is None:
            return set()
        rows = self._conn.execute(
            "SELECT DISTINCT ref_pmid FROM refs WHERE pmid = ? AND ref_pmid IS NOT NULL"
            " AND ref_pmid != ?",
            (seed, seed),
        )
        return {r[0] for r in rows}

    def unresolved_references(self) -> list[Reference]:
        """The seed's references that have no PMID (citation text kept so they can be listed)."""
        seed = self.seed_pmid()
        if seed is None:
            return []
        rows = self._conn.execute(
            "SELECT citation, ref_pmid, ref_doi FROM refs WHERE pmid = ? AND ref_pmid IS NULL"
            " ORDER BY position",
            (seed,),
        )
        return [Reference(citation=c, pmid=p, doi=d) for c, p, d in rows]

    def content_hash(self) -> str:
        """sha256 over every paper's content and the seed pmid; independent of insert order.

        Each paper is hashed on its own (canonical JSON), the per-paper digests are sorted and
        hashed together, so the same corpus always gives the same hash however it was loaded.
        """
        return corpus_hash(self.papers(), self.seed_pmid())

    def counts(self) -> dict[str, int]:
        """Sizes for summaries: papers, with_abstract, title_only, sections, references of the
        seed (total/resolved/unresolved), cited papers present in the corpus, has_seed."""
        one = self._scalar
        papers = one("SELECT count(*) FROM papers")
        with_abstract = one(
            "SELECT count(*) FROM papers p WHERE EXISTS (SELECT 1 FROM sections s"
            " WHERE s.pmid = p.pmid AND trim(s.text) != '')"
        )
        seed = self.seed_pmid()
        cited = self.cited_pmids()
        present = set(self.pmids()) & cited if cited else set()
        seed_refs = one("SELECT count(*) FROM refs WHERE pmid = ?", (seed,)) if seed else 0
        seed_unresolved = (
            one("SELECT count(*) FROM refs WHERE pmid = ? AND ref_pmid IS NULL", (seed,))
            if seed
            else 0
        )
        return {
            "papers": papers,
            "with_abstract": with_abstract,
            "title_only": papers - with_abstract,
            "sections": one("SELECT count(*) FROM sections"),
            "references": one("SELECT count(*) FROM refs"),
            "seed_references": seed_refs,
            "seed_references_resolved": seed_refs - seed_unresolved,
            "seed_references_unresolved": seed_unresolved,
            "cited_pmids": len(cited),
            "cited_in_corpus": len(present),
            "has_seed": int(seed is not None and self.paper(seed) is not None),
        }

    # -- plumbing --------------------------------------------------------------------------

    def _paper_from_row(self, row: tuple, relation: str) -> Paper:
        pmid, title, journal, year, authors, doi, mesh, publication_types = row
        sections = [
            Section(text=text, label=label, category=category)
            for label, category, text in self._conn.execute(
                "SELECT label, category, text FROM sections WHERE pmid = ? ORDER BY position",
                (pmid,),
            )
        ]
        references = [
            Reference(citation=citation, pmid=ref_pmid, doi=ref_doi)
            for citation, ref_pmid, ref_doi in self._conn.execute(
                "SELECT citation, ref_pmid, ref_doi FROM refs WHERE pmid = ? ORDER BY position",
                (pmid,),
            )
        ]
        return Paper(
            pmid=pmid,
            title=title,
            journal=journal,
            year=year,
            authors=json.loads(authors),
            doi=doi,
            mesh=json.loads(mesh),
            publication_types=json.loads(publication_types),
            sections=sections,
            references=references,
            relation=relation,
        )

    def _scalar(self, sql: str, params: tuple = ()) -> int:
        return int(self._conn.execute(sql, params).fetchone()[0])

    def _get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: str | None) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _touch(self) -> None:
        self._set_meta("updated_at", datetime.now(UTC).isoformat(timespec="seconds"))


def paper_row(
    paper: Paper,
) -> tuple[str, str | None, str | None, int | None, str, str | None, str, str]:
    """A paper's columns as the corpus store and an index's ``meta.sqlite`` both keep them:
    pmid, title, journal, year, authors, doi, mesh, publication_types (lists as JSON text)."""
    return (
        paper.pmid,
        paper.title,
        paper.journal,
        paper.year,
        json.dumps(list(paper.authors)),
        paper.doi,
        json.dumps(list(paper.mesh)),
        json.dumps(list(paper.publication_types)),
    )


def section_rows(paper: Paper) -> list[tuple[str, int, str | None, str | None, str]]:
    """A paper's ``sections`` rows (store and ``meta.sqlite``): pmid, position, label,
    category, text."""
    return [(paper.pmid, i, s.label, s.category, s.text) for i, s in enumerate(paper.sections)]
