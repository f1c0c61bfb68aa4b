"""The benchmark scripts' arguments: a bad one is a one-line argparse error before any work.

Only argument parsing and the steps before an index is built run here (and one tiny
``bench/vector_scale.py`` build step): these tests never run a benchmark.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from bench import _common, chunking, http_load, query, scale, vector_scale
from bench import build as build_bench
from carqa.errors import InputError


@pytest.fixture
def data(tmp_path: Path) -> dict[str, Path]:
    """A corpus and a question file that exist (their contents are not read by parsing)."""
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"pmid": "1", "abstract": "Invented."}\n')
    questions = tmp_path / "dev_questions.jsonl"
    questions.write_text(
        "".join(json.dumps({"question": f"Invented {i}?", "pmid": "1"}) + "\n" for i in range(3))
    )
    return {"corpus": corpus, "questions": questions}


def _refused(module: ModuleType, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        module.parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("module", "argv", "message"),
    [
        (query, ["--n", "0"], "argument --n: '0': must be an integer at least 1"),
        (query, ["--n", "ten"], "argument --n: 'ten' is not an integer"),
        (query, ["--warmup", "-1"], "argument --warmup: '-1': must be an integer at least 0"),
        (query, ["--threads", "0"], "argument --threads"),
        (http_load, ["--clients", "1,x"], "argument --clients: 'x' is not an integer"),
        (http_load, ["--clients", ","], "give at least one client count"),
        (http_load, ["--clients", "8,0"], "argument --clients: '0'"),
        (http_load, ["--seconds", "0"], "argument --seconds: '0': must be a number greater than 0"),
        (http_load, ["--seconds", "nan"], "argument --seconds"),
        (http_load, ["--max-requests", "-5"], "argument --max-requests"),
        (http_load, ["--warmup-seconds", "-1"], "argument --warmup-seconds"),
        (build_bench, ["--threads", "-2"], "argument --threads"),
        (chunking, ["--embed-chunks", "400"], "expected SIZE/OVERLAP"),
        (chunking, ["--embed-chunks", "400/x"], "expected SIZE/OVERLAP"),
        (chunking, ["--embed-chunks", "400/400"], "need 0 <= chunk_overlap < chunk_size"),
        (vector_scale, ["--n", "10"], "argument --n: '10': must be at least 1000"),
        (vector_scale, ["--queries", "0"], "argument --queries"),
        (vector_scale, ["--nprobe", "0"], "argument --nprobe"),
        (vector_scale, ["--encoding", "bogus"], "'bogus' is not a FAISS IVF encoding"),
        (vector_scale, ["--mode", "serve"], "--mode serve needs --work"),
        (scale, ["--sizes", "10,1000"], "each size must be at least 100 papers"),
        (scale, ["--sizes", "1k"], "comma-separated paper counts"),
        (scale, ["--questions", "0"], "argument --questions"),
    ],
)
def test_a_bad_value_is_an_argparse_error(
    module: ModuleType,
    argv: list[str],
    message: str,
    data: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each of these was accepted, then failed with a traceback — several only after the
    index build or the embedding of every sentence (minutes), or ran with a silly value."""
    files = {
        query: ["--corpus", str(data["corpus"]), "--questions", str(data["questions"])],
        http_load: ["--corpus", str(data["corpus"]), "--questions", str(data["questions"])],
        build_bench: ["--corpus", str(data["corpus"])],
        chunking: ["--data", str(data["corpus"].parent)],
        vector_scale: [],
        scale: ["--work", "/nonexistent-work"],
    }[module]
    assert message in _refused(module, [*files, *argv], capsys)


@pytest.mark.parametrize(
    ("module", "flag"),
    [
        (query, "--questions"),
        (query, "--corpus"),
        (http_load, "--questions"),
        (build_bench, "--corpus"),
        (chunking, "--data"),
    ],
)
def test_a_missing_data_file_is_named_before_any_work(
    module: ModuleType,
    flag: str,
    data: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """query.py and http_load.py built the benchmark index (minutes) before they opened the
    question file; a missing corpus was an InputError traceback."""
    missing = tmp_path / "missing"
    given = {"--corpus": str(data["corpus"]), "--questions": str(data["questions"])}
    argv = {
        query: ["--corpus", given["--corpus"], "--questions", given["--questions"]],
        http_load: ["--corpus", given["--corpus"], "--questions", given["--questions"]],
        build_bench: ["--corpus", given["--corpus"]],
        chunking: [],
    }[module]
    argv = [*argv, flag, str(missing)]
    err = _refused(module, argv, capsys)
    assert f"{flag}: {missing}" in err and "is not a file" in err


def test_good_values_parse(data: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    files = ["--corpus", str(data["corpus"]), "--questions", str(data["questions"])]
    assert http_load.parse_args([*files, "--clients", "1, 8,16"]).clients == [1, 8, 16]
    assert http_load.parse_args(files).clients == [1, 8, 16]
    args = query.parse_args([*files, "--n", "2", "--warmup", "0", "--threads", "1"])
    assert (args.n, args.warmup, args.threads) == (2, 0, 1)
    chunk_args = chunking.parse_args(
        ["--data", str(data["corpus"].parent), "--embed-chunks", "400/150"]
    )
    assert chunk_args.embed_chunks == [(400, 150)]
    assert vector_scale.parse_args(["--n", "5000", "--encoding", "SQ8"]).encoding == "SQ8"


def test_driver_wrk_without_wrk_is_refused(
    data: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(http_load.shutil, "which", lambda name: None)
    files = ["--corpus", str(data["corpus"]), "--questions", str(data["questions"])]
    assert "wrk is not installed" in _refused(http_load, [*files, "--driver", "wrk"], capsys)


@pytest.mark.parametrize("module", [query, http_load])
def test_questions_are_checked_before_the_index_is_built(
    module: ModuleType,
    data: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Too few questions for --n/--warmup (query.py), or none (http_load.py), ended the run
    only after the index build."""

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the index was built before the questions were checked")

    monkeypatch.setattr(module, "ensure_index", no_build)
    empty = tmp_path / "no_questions.jsonl"
    empty.write_text("\n")
    questions = data["questions"] if module is query else empty
    argv = ["--corpus", str(data["corpus"]), "--questions", str(questions)]
    args = module.parse_args([*argv, "--n", "3", "--warmup", "1"] if module is query else argv)
    with pytest.raises(SystemExit) as exit_:
        module.run(args)
    assert str(questions) in str(exit_.value.code)


def test_a_file_that_holds_no_questions_names_its_line(data: dict[str, Path]) -> None:
    with pytest.raises(InputError, match=r"corpus\.jsonl, line 1: not a question line"):
        _common.load_dev_questions(data["corpus"])


def test_run_script_prints_a_carqa_error_without_a_traceback() -> None:
    def main() -> None:
        raise InputError("The corpus is gone.", hint="Build it.")

    with pytest.raises(SystemExit) as exit_:
        _common.run_script(main)
    assert "error: The corpus is gone.\nHint: Build it." in str(exit_.value.code)


def test_scale_build_step_with_a_short_last_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exact top 10 took ``argpartition(..., 10)`` of every block: a last block of 10 rows
    or fewer (``--n 100005``) crashed the build step after all the others. Tiny blocks here."""
    monkeypatch.setattr(vector_scale, "BLOCK", 100)
    args = argparse.Namespace(
        n=1005, queries=7, clusters=20, spread=1.0, seed=0, nprobe=4, encoding="Flat"
    )
    vector_scale.build(args, tmp_path)
    topics = vector_scale.centres(args.clusters, args.seed)
    everything = np.concatenate(
        [vector_scale.block(b, args.n, topics, args.spread, args.seed) for b in range(11)]
    )
    q = np.load(tmp_path / "queries.npy")
    expected = np.argsort(-(q @ everything.T), axis=1)[:, :10]
    truth = np.load(tmp_path / "truth.npy")
    assert [set(row) for row in truth.tolist()] == [set(row) for row in expected.tolist()]


def test_a_plot_path_that_cannot_be_written_is_refused_before_any_load(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plot is written last: a directory or a missing folder failed after the whole run."""
    files = ["--corpus", str(data["corpus"]), "--questions", str(data["questions"])]
    err = _refused(http_load, [*files, "--plot", str(tmp_path)], capsys)
    assert f"--plot: {tmp_path} is a directory" in err
    missing = tmp_path / "missing" / "plot.png"
    err = _refused(http_load, [*files, "--plot", str(missing)], capsys)
    assert "is in no existing folder" in err
    assert http_load.parse_args([*files, "--plot", str(tmp_path), "--no-plot"]).no_plot
    assert http_load.parse_args([*files, "--plot", str(tmp_path / "p.png")]).plot.name == "p.png"


def test_scale_replicates_the_corpus_under_new_pmids(tmp_path: Path) -> None:
    """Copies keep their texts (the embedding cache serves them) under pmids no copy shares."""
    source = tmp_path / "corpus.jsonl"
    source.write_text(
        "\n".join(json.dumps({"pmid": str(p), "abstract": f"Text {p}."}) for p in (7, 9, 11))
    )
    out = tmp_path / "scaled.jsonl"
    assert scale.write_corpus(source, 8, out) == 8
    papers = [json.loads(line) for line in out.read_text().splitlines()]
    assert [p["pmid"] for p in papers][:4] == ["7", "9", "11", str(scale.COPY_STRIDE + 7)]
    assert len({p["pmid"] for p in papers}) == 8
    assert [p["abstract"] for p in papers][3:6] == ["Text 7.", "Text 9.", "Text 11."]
