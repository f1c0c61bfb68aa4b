"""PubMed/MEDLINE XML made readable by Bio.Entrez without a network call.

Bio.Entrez refuses a document that does not begin with an XML declaration (optional in XML),
and downloads the DTD its DOCTYPE names when Biopython does not ship it (the 2016 MEDLINE DTD,
say). Reading a local file must never reach the network, so :func:`with_known_dtd` serves the
document's first bytes fixed: a UTF-8 byte order mark and leading whitespace dropped, a missing
declaration supplied, a DOCTYPE naming an unknown DTD pointed at the closest version Biopython
ships, and a missing DOCTYPE added for the record sets we know. The rest of the stream is
passed through unread, so a multi-GB baseline file is never held in memory.
"""

from __future__ import annotations

import os
import re
from functools import cache
from typing import IO

from Bio.Entrez.Parser import DataHandler

_DOCTYPE = re.compile(rb"<!DOCTYPE\s+(\w+)\s+PUBLIC\s+\"([^\"]*)\"\s+\"([^\"]+)\"\s*>")
_DTD_NAME = re.compile(r"^(?P<family>[a-z_]+?)_?(?P<version>\d{6})\.dtd$")

_HEAD_BYTES = 8192
_UTF8_BOM = b"\xef\xbb\xbf"
_XML_DECLARATION = b'<?xml version="1.0"?>\n'

# Record sets we can parse without a DOCTYPE in the file: the DTD Biopython should use.
_DEFAULT_DOCTYPES = {
    b"PubmedArticleSet": (
        b'<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle//EN" '
        b'"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">'
    ),
    b"MedlineCitationSet": (
        b'<!DOCTYPE MedlineCitationSet PUBLIC "-//NLM//DTD Medline Citation//EN" '
        b'"https://www.nlm.nih.gov/databases/dtd/nlmmedlinecitationset_150101.dtd">'
    ),
}


class PrefixedStream:
    """A binary stream that first serves ``head`` (possibly rewritten), then the rest of
    ``raw``: lets us fix the DOCTYPE without reading a multi-GB baseline file into memory."""

    def __init__(self, head: bytes, raw: IO[bytes]) -> None:
        self._head = head
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            data, self._head = self._head + self._raw.read(), b""
            return data
        if self._head:
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._raw.read(size)


def with_known_dtd(raw: IO[bytes]) -> PrefixedStream:
    """Wrap ``raw`` so it starts with an XML declaration and its DOCTYPE names a DTD that
    Biopython has locally (see the module docstring)."""
    head = raw.read(_HEAD_BYTES)
    return PrefixedStream(_fix_doctype(_fix_declaration(head)), raw)


def _fix_declaration(head: bytes) -> bytes:
    """``head`` starting with ``<?xml``: BOM and leading whitespace dropped, the declaration
    added when the document starts with a tag without one. Anything not starting with ``<``
    is left alone, so non-XML input is still reported as such by Bio.Entrez."""
    stripped = head.removeprefix(_UTF8_BOM).lstrip(b" \t\r\n")
    if stripped.startswith(b"<?xml"):
        return stripped
    if stripped.startswith(b"<"):
        return _XML_DECLARATION + stripped
    return head


def _fix_doctype(head: bytes) -> bytes:
    match = _DOCTYPE.search(head)
    if match is None:
        for root, doctype in _DEFAULT_DOCTYPES.items():
            position = head.find(b"<" + root)
            if position >= 0 and b"<!DOCTYPE" not in head[:position]:
                return head[:position] + doctype + b"\n" + head[position:]
        return head
    system_id = match.group(3).decode("ascii", "replace")
    directory, _, filename = system_id.rpartition("/")
    replacement = _shipped_dtd_for(filename)
    if replacement is None or replacement == filename:
        return head
    new_system = f"{directory}/{replacement}" if directory else replacement
    start, end = match.span(3)
    return head[:start] + new_system.encode("ascii") + head[end:]


def _shipped_dtd_for(filename: str) -> str | None:
    """``filename`` if Biopython has it, else the closest shipped version of the same DTD."""
    available = _local_dtds()
    if filename in available:
        return filename
    wanted = _DTD_NAME.match(filename)
    if wanted is None:
        return None
    family, version = wanted.group("family"), wanted.group("version")
    versions = sorted(
        (m.group("version"), name)
        for name in available
        if (m := _DTD_NAME.match(name)) and m.group("family") == family
    )
    if not versions:
        return None
    older = [name for v, name in versions if v <= version]
    return older[-1] if older else versions[-1][1]


@cache
def _local_dtds() -> frozenset[str]:
    names: set[str] = set()
    for directory in (DataHandler.global_dtd_dir, DataHandler.local_dtd_dir):
        if directory and os.path.isdir(directory):
            names.update(os.listdir(directory))
    return frozenset(names)
