"""Offline corpus sources: JSONL files, PubMed/MEDLINE XML files, and directories of them.

These are what ``carqa build --from PATH`` reads, for machines without PubMed access (CI) and
for bringing your own abstracts. Every source produces the same
:class:`carqa.index.corpus.models.Paper` objects the PubMed path produces, so everything
downstream is shared.

JSONL: one JSON object a line, with ``pmid`` and either

* ``sections``: a list of ``{"label", "text"}`` (optionally ``"category"``), plus an optional
  ``conclusion`` string kept as a final section labelled ``CONCLUSIONS``; or
* ``abstract``: one unlabelled text;

and optionally ``title``, ``year``, ``mesh``, ``journal``, ``doi``, ``authors``,
``publication_types``, ``is_seed`` (bool: this paper is the seed review), ``relation`` (how the
paper relates to the seed: ``seed``, ``cited``, ``citing``, ``similar`` or ``file``; snapshots
write it) and ``references`` (cited pmids as strings, or ``{"citation", "pmid", "doi"}``
objects). A first line of the form
``{"format": "carqa-snapshot", ...}`` (see :mod:`carqa.index.corpus.snapshot`) is a header and is
skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carqa.index.corpus.files import open_binary
from carqa.index.corpus.inline_labels import inline_sections
from carqa.index.corpus.models import (
    RELATIONS,
    Deletion,
    Paper,
    Reference,
    Section,
    nlm_category,
)

from carqa.errors import InputError

CONCLUSION_LABEL = "CONCLUSIONS"
SNAPSHOT_FORMAT = "carqa-snapshot"

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")
XML_SUFFIXES = (".xml", ".xml.gz")

_YEAR = re.compile(r"(1[89]\d\d|20\d\d)")
PMID = re.compile(r"[0-9]{1,10}")
"""A PubMed id: what citations link to (pubmed.ncbi.nlm.nih.gov/PMID/) and the API accepts."""


@dataclass
class LoadedCorpus:
    """Papers read from offline sources, with the seed (if a JSONL line said ``is_seed``).

    ``papers`` holds one entry per pmid: the later line or file wins. The dropped entries are
    counted apart because they mean different things to the user: a pmid repeated inside one
    file (``duplicates_within``: file → the repeated pmids) is usually a mistake in that file,
    one carried by several files (``duplicates_across_files``) is usually an update.

    ``deleted`` holds the PMIDs that a MEDLINE ``<DeleteCitation>`` withdrew and no later
    record brought back (PMID → the file that deleted it), in file order; those are not in
    ``papers``. ``deleted_here`` is the part of them that removed a paper an earlier file of
    the same run held (the rest are for the stored corpus, with ``--add``, to remove).
    """

    papers: list[Paper] = field(default_factory=list)
    seed_pmid: str | None = None
    files: list[Path] = field(default_factory=list)
    duplicates_across_files: int = 0
    duplicates_within: dict[Path, list[str]] = field(default_factory=dict)
    deleted: dict[str, Path] = field(default_factory=dict)
    deleted_here: set[str] = field(default_factory=set)

    @property
    def duplicates(self) -> int:
        """Every entry dropped because a later one had the same pmid."""
        return self.duplicates_across_files + sum(map(len, self.duplicates_within.values()))

    @property
    def source(self) -> str:
        return "files:" + ",".join(str(path) for path in self.files)


def load_sources(
    paths: Sequence[Path],
    *,
    on_file: Callable[[int, int], None] | None = None,
    read: Callable[[Path], Iterable[tuple[Paper, bool] | Deletion]] | None = None,
) -> LoadedCorpus:
    """Read every file (or directory of files) in ``paths`` into one corpus.

    ``on_file(done, total)`` is called after each file (for progress bars). ``read`` gives a
    file's items (default :func:`read_path`); the Ray build passes the items its workers
    parsed, so duplicates and deletions are applied here, in file order, either way."""
    read = read or read_path
    files = expand_paths(paths)
    by_pmid: dict[str, Paper] = {}
    corpus = LoadedCorpus(files=files)
    for number, path in enumerate(files, start=1):
        in_this_file: set[str] = set()
        for item in read(path):
            if isinstance(item, Deletion):
                for pmid in item.pmids:
                    if by_pmid.pop(pmid, None) is not None:
                        corpus.deleted_here.add(pmid)
                    in_this_file.discard(pmid)
                    corpus.deleted[pmid] = path
                continue
            paper, is_seed = item
            if paper.pmid in corpus.deleted:  # deleted, then added again by a later record
                del corpus.deleted[paper.pmid]
                corpus.deleted_here.discard(paper.pmid)
            if paper.pmid in in_this_file:
                corpus.duplicates_within.setdefault(path, []).append(paper.pmid)
            elif paper.pmid in by_pmid:
                corpus.duplicates_across_files += 1
            in_this_file.add(paper.pmid)
            by_pmid[paper.pmid] = paper
            if is_seed:
                corpus.seed_pmid = paper.pmid
        if on_file is not None:
            on_file(number, len(files))
    corpus.papers = list(by_pmid.values())
    return corpus


def expand_paths(paths: Sequence[Path]) -> list[Path]:
    """Files to read: each path itself, or a directory's XML/JSONL files in name order.

    A directory's hidden files are skipped: macOS leaves ``._name.xml`` (AppleDouble, binary)
    beside every file copied to a foreign disk, and one such file failed the whole build. A
    hidden file named on its own is read."""
    if not paths:
        raise InputError("No source files given.", hint="Pass --from FILE (XML or JSONL).")
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and not p.name.startswith(".") and _kind(p) is not None
            )
            if not found:
                raise InputError(
                    f"{path} contains no .xml, .xml.gz, .jsonl or .jsonl.gz files.",
                    hint="Point --from at PubMed/MEDLINE XML or JSONL files.",
                )
            files.extend(found)
        elif path.is_file():
            if _kind(path) is None:
                raise InputError(
                    f"Don't know how to read {path}.",
                    hint="--from accepts .xml, .xml.gz (PubMed/MEDLINE), .jsonl, .jsonl.gz "
                    "files, or a directory of them.",
                )
            files.append(path)
        else:
            raise InputError(f"{path} does not exist.", hint="Check the path given to --from.")
    return files


def read_path(path: Path) -> Iterator[tuple[Paper, bool] | Deletion]:
    """(paper, is_seed) pairs from one file, dispatching on its suffix; an XML file's
    ``<DeleteCitation>`` blocks come as :class:`Deletion` items, in document order."""
    kind = _kind(path)
    if kind == "jsonl":
        yield from read_jsonl(path)
    elif kind == "xml":
        from carqa.index.corpus.pubmed_xml import (
            parse_file_items,  # lazy: keeps JSONL-only use light
        )

        for item in parse_file_items(path):
            yield item if isinstance(item, Deletion) else (item, False)
    else:
        raise InputError(f"Don't know how to read {path}.")


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(XML_SUFFIXES):
        return "xml"
    return None


def json_lines(
    lines: Iterable[str], path: Path, *, start: int = 1
) -> Iterator[tuple[int, str, Any]]:
    """``(line number, where, object)`` for each non-blank line of JSONL text read from
    ``path``; ``where`` ("<path>, line N") is for the caller's own messages. A line that is not
    JSON is an :class:`InputError` naming the file and line (``start``: the first line's
    number, when the caller has read lines before)."""
    for number, line in enumerate(lines, start=start):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(
                f"{where}: not valid JSON ({error.msg}).",
                hint="Each line must be one JSON object.",
            ) from None
        yield number, where, record


def read_jsonl(path: Path) -> Iterator[tuple[Paper, bool]]:
    """(paper, is_seed) for every line of a JSONL file; errors name the file and line.

    Lines are read as bytes and decoded one by one: a text stream decodes ahead in blocks, so
    a byte that is not UTF-8 would be reported without its line (or at the wrong one)."""
    try:
        with open_binary(path) as handle:
            decoded = (_decode_line(raw, path, n) for n, raw in enumerate(handle, start=1))
            for number, where, record in json_lines(decoded, path):
                if number == 1 and _is_snapshot_header(record):
                    continue
                yield paper_from_record(record, where=where)
    except (OSError, EOFError) as error:
        raise InputError(f"Could not read {path}: {error}") from None


def _decode_line(raw: bytes, path: Path, number: int) -> str:
    """One line as text: UTF-8, a byte order mark (as Windows editors write) dropped on the
    first line. Other bytes are an ``InputError`` naming the file, line and byte, the way
    ``carqa eval`` reports its question files."""
    try:
        return raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as error:
        raise InputError(
            f"{path}:{number}: not UTF-8 text (byte {raw[error.start]:#04x}).",
            hint="Save the file as UTF-8 (JSON text is UTF-8), e.g. "
            f"`iconv -f latin1 -t utf-8 {path.name} > fixed.jsonl`.",
        ) from None


def _is_snapshot_header(record: Any) -> bool:
    return isinstance(record, dict) and record.get("format") == SNAPSHOT_FORMAT


def paper_from_record(record: Any, *, where: str = "record") -> tuple[Paper, bool]:
    """Turn one JSON object (either pubmedqa shape or a snapshot line) into a Paper."""
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(record).__name__}.")
    pmid = record.get("pmid")
    if pmid is None or str(pmid).strip() == "":
        raise InputError(
            f"{where}: missing 'pmid'.", hint="Every line needs a 'pmid' (the PubMed id)."
        )
    if not isinstance(pmid, str | int) or isinstance(pmid, bool):
        raise InputError(f"{where}: 'pmid' must be a string or an integer.")
    pmid = str(pmid).strip()
    if not PMID.fullmatch(pmid):
        raise InputError(
            f"{where}: 'pmid' {pmid!r} is not a PubMed id.",
            hint="A PMID is 1 to 10 digits (citations link to pubmed.ncbi.nlm.nih.gov/PMID/).",
        )
    paper = Paper(
        pmid=pmid,
        title=_opt_str(record.get("title")),
        journal=_opt_str(record.get("journal")),
        year=_year(record.get("year"), where),
        authors=_str_list(record.get("authors"), "authors", where),
        doi=_opt_str(record.get("doi")),
        mesh=_str_list(record.get("mesh"), "mesh", where),
        publication_types=_str_list(record.get("publication_types"), "publication_types", where),
        sections=_sections(record, where),
        references=_references(record.get("references"), where),
        relation=_relation(record.get("relation"), where),
    )
    return paper, bool(record.get("is_seed", False))


def _relation(value: Any, where: str) -> str | None:
    """A stated relation to the seed (one of :data:`RELATIONS`), or None when not stated."""
    if value is None:
        return None
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text not in RELATIONS:
        raise InputError(
            f"{where}: 'relation' {value!r} is not one of {', '.join(RELATIONS)}.",
            hint="Leave 'relation' out when the paper has no link to a seed review.",
        )
    return text


def _sections(record: dict[str, Any], where: str) -> list[Section]:
    sections: list[Section] = []
    raw_sections = record.get("sections")
    if raw_sections is not None:
        if not isinstance(raw_sections, list):
            raise InputError(f"{where}: 'sections' must be a list of {{label, text}} objects.")
        for item in raw_sections:
            if isinstance(item, str):
                item = {"text": item}
            if not isinstance(item, dict) or not isinstance(item.get("text"), str):
                raise InputError(f"{where}: each section needs a 'text' string.")
            label = _opt_str(item.get("label"))
            # An explicit "category" (even null, as in snapshots) is kept as is; otherwise
            # a label that names an NLM category exactly gives the category.
            explicit = "category" in item
            category = _opt_str(item["category"]) if explicit else nlm_category(label)
            if item["text"].strip():
                sections.append(Section(text=item["text"].strip(), label=label, category=category))
        conclusion = record.get("conclusion")
        if isinstance(conclusion, str) and conclusion.strip():
            sections.append(
                Section(text=conclusion.strip(), label=CONCLUSION_LABEL, category=CONCLUSION_LABEL)
            )
    elif record.get("abstract") is not None:
        abstract = record["abstract"]
        if not isinstance(abstract, str):
            raise InputError(f"{where}: 'abstract' must be a string.")
        sections.extend(inline_sections(abstract))
    return sections


def _references(raw: Any, where: str) -> list[Reference]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InputError(f"{where}: 'references' must be a list.")
    references: list[Reference] = []
    for item in raw:
        if isinstance(item, str | int) and not isinstance(item, bool):
            references.append(Reference(pmid=_reference_pmid(item, where)))
        elif isinstance(item, dict):
            pmid = item.get("pmid")
            references.append(
                Reference(
                    citation=_opt_str(item.get("citation")),
                    pmid=None if pmid in (None, "") else _reference_pmid(pmid, where),
                    doi=_opt_str(item.get("doi")),
                )
            )
        else:
            raise InputError(f"{where}: each reference must be a pmid or an object.")
    return references


def _reference_pmid(value: Any, where: str) -> str:
    """A cited PMID, by the same rule as a paper's own: "PMC123" or "31501520.1" was stored
    and counted as a cited paper the corpus could never hold."""
    usable = isinstance(value, str | int) and not isinstance(value, bool)
    text = str(value).strip() if usable else ""
    if not PMID.fullmatch(text):
        raise InputError(
            f"{where}: reference {value!r} is not a PMID.",
            hint="A PMID is 1 to 10 digits; a reference without one is "
            '{"citation": "...", "pmid": null}.',
        )
    return text


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _str_list(value: Any, name: str, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise InputError(f"{where}: '{name}' must be a list of strings.")
    return [str(item) for item in value if str(item).strip()]


def _year(value: Any, where: str) -> int | None:
    """A publication year: an integer 1800-2099, or the first such year in a text ("2019",
    "2019-03-01", "1998 Dec-1999 Jan"); None when a text holds none. An integer outside that
    range is refused: 20190101 (a date) was stored as the year, and every year filter then
    missed the paper with no word why."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        if not 1800 <= value <= 2099:
            raise InputError(
                f"{where}: 'year' {value} is not a year.",
                hint="Give the publication year, e.g. 2019 (or a date as text, '2019-03-01').",
            )
        return value
    match = _YEAR.search(str(value))
    return int(match.group(1)) if match else None
