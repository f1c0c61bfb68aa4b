"""What the loaded corpus is, and example questions it answers: for the demo page and widget.

A new user meets the page before knowing what was indexed. Examples written for one corpus
(CAR T cell therapy) are all refused on another (PubMedQA, a MEDLINE file), so the examples
are drawn from the corpus itself — titles that are questions, and its most frequent MeSH
headings as "What is known about ...?" — and each one is kept only if the engine answers it
(does not abstain). The CAR T seed review keeps its hand-written examples.

Drawing asks the engine a dozen questions (about a second), so it happens once per index
build: on first use, cached in ``examples.json`` next to the index (keyed by the build id),
or kept in memory when the index directory is read-only.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carqa.settings import SEED_DOI

logger = logging.getLogger("carqa.qa.examples")

EXAMPLES_FILE = "examples.json"
MAX_EXAMPLES = 4
MAX_TRIES = 14
CAR_T_MESH = "Receptors, Chimeric Antigen"
CAR_T_EXAMPLES = (
    "Why do some patients relapse after CD19 CAR T cell therapy?",
    "How is cytokine release syndrome treated?",
    "Why are solid tumours harder to treat with CAR T cells?",
    "What is known about CAR T cell exhaustion?",
)
GENERIC_MESH = {
    "humans", "animals", "male", "female", "adult", "aged", "middle aged", "child", "infant",
    "adolescent", "young adult", "aged, 80 and over", "child, preschool", "infant, newborn",
    "mice", "rats", "retrospective studies", "prospective studies", "follow-up studies",
    "treatment outcome", "risk factors", "time factors", "cohort studies",
    "cross-sectional studies", "questionnaires", "surveys and questionnaires", "pregnancy",
    "prognosis", "reproducibility of results", "sensitivity and specificity",
    "case-control studies", "incidence", "prevalence", "predictive value of tests",
    "risk assessment", "severity of illness index", "age factors", "sex factors", "survival rate",
    "logistic models", "multivariate analysis", "differential diagnosis", "united states",
    "regression analysis", "odds ratio", "proportional hazards models", "survival analysis",
    "kaplan-meier estimate", "length of stay", "hospitalization", "socioeconomic factors",
    "reference values", "linear models", "statistics, nonparametric", "data collection",
    "disease progression", "neoplasm staging", "health knowledge, attitudes, practice",
    "attitude of health personnel", "patient selection", "clinical competence", "algorithms",
    "models, biological", "dose-response relationship, drug", "decision making", "roc curve",
    "hospital mortality", "hospitals", "canada", "england", "japan", "china", "germany",
    "postoperative period", "preoperative care", "outcome assessment",
    "outcome assessment, health care", "quality improvement", "registries", "databases, factual",
    "longitudinal studies", "chi-square distribution", "acute disease", "chronic disease",
}  # fmt: skip
"""Check tags and study designs: in every corpus, and no topic to ask about."""
SOURCE_PREFIXES = ("files:", "pubmed:")


def describe(engine: Any) -> dict[str, Any]:
    """What is indexed, safe to show anyone: counts, years, the seed review (title and
    PubMed link) or the source *file names* (never their paths)."""
    index = getattr(engine, "index", None)
    if index is None:  # a stand-in engine (tests) or one that does not expose its index
        return {"papers": int(engine.stats().get("papers") or 0), "files": [], "seed": None}
    # One streaming pass: at a million papers a list of them would be a gigabyte.
    papers = with_abstract = 0
    year_from: int | None = None
    year_to: int | None = None
    seed = None
    for paper in index.papers.values():
        papers += 1
        with_abstract += bool(paper.has_abstract)
        if isinstance(paper.year, int):
            year_from = paper.year if year_from is None else min(year_from, paper.year)
            year_to = paper.year if year_to is None else max(year_to, paper.year)
        if seed is None and paper.is_seed:
            seed = paper
    source = _manifest_source(index)
    return {
        "papers": papers,
        "with_abstract": with_abstract,
        "year_from": year_from,
        "year_to": year_to,
        "source": "pubmed" if source.startswith("pubmed:") else "files" if source else None,
        "files": _file_names(source),
        "seed": None
        if seed is None
        else {
            "pmid": seed.pmid,
            "title": seed.title,
            "journal": seed.journal,
            "year": seed.year,
            "url": f"https://pubmed.ncbi.nlm.nih.gov/{seed.pmid}/",
        },
    }


def examples(engine: Any) -> list[str]:
    """Example questions the corpus answers: cached per build, drawn on first use."""
    index = getattr(engine, "index", None)
    if index is None:
        return []
    build_id = (getattr(index, "manifest", None) or {}).get("build_id")
    cache = Path(getattr(index, "index_dir", "") or ".") / EXAMPLES_FILE
    if build_id:
        try:
            saved = json.loads(cache.read_text(encoding="utf-8"))
            if saved.get("build_id") == build_id and isinstance(saved.get("examples"), list):
                return [str(q) for q in saved["examples"]]
        except (OSError, ValueError, AttributeError):
            pass
    drawn = draw(engine)
    if build_id:
        _save(cache, {"build_id": build_id, "examples": drawn})
    return drawn


def draw(engine: Any, *, limit: int = MAX_EXAMPLES) -> list[str]:
    """Up to ``limit`` questions the engine answers, from different papers where possible."""
    survey = Survey.of(engine.index.papers.values())
    if survey.car_t_seed:
        return list(CAR_T_EXAMPLES[:limit])
    chosen: list[str] = []
    for question in survey.candidates()[:MAX_TRIES]:
        try:
            answer = engine.ask(question, k=5)
        except Exception:  # an example is a nicety: never let it fail the page
            logger.exception("example question failed: %r", question)
            continue
        if not answer.abstained:
            chosen.append(question)
            if len(chosen) == limit:
                break
    return chosen


def candidates(papers: Iterable[Any]) -> list[str]:
    """Questions to try, alternating titles that are questions with the most frequent MeSH
    topics, in a stable order (the same corpus gives the same examples)."""
    return Survey.of(papers).candidates()


@dataclass
class Survey:
    """What drawing examples needs from every paper, gathered in one streaming pass: the
    titles that are questions (by pmid), how often each MeSH topic occurs, and whether the
    seed is a CAR T review. It holds a few thousand strings, never the papers themselves."""

    titles: list[tuple[str, str]] = field(default_factory=list)
    topics: Counter[str] = field(default_factory=Counter)
    car_t_seed: bool = False

    @classmethod
    def of(cls, papers: Iterable[Any]) -> Survey:
        survey = cls()
        for paper in papers:
            title = " ".join((paper.title or "").split())
            if title.endswith("?") and 4 <= len(title.split()) <= 16:
                survey.titles.append((paper.pmid, title))
            survey.topics.update(
                heading
                for heading in {m.split("/")[0].strip() for m in paper.mesh or []}
                if heading and not {heading.lower(), _topic(heading).lower()} & GENERIC_MESH
            )
            if paper.is_seed and _is_car_t_review(paper):
                survey.car_t_seed = True
        return survey

    def candidates(self) -> list[str]:
        titled = list(dict.fromkeys(title for _, title in sorted(self.titles)))
        # Spread over the corpus rather than the lowest PMIDs only.
        step = max(1, len(titled) // MAX_TRIES)
        titled = titled[::step]
        topics = [
            f"What is known about {_topic(h)}?"
            for h, n in self.topics.most_common(MAX_TRIES)
            if n > 1
        ]
        mixed: list[str] = []
        for pair in zip(titled, topics, strict=False):
            mixed.extend(pair)
        longer = titled if len(titled) > len(topics) else topics
        mixed.extend(longer[len(mixed) // 2 :])
        return mixed


def _is_car_t_review(seed: Any) -> bool:
    """The default seed review (``carqa.settings.SEED_DOI``) or another CAR T review (by its
    MeSH heading): its corpus is the one the hand-written examples were written for."""
    doi = (seed.doi or "").lower()
    return doi == SEED_DOI.lower() or any(m.startswith(CAR_T_MESH) for m in seed.mesh or [])


def _topic(heading: str) -> str:
    """A MeSH heading as it reads in a sentence: "Neoplasms, Germ Cell" -> "germ cell
    neoplasms"; acronyms and names keep their capitals."""
    parts = [p.strip() for p in heading.split(",")]
    words = " ".join(reversed(parts)) if len(parts) == 2 else heading
    kept = r"[a-z][A-Z]|\d|^[A-Z]{2,}$"  # mRNA, CD19, HIV; not X-Ray or Computed
    return " ".join(w if re.search(kept, w) else w.lower() for w in words.split())


def _manifest_source(index: Any) -> str:
    corpus = (getattr(index, "manifest", None) or {}).get("corpus") or {}
    source = corpus.get("source")
    return source if isinstance(source, str) else ""


def _file_names(source: str) -> list[str]:
    if not source.startswith("files:"):
        return []
    return [Path(name).name for name in source.removeprefix("files:").split(",") if name]


def _save(path: Path, data: dict[str, Any]) -> None:
    """Written atomically; a read-only index directory keeps the examples in memory only."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
