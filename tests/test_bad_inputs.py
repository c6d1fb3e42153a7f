"""Malformed inputs, table-driven: each is refused with an error naming file/row/column/argument, or
accepted by a documented rule, and then every input row is accounted for (by key) across the splits.

The last test prints how many cases were tried, accepted and refused.
"""
import json
import logging
import os
from pathlib import Path
from typing import NamedTuple

import pytest

import scorelib
from conftest import train_args
from scorelib.errors import ScorelibError
from scorelib.options import parse_args
from scorelib.tasks.text_scoring import TextScoringTask

HEADER = "key,prompt,text,score"
TALLY = {"tried": 0, "accepted": 0, "refused": 0, "rows_lost": 0}


class Refuse(NamedTuple):
    needles: tuple  # substrings the error message must contain


class Accept(NamedTuple):
    warn: str | None = None  # a substring the log must contain


class Case(NamedTuple):
    id: str
    build: object  # build(tmp, ctx) -> (action, expected_keys or None)
    expect: object


def csv(tmp, body, name="all.csv", header=HEADER, encoding="utf-8", newline="\n"):
    """Write a CSV from lines; returns (path, keys) where keys are the first cells of the data lines."""
    path = tmp / name
    lines = ([header] if header is not None else []) + list(body)
    path.write_bytes(newline.join(lines).encode(encoding) + newline.encode() if lines else b"")
    return path, [line.split(",")[0] for line in body]


def good(prefix="k", prompts=("a", "b"), n=6):
    return [f"{prefix}{p}{i},{p},answer number {i} about {p},{i % 4}" for p in prompts for i in range(n)]


def setup(*argv):
    return ("setup", [str(a) for a in argv])


def folder(tmp, train=None, valid=None, test=None):
    data = tmp / "data"
    data.mkdir()
    keys = []
    for split, body in (("train", train), ("valid", valid), ("test", test)):
        if body is not None:
            keys += csv(data, body, name=f"{split}.csv")[1]
    return data, keys


def single(body, *argv, **kw):
    def build(tmp, ctx):
        path, keys = csv(tmp, body, **kw)
        return setup(path, *argv), keys
    return build


def split_files(*argv, train=None, valid=None, test=None):
    def build(tmp, ctx):
        data, keys = folder(tmp, train or good(), valid, test)
        return setup(data, *argv), keys
    return build


def save_dir_copy(tmp, ctx, drop=(), truncate=False, config_edit=None):
    """A save dir beside ``trained_dir`` that links its files, less ``drop``, maybe with a cut checkpoint."""
    src, dst = ctx.trained_dir(), tmp / "copy"
    dst.mkdir()
    for name in ("tokenizer", "encoder", "prompts.json", "checkpoint_best.pt"):
        if name in drop:
            continue
        if name == "checkpoint_best.pt" and truncate:
            data = (src / name).read_bytes()
            (dst / name).write_bytes(data[: len(data) // 2])
        elif name == "encoder" and config_edit:
            (dst / name).mkdir()
            config = json.loads((src / name / "config.json").read_text())
            config.update(config_edit)
            (dst / name / "config.json").write_text(json.dumps(config))
        else:
            os.symlink(src / name, dst / name)
    return ("load", dst), None


def tiny_encoder(tmp, ctx):
    """A random 1-layer BERT with the default tokenizer: a different encoder than the trained one."""
    from transformers import BertConfig, BertModel

    path = tmp / "tiny"
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                         vocab_size=ctx.tokenizer.vocab_size)).save_pretrained(path)
    ctx.tokenizer.save_pretrained(path)
    return path


def train_case(*extra):
    def build(tmp, ctx):
        argv = [a(tmp, ctx) if callable(a) else a for a in extra]
        return ("train", [tmp / "save", *argv]), None
    return build


def resume_case(*extra, truncate=False):
    """Train in a save dir holding ``trained_dir``'s checkpoint_last.pt (cut in half with ``truncate``)."""
    def build(tmp, ctx):
        save = tmp / "save"
        save.mkdir()
        data = (ctx.trained_dir() / "checkpoint_last.pt").read_bytes()
        (save / "checkpoint_last.pt").write_bytes(data[: len(data) // 2] if truncate else data)
        return ("train", [save, "--no-epoch-checkpoints", *[a(tmp, ctx) if callable(a) else a for a in extra]]), None
    return build


def good_traits(n=6, prefix="t"):
    return [f"{prefix}{p}{i},{p},answer number {i} about {p},{i % 4},{(i + 1) % 3}" for p in ("a", "b") for i in range(n)]


TRAITS_HEADER = "key,prompt,text,cohesion,syntax"
TWO_TRAITS = ("--score-column", "cohesion,syntax")


def _trait_folder(tmp):
    data = tmp / "tdata"
    data.mkdir()
    csv(data, good_traits(), name="train.csv", header=TRAITS_HEADER)
    csv(data, good_traits(2, prefix="v"), name="valid.csv", header=TRAITS_HEADER)
    return data


LONG = "word " * 40_000  # 200,000 characters
LATIN1 = "essay_id\tessay_set\tessay\tdomain1_score\n" + "".join(
    f"{i}\t1\tcaf\xe9 essay {i}\t{2 + i % 5}\n" for i in range(8))

CASES = [
    Case("missing score column", single(["a1,a,text"], header="key,prompt,text"),
         Refuse(("all.csv", "missing column 'score'", "--score-column"))),
    Case("renamed text column", single(good(), header="key,prompt,answer,score"),
         Refuse(("all.csv", "missing column 'text'", "--text-column", "answer"))),
    Case("named key column absent", single(good(), "--key-column", "id"),
         Refuse(("all.csv", "missing column 'id'", "--key-column"))),
    Case("empty file", single([], header=None), Refuse(("all.csv", "the file is empty"))),
    Case("header only", single([]), Refuse(("all.csv", "has a header", "but no rows"))),
    Case("TSV content in .csv", single([r.replace(",", "\t") for r in good()], header=HEADER.replace(",", "\t")),
         Refuse(("all.csv", "missing column", "delimiter"))),
    Case("ragged CSV row", single(good() + ["x1,a,too,many,fields"]),
         Refuse(("all.csv: cannot parse as CSV: line 14 has 5 fields, the header 4",))),
    Case("UTF-16 table without --encoding", single(good(), encoding="utf-16"),
         Refuse(("all.csv", "UTF-16 byte-order mark", "--encoding utf-16"))),
    Case("BOM", single(good(), encoding="utf-8-sig"), Accept()),
    Case("CRLF line ends", single(good(), newline="\r\n"), Accept()),
    Case("quoted commas and newlines", single(good() + ['q1,a,"one, two\nthree ""four""",2']), Accept()),
    Case("extra columns are ignored", single([r + ",x" for r in good()], header=HEADER + ",note"), Accept()),
    Case("undecodable in --encoding", single(good() + ["e1,a,caf\xe9,1"], "--encoding", "ascii", encoding="latin-1"),
         Refuse(("all.csv", "line 14", "cannot decode", "as ascii"))),
    Case("latin-1 without --encoding", single(good() + ["e1,a,caf\xe9,1"], encoding="latin-1"),
         Refuse(("all.csv", "line 14", "not valid UTF-8", "--encoding"))),
    Case("unknown --encoding", single(good(), "--encoding", "klingon"), Refuse(("--encoding", "klingon", "unknown"))),
    Case("latin-1 ASAP layout falls back", lambda tmp, ctx: (
        setup(_write(tmp / "training_set_rel3.tsv", LATIN1.encode("latin-1")), "--layout", "asap-aes"),
        [str(i) for i in range(8)]), Accept(warn="reading it as latin-1")),
    Case("NaN score in train", single(good() + ["n1,a,text,NaN"]),
         Refuse(("all.csv", "row 14", "column 'score'", "'NaN' is not a finite number"))),
    Case("empty score in train", single(good() + ["n1,a,text,"]), Refuse(("all.csv", "row 14", "column 'score'"))),
    Case("non-numeric score", single(good() + ["n1,a,text,good"]), Refuse(("all.csv", "row 14", "'good'"))),
    Case("infinite score", single(good() + ["n1,a,text,inf"]), Refuse(("all.csv", "row 14", "'inf'", "finite"))),
    Case("NaN score in valid", split_files(valid=["v1,a,text,NaN"]), Refuse(("valid.csv", "row 2", "column 'score'"))),
    Case("score with spaces", single(good() + ["s1,a,text, 2 "]), Accept()),
    Case("out-of-range score in train", split_files("--score-range", "0", "3", train=good() + ["o1,a,text,5"]),
         Refuse(("train.csv", "row 14", "column 'score'", "outside prompt 'a'", "0 .. 3"))),
    Case("out-of-range score in the user's own column", single(good() + ["o1,a,text,9"], "--score-column", "grade",
                                                              "--score-range", "0", "3", header="key,prompt,text,grade"),
         Refuse(("all.csv", "column 'grade'", "outside prompt 'a'"))),
    Case("out-of-range score in valid", split_files("--score-range", "0", "3", valid=["o1,a,text,7"]),
         Accept(warn="these rows are kept")),
    Case("out-of-range score in test", split_files("--score-range", "0", "3", test=["o1,b,text,-1"]),
         Accept(warn="test.csv: row 2, column 'score': -1 is outside")),
    Case("empty text", single(good() + ["t1,a,,1"]), Refuse(("all.csv", "column 'text'", "row(s) 14"))),
    Case("whitespace-only text", single(good() + ['t1,a,"   \t ",1']),
         Refuse(("all.csv", "column 'text'", "whitespace-only", "row(s) 14"))),
    Case("empty prompt id", single(good() + ["t1,,text,1"]), Refuse(("all.csv", "--prompt-column", "14"))),
    Case("200,000-character text", single(good() + [f"l1,a,{LONG},2"]), Accept(warn="1 text(s) truncated")),
    Case("--long-text chunks with a stride >= the window", single(good(), "--long-text", "chunks", "--max-length",
                                                                  "64", "--chunk-stride", "64"),
         Refuse(("--chunk-stride 64", "smaller than the window", "--max-length 64"))),
    Case("duplicate key in a file", single(good() + ["ka1,a,again,1"]),
         Refuse(("all.csv", "duplicate key 'ka1'", "rows 3, 14"))),
    Case("duplicate key across splits", split_files(valid=["ka2,a,again,1"]),
         Refuse(("key 'ka2'", "train.csv (row 4)", "valid.csv (row 2)"))),
    Case("prompt only in valid", split_files(valid=["z1,zz,text,1"]),
         Refuse(("valid", "prompt(s) 'zz'", "rows [2]", "do not occur in train", "--prompts"))),
    Case("numeric-looking prompt ids", single(good(prompts=("11.10", "11.1", "007", "7"), n=5)), Accept()),
    Case("constant scores, no range", single(["c1,a,x,2", "c2,a,y,2", "c3,a,z,2"]),
         Refuse(("prompt 'a'", "every training score is 2", "--score-range"))),
    Case("nonexistent data path", lambda tmp, ctx: (setup(tmp / "nope.csv"), None),
         Refuse(("data", "nope.csv", "no such file or folder"))),
    Case("data folder without train", lambda tmp, ctx: (setup(folder(tmp, None, ["v1,a,x,1"])[0]), None),
         Refuse(("no train table", "valid.csv"))),
    Case("unsupported file type", lambda tmp, ctx: (setup(_write(tmp / "d.json", b"{}")), None),
         Refuse(("d.json", "unsupported file type", ".csv"))),
    Case("--score-range MIN >= MAX", single(good(), "--score-range", "3", "3"), Refuse(("--score-range 3 3", "MIN"))),
    Case("--score-ranges with min >= max", lambda tmp, ctx: (setup(csv(tmp, good())[0], "--score-ranges", csv(
        tmp, ["a,5,1"], name="ranges.csv", header="prompt,min,max")[0]), None),
         Refuse(("ranges.csv", "row 2", "prompt 'a'", "min < max"))),
    Case("--score-ranges missing a column", lambda tmp, ctx: (setup(csv(tmp, good())[0], "--score-ranges", csv(
        tmp, ["a,5"], name="ranges.csv", header="prompt,min")[0]), None),
         Refuse(("ranges.csv", "missing column 'max'", "--score-ranges"))),
    Case("--score-ranges listing a prompt twice", lambda tmp, ctx: (setup(csv(tmp, good())[0], "--score-ranges", csv(
        tmp, ["a,0,3", "b,0,3", "a,0,4"], name="ranges.csv", header="prompt,min,max")[0]), None),
         Refuse(("ranges.csv", "prompt 'a' is listed twice", "rows 2, 4"))),
    Case("ranges file listing a trait twice", lambda tmp, ctx: (setup(
        csv(tmp, good_traits(), header=TRAITS_HEADER)[0], *TWO_TRAITS, "--score-ranges",
        csv(tmp, ["cohesion,0,3", "syntax,0,3", "cohesion,0,4"], name="ranges.csv", header="trait,min,max")[0]), None),
         Refuse(("ranges.csv", "row 4", "trait 'cohesion' is listed twice", "rows 2 and 4"))),
    Case("--layout columns not in the file", single(good(), "--layout", "asap-aes"),
         Refuse(("all.csv", "missing column 'essay_id'", "--key-column"))),
    Case("unknown --layout name", lambda tmp, ctx: (("parse", ["--layout", "asap-foo"]), None),
         Refuse(("--layout", "invalid choice", "asap-foo"))),
    Case("--valid-fraction out of [0, 1)", single(good(), "--valid-fraction", "1.5"),
         Refuse(("--valid-fraction", "1.5"))),
    Case("save dir under a regular file", lambda tmp, ctx: (("train", [_write(tmp / "file.txt", b"x") / "ckpt"]), None),
         Refuse(("--save-dir", "file.txt", "not a folder"))),
    Case("results path is a file", train_case("--results-path", lambda tmp, ctx: _write(tmp / "res.txt", b"x")),
         Refuse(("--results-path", "res.txt", "is a file"))),
    Case("nonexistent --finetune-from-model", train_case("--finetune-from-model", lambda tmp, ctx: tmp / "missing.pt"),
         Refuse(("checkpoint not found", "missing.pt"))),
    Case("--finetune-from-model of another encoder", train_case(
        "--model-name-or-path", tiny_encoder, "--finetune-from-model",
        lambda tmp, ctx: ctx.trained_dir() / "checkpoint_best.pt"),
         Refuse(("checkpoint_best.pt", "trained with another encoder", "--model-name-or-path"))),
    Case("truncated checkpoint", lambda tmp, ctx: save_dir_copy(tmp, ctx, truncate=True),
         Refuse(("checkpoint_best.pt", "truncated or damaged checkpoint", "save interrupted"))),
    Case("checkpoint of a different encoder", lambda tmp, ctx: save_dir_copy(tmp, ctx, config_edit={"hidden_size": 64}),
         Refuse(("checkpoint_best.pt", "its encoder differs", "encoder"))),
    Case("save dir without tokenizer", lambda tmp, ctx: save_dir_copy(tmp, ctx, drop=("tokenizer",)),
         Refuse(("copy", "missing tokenizer"))),
    Case("save dir without prompt table", lambda tmp, ctx: save_dir_copy(tmp, ctx, drop=("prompts.json",)),
         Refuse(("copy", "missing prompts.json"))),
    Case("save dir without checkpoints", lambda tmp, ctx: save_dir_copy(tmp, ctx, drop=("checkpoint_best.pt",)),
         Refuse(("copy", "no checkpoint_best.pt or checkpoint_last.pt"))),
    Case("missing trait column", single(good_traits(), "--score-column", "cohesion,syntax,grammar",
                                        header=TRAITS_HEADER),
         Refuse(("all.csv", "missing column 'grammar'", "--score-column"))),
    Case("non-numeric trait score", single(good_traits() + ["n1,a,text,2,weak"], *TWO_TRAITS, header=TRAITS_HEADER),
         Refuse(("all.csv", "row 14", "column 'syntax'", "'weak'", "not a finite number"))),
    Case("trait score outside the trait's range", lambda tmp, ctx: (setup(
        csv(tmp, good_traits() + ["o1,a,text,2,7"], header=TRAITS_HEADER)[0], *TWO_TRAITS, "--score-ranges",
        csv(tmp, ["cohesion,0,3", "syntax,0,2"], name="ranges.csv", header="trait,min,max")[0]), None),
         Refuse(("all.csv", "row 14", "column 'syntax'", "outside prompt 'a'", "0 .. 2"))),
    Case("two traits accepted", single(good_traits(), *TWO_TRAITS, header=TRAITS_HEADER), Accept()),
    Case("a trait named twice", single(good_traits(), "--score-column", "cohesion,cohesion", header=TRAITS_HEADER),
         Refuse(("--score-column", "cohesion named twice"))),
    Case("ranges file: unknown trait", lambda tmp, ctx: (setup(
        csv(tmp, good_traits(), header=TRAITS_HEADER)[0], *TWO_TRAITS, "--score-ranges",
        csv(tmp, ["grammar,0,3"], name="ranges.csv", header="trait,min,max")[0]), None),
         Refuse(("ranges.csv", "row 2", "trait 'grammar'", "--score-column cohesion,syntax"))),
    Case("ranges file: trait column with one score column", lambda tmp, ctx: (setup(
        csv(tmp, good())[0], "--score-ranges", csv(tmp, ["score,0,3"], name="ranges.csv", header="trait,min,max")[0]),
        None), Refuse(("--score-ranges", "ranges.csv", "trait column", "one score column"))),
    Case("ranges file: non-numeric step", lambda tmp, ctx: (setup(
        csv(tmp, good_traits(), header=TRAITS_HEADER)[0], *TWO_TRAITS, "--score-ranges",
        csv(tmp, ["cohesion,0,3,half"], name="ranges.csv", header="trait,min,max,step")[0]), None),
         Refuse(("ranges.csv", "row 2", "trait 'cohesion'", "not numbers"))),
    Case("traits on the embedded demo data", lambda tmp, ctx: (setup(*TWO_TRAITS), None),
         Refuse(("--score-column cohesion,syntax", "write_demo_traits"))),
    Case("--best-checkpoint-metric mcrmse with one score column", train_case("--best-checkpoint-metric", "mcrmse"),
         Refuse(("--best-checkpoint-metric mcrmse", "several traits", "rmse"))),
    Case("--fit-cutpoints with a continuous trait", train_case(lambda tmp, ctx: _trait_folder(tmp), *TWO_TRAITS,
                                                              "--fit-cutpoints"),
         Refuse(("--fit-cutpoints", "trait 'cohesion' is continuous", "--score-step"))),
    Case("--finetune-from-model of a one-score model with traits", train_case(
        lambda tmp, ctx: _trait_folder(tmp), *TWO_TRAITS, "--finetune-from-model",
        lambda tmp, ctx: ctx.trained_dir() / "checkpoint_best.pt"),
         Refuse(("checkpoint_best.pt", "1 output(s)", "needs 2", "--score-column"))),
    Case("nonexistent save dir", lambda tmp, ctx: (("load", tmp / "gone"), None), Refuse(("no such save dir", "gone"))),
    Case("a header naming a column twice", single([r + "," + r.split(",")[-1] for r in good()], header=HEADER + ",score"),
         Refuse(("all.csv", "'score' in columns 4, 5", "more than once"))),
    Case("xlsx formula without a computed value", lambda tmp, ctx: (setup(formula_xlsx(tmp)), None),
         Refuse(("all.xlsx", "cell D3", "formula (=D2*2)", "never computed", "export it as CSV"))),
    Case("unknown --task", lambda tmp, ctx: (("parse", ["--task", "nosuch"]), None),
         Refuse(("unknown task 'nosuch'", "--task", "text_scoring"))),
    Case("unknown --arch", lambda tmp, ctx: (("parse", ["--arch", "nosuch"]), None),
         Refuse(("unknown model 'nosuch'", "--arch", "text_scorer"))),
    Case("--user-dir that does not exist", lambda tmp, ctx: (("parse", ["--user-dir", str(tmp / "nowhere")]), None),
         Refuse(("--user-dir", "nowhere", "not a folder"))),
    Case("--lr below 0", lambda tmp, ctx: (("parse", ["--lr", "-1"]), None), Refuse(("--lr must be >= 0, got -1",))),
    Case("--max-epoch -1", train_case("--max-epoch", "-1"), Refuse(("--max-epoch must be >= 0 (0: no limit), got -1",))),
    Case("--restore-file that does not exist", train_case("--restore-file", "nope.pt"),
         Refuse(("--restore-file nope.pt", "not found"))),
    Case("resume from a truncated checkpoint_last.pt", resume_case(truncate=True),
         Refuse(("checkpoint_last.pt", "truncated or damaged checkpoint"))),
    Case("resume with another --score-step", resume_case("--score-step", "0.7"),
         Refuse(("checkpoint_last.pt", "cannot resume with --score-step giving 0.7", "trained with 1.0"))),
    Case("resume with another --max-length", resume_case("--max-length", "256"),
         Refuse(("cannot resume with --max-length giving 256", "trained with 512"))),
    Case("resume with another --long-text", resume_case("--long-text", "chunks"),
         Refuse(("cannot resume with --long-text giving chunks", "trained with truncate"))),
    Case("resume with another --score-range", resume_case("--score-range", "0", "10"),
         Refuse(("cannot resume with --score-range / --score-ranges giving {", "[0.0, 10.0]"))),
    Case("resume with another --head-lr", resume_case("--head-lr", "1e-3"),
         Refuse(("cannot resume with --head-lr giving 0.001", "trained with 0.0005"))),
    Case("resume with another encoder", resume_case("--model-name-or-path", tiny_encoder),
         Refuse(("cannot resume with --model-name-or-path giving", "tiny", "trained with None"))),
    Case("score() of a mapping", lambda tmp, ctx: (("score", {"a": "some text"}), None),
         Refuse(("texts: expected a string or a list of strings, got dict",))),
    Case("score() of an empty list", lambda tmp, ctx: (("score", []), None), Refuse(("texts: an empty list",))),
    Case("score() of None", lambda tmp, ctx: (("score", None), None),
         Refuse(("texts: expected a string or a list of strings, got NoneType",))),
]


def formula_xlsx(tmp, name="all.xlsx", prompts=("a", "b")):
    """A workbook whose score cell D3 holds a formula that no spreadsheet program ever computed (openpyxl writes
    formulas without their values)."""
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(HEADER.split(","))
    for i in range(8):
        book.active.append([f"f{i}", prompts[i % len(prompts)], f"answer number {i}", "=D2*2" if i == 1 else i % 4])
    book.save(tmp / name)
    return tmp / name


def _write(path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


class Context:
    def __init__(self, request, tokenizer):
        self.request, self.tokenizer = request, tokenizer

    def trained_dir(self):
        """conftest.py's ``trained_dir``: a real training run, so only for a case marked slow (TRAINED below)."""
        if self.request.node.get_closest_marker("slow") is None:
            pytest.fail("this case reads trained_dir (a real training run): list its id in TRAINED (or its tool in "
                        "CLI_TRAINED), which marks it slow")
        return self.request.getfixturevalue("trained_dir")


def run(action, ctx):
    kind, arg = action
    if kind == "parse":
        return parse_args(arg)
    if kind == "setup":
        task = TextScoringTask.setup_task(parse_args(arg), tokenizer=ctx.tokenizer)
        for split in task.frames:
            task.load_dataset(split)
        return task
    if kind == "train":
        return scorelib.train(train_args(*arg))
    if kind == "score":
        return scorelib.load(ctx.trained_dir(), device="cpu").score(arg)
    return scorelib.load(arg, device="cpu")


def listing(folder: Path) -> dict:
    """Every file under ``folder`` with its size and modification time (empty: no such folder)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))} if folder.exists() else {}


# the cases that read trained_dir (a save dir from a real training run): marked slow
TRAINED = {"--finetune-from-model of another encoder", "truncated checkpoint", "checkpoint of a different encoder",
           "save dir without tokenizer", "save dir without prompt table", "save dir without checkpoints",
           "--finetune-from-model of a one-score model with traits", "resume from a truncated checkpoint_last.pt",
           "resume with another --score-step", "resume with another --max-length", "resume with another --long-text",
           "resume with another --score-range", "resume with another --head-lr", "resume with another encoder",
           "score() of a mapping", "score() of an empty list", "score() of None"}
assert TRAINED <= {c.id for c in CASES}, TRAINED - {c.id for c in CASES}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.id in TRAINED else [])
                                  for c in CASES])
def test_bad_input(case, tmp_path, request, tokenizer, caplog, capsys):
    logger = logging.getLogger("scorelib")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO)
    TALLY["tried"] += 1
    try:
        action, keys = case.build(tmp_path, Context(request, tokenizer))
        if isinstance(case.expect, Refuse):
            save_dir = Path(action[1][0]) if action[0] == "train" else None
            before = listing(save_dir) if save_dir else None
            with pytest.raises((ScorelibError, SystemExit)) as error:  # the project's own class, or argparse's exit
                run(action, Context(request, tokenizer))
            if isinstance(error.value, SystemExit):
                assert error.value.code == 2, error.value
            message = str(error.value) if not isinstance(error.value, SystemExit) else capsys.readouterr().err
            for needle in case.expect.needles:
                assert needle in message, f"{needle!r} not in error: {message}"
            assert "\n" not in message.strip() or isinstance(error.value, SystemExit), f"not one line: {message}"
            if save_dir:  # a refused run writes nothing into its save dir (nor creates it)
                assert listing(save_dir) == before, f"{save_dir} changed: {before} -> {listing(save_dir)}"
            TALLY["refused"] += 1
            return
        task = run(action, Context(request, tokenizer))
        got = sorted(k for frame in task.frames.values() for k in frame["key"])
        lost = len(set(keys) - set(got))
        TALLY["rows_lost"] += lost
        assert got == sorted(keys), f"rows lost or added: {sorted(set(keys) ^ set(got))}"
        assert sum(len(ds) for ds in task.datasets.values()) == len(keys)
        if case.expect.warn:
            assert case.expect.warn in caplog.text
        TALLY["accepted"] += 1
    finally:
        logger.removeHandler(caplog.handler)


def test_long_text_is_kept_whole_and_counted(tmp_path, tokenizer):
    path, _ = csv(tmp_path, good() + [f"l1,a,{LONG},2"])
    task = TextScoringTask.setup_task(parse_args([str(path), "--valid-fraction", "0", "--test-fraction", "0"]),
                                      tokenizer=tokenizer)
    ds = task.load_dataset("train")
    i = ds.keys.index("l1")
    assert len(ds.texts[i]) == len(LONG) and ds.sizes[i] == 512 and ds.num_truncated == 1


def test_prompt_ids_that_look_numeric_stay_distinct(tmp_path, tokenizer):
    path, _ = csv(tmp_path, good(prompts=("11.10", "11.1", "007", "7"), n=5))
    task = TextScoringTask.setup_task(parse_args([str(path)]), tokenizer=tokenizer)
    assert sorted(task.prompts.ids) == ["007", "11.1", "11.10", "7"]


def test_counts():
    if TALLY["tried"] == 0:
        pytest.skip("the table-driven cases did not run in this session")
    print(f"\nbad inputs: tried {TALLY['tried']}, accepted {TALLY['accepted']}, refused {TALLY['refused']}, "
          f"rows lost {TALLY['rows_lost']}")
    assert TALLY["tried"] == TALLY["accepted"] + TALLY["refused"]
    assert TALLY["rows_lost"] == 0
    assert TALLY["refused"] >= 25 and TALLY["accepted"] >= 5


# ---------------------------------------------------------------- the command-line tools themselves
# Each case runs scorelib-train, scorelib-cv, scorelib-eval or scorelib-score (where the option exists) as a user
# would: exit status 2, one error line naming the option or file (argparse may print its usage first), no
# traceback, and nothing written: the watched folders (the test's own, and the trained save dir an evaluation
# reads) are the same, file by file and byte for byte, before and after.
class Cli(NamedTuple):
    id: str
    tools: tuple  # of "train", "cv", "eval", "score"
    extra: object  # the flags after the tool's usual ones: a list, or extra(tmp, ctx, tool) -> list
    needles: tuple  # substrings the error line must contain
    target: object = None  # target(tmp, ctx, request) -> the save dir that eval/score read (default: trained_dir)
    stdin: str | None = None


def entry(tool):
    import importlib

    return importlib.import_module(f"scorelib.cli.{tool}").cli_main


def snapshot(*roots) -> dict:
    """Every path under ``roots``: its size, mtime and (up to 1 MB) its bytes' digest; links as links."""
    import hashlib

    out = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            st = path.lstat()
            small = path.is_file() and not path.is_symlink() and st.st_size < 2 ** 20
            out[str(path)] = ("dir" if path.is_dir() and not path.is_symlink() else st.st_size, st.st_mtime_ns,
                              hashlib.sha256(path.read_bytes()).hexdigest() if small else None)
    return out


def read_only(path: Path, request) -> Path:
    """``path`` as a folder no one can write to: mode 555, and for root (whom modes do not stop) immutable."""
    import subprocess

    path.mkdir(parents=True, exist_ok=True)
    request.addfinalizer(lambda: path.chmod(0o755))  # runs last: after chattr -i below
    path.chmod(0o555)
    if os.access(path, os.W_OK):
        subprocess.run(["chattr", "+i", str(path)], capture_output=True)
        request.addfinalizer(lambda: subprocess.run(["chattr", "-i", str(path)], capture_output=True))
    if os.access(path, os.W_OK):
        pytest.skip("cannot make a read-only folder here (root without chattr)")
    return path


def data_arg(tool, path, tmp):
    """How each tool is given a data table: DATA (train, cv), --split test DATA (eval), --input/--output (score)."""
    return {"train": [str(path)], "cv": [str(path)], "eval": ["--split", "test", str(path)],
            "score": ["--input", str(path), "--output", str(tmp / "scored.csv")]}[tool]


def dup_header(tmp, ctx, tool):
    path, _ = csv(tmp, [r + "," + r.split(",")[-1] for r in good(prompts=("q1", "q2"))], header=HEADER + ",score")
    return data_arg(tool, path, tmp)


def empty_model_dir(tmp, ctx, tool):
    (tmp / "empty_model").mkdir()
    return ["--model-name-or-path", str(tmp / "empty_model")]


def linked_output(tmp, ctx, tool):
    src = csv(tmp, ["k1,q1,an answer", "k2,q2,another"], name="in.csv", header="key,prompt,text")[0]
    os.symlink(src, tmp / "out.csv")
    return ["--input", str(src), "--output", str(tmp / "out.csv")]


def results_read_only(tmp, ctx, request):
    src, dst = ctx.trained_dir(), tmp / "copy"
    dst.mkdir()
    for name in ("tokenizer", "encoder", "prompts.json", "checkpoint_best.pt"):
        os.symlink(src / name, dst / name)
    read_only(dst / "results", request)
    return dst


TRAIN_CV = ("train", "cv")
CLI_CASES = [
    Cli("unknown --task", TRAIN_CV, ["--task", "nosuch"], ("unknown task 'nosuch' (--task)", "text_scoring")),
    Cli("unknown --arch", TRAIN_CV, ["--arch", "nosuch"], ("unknown model 'nosuch' (--arch)", "text_scorer")),
    Cli("unknown --criterion", TRAIN_CV, ["--criterion", "nosuch"], ("unknown criterion 'nosuch'", "score_mse")),
    Cli("--user-dir that does not exist", TRAIN_CV, lambda tmp, ctx, tool: ["--user-dir", str(tmp / "nowhere")],
        ("--user-dir", "nowhere", "not a folder")),
    Cli("--user-dir that is a file", TRAIN_CV, lambda tmp, ctx, tool: ["--user-dir", str(_write(tmp / "p.py", b""))],
        ("--user-dir", "p.py", "not a folder but a file")),
    Cli("--model-name-or-path on an empty folder", TRAIN_CV, empty_model_dir,
        ("--model-name-or-path", "empty_model", "lacks config.json", "the tokenizer files")),
    Cli("--lr below 0", TRAIN_CV, ["--lr", "-1"], ("--lr must be >= 0, got -1",)),
    Cli("--head-dropout 1.5", TRAIN_CV, ["--head-dropout", "1.5"], ("--head-dropout must be in [0, 1), got 1.5",)),
    Cli("--encoder-dropout 1", TRAIN_CV, ["--encoder-dropout", "1"], ("--encoder-dropout must be in [0, 1), got 1",)),
    Cli("--encoder-dropout below 0", TRAIN_CV, ["--encoder-dropout", "-0.1"], ("--encoder-dropout", "got -0.1")),
    Cli("--max-epoch below 0", TRAIN_CV, ["--max-epoch", "-2"], ("--max-epoch must be >= 0", "got -2")),
    Cli("--update-freq 0", TRAIN_CV, ["--update-freq", "0"], ("--update-freq must be positive, got 0",)),
    Cli("--fp16 with --bf16", TRAIN_CV, ["--fp16", "--bf16"], ("--fp16 and --bf16 exclude each other",)),
    Cli("--folds 0", ("cv",), ["--folds", "0"], ("--folds must be at least 2, got 0",)),
    Cli("--folds 1", ("cv",), ["--folds", "1"], ("--folds must be at least 2, got 1",)),
    Cli("--folds below 0", ("cv",), ["--folds", "-3"], ("--folds must be at least 2, got -3",)),
    Cli("--max-length beyond the encoder's positions", ("train", "cv", "eval"), ["--max-length", "100000"],
        ("--max-length 100000", "max_position_embeddings 512")),
    Cli("read-only --save-dir", TRAIN_CV,
        lambda tmp, ctx, tool: ["--save-dir", str(read_only(tmp / "ro", ctx.request))],
        ("--save-dir", "ro", "read-only")),
    Cli("read-only results/ of a save dir", ("eval",), ["--split", "valid"],
        ("copy/results", "read-only", "--results-path"), target=results_read_only),
    Cli("a header naming a column twice", ("train", "cv", "eval", "score"), dup_header,
        ("all.csv", "'score' in columns 4, 5", "more than once")),
    Cli("xlsx formula without a computed value", ("train", "cv", "eval", "score"),
        lambda tmp, ctx, tool: data_arg(tool, formula_xlsx(tmp, prompts=("q1", "q2")), tmp),
        ("all.xlsx", "cell D3", "never computed")),
    Cli("no --prompt for a model of several prompts", ("score",), ["an answer"],
        ("3 prompts", "q1 (0–3), q2 (1–6), q3 (0–10)", "--prompt")),
    Cli("--input without a prompt column, several prompts", ("score",), lambda tmp, ctx, tool: data_arg(
        tool, csv(tmp, ["k1,one answer", "k2,another"], name="in.csv", header="key,text")[0], tmp),
        ("3 prompts", "q1 (0–3)", "--prompt", "in.csv a prompt column")),
    Cli("--output is --input", ("score",), lambda tmp, ctx, tool: ["--input", str(tmp / "in.csv"), "--output", str(
        csv(tmp, ["k1,q1,an answer"], name="in.csv", header="key,prompt,text")[0])], ("--output", "in.csv", "--input")),
    Cli("--output is a link to --input", ("score",), linked_output, ("--output", "out.csv", "--input", "in.csv")),
    Cli("empty standard input", ("score",), ["--prompt", "q1"], ("no text given",), stdin=""),
]
CLI_PAIRS = [(case, tool) for case in CLI_CASES for tool in case.tools]
CLI_TRAINED = ("eval", "score")  # the tools that read a save dir: trained_dir, a real training run, so slow


@pytest.mark.parametrize("case, tool", [pytest.param(c, t, id=f"{t}: {c.id}",
                                                     marks=[pytest.mark.slow] if t in CLI_TRAINED else [])
                                        for c, t in CLI_PAIRS])
def test_the_tools_refuse_in_one_line_and_write_nothing(case, tool, tmp_path, request, tokenizer, capsys,
                                                        monkeypatch):
    import io
    import sys

    ctx = Context(request, tokenizer)
    target = None  # train and cv refuse before they would read a save dir
    if tool in CLI_TRAINED:
        target = case.target(tmp_path, ctx, request) if case.target else ctx.trained_dir()
    extra = case.extra(tmp_path, ctx, tool) if callable(case.extra) else list(case.extra)
    head = ["--save-dir", str(tmp_path / "save")] if tool in TRAIN_CV else [str(target)]
    if case.stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(case.stdin))
    watched = [tmp_path] + ([ctx.trained_dir()] if tool in CLI_TRAINED else [])
    before = snapshot(*watched)
    capsys.readouterr()
    try:
        status = entry(tool)(head + ["--cpu"] + extra)
    except SystemExit as e:  # argparse's parser.error
        status = e.code
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("usage:", " "))]
    assert len(lines) == 1 and lines[0].startswith(f"scorelib-{tool}: error: "), err
    for needle in case.needles:
        assert needle in lines[0], f"{needle!r} not in: {lines[0]}"
    assert snapshot(*watched) == before, "a refused run changed a file"
    assert not (tmp_path / "save").exists()


@pytest.mark.parametrize("tool", TRAIN_CV)
def test_a_plugin_with_a_syntax_error_says_so_then_shows_its_own_traceback(tool, tmp_path, capsys):
    plugin = tmp_path / f"sl_broken_{tool}"
    (plugin / "tasks").mkdir(parents=True)
    (plugin / "tasks" / "broken.py").write_text("from scorelib import register_task\n\ndef oops(:\n    pass\n")
    status = entry(tool)(["--user-dir", str(plugin), "--save-dir", str(tmp_path / "save")])
    err = capsys.readouterr().err.splitlines()
    assert status == 2
    assert err[0].startswith(f"scorelib-{tool}: error: --user-dir {plugin}: importing your file "), err
    assert "broken.py raised SyntaxError" in err[0] and "traceback follows" in err[0]
    rest = "\n".join(err[1:])
    assert "broken.py\", line 3" in rest and "def oops(:" in rest and "SyntaxError" in rest
    assert "registry.py" not in rest and "importlib" not in rest  # the user's traceback, not scorelib's
    assert not (tmp_path / "save").exists()


@pytest.mark.parametrize("tool", TRAIN_CV)
def test_tensorboard_logdir_without_tensorboard_is_one_line(tool, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    with pytest.raises(SystemExit) as e:
        entry(tool)(["--save-dir", str(tmp_path / "save"), "--tensorboard-logdir", str(tmp_path / "tb")])
    assert e.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--tensorboard-logdir" in line and "pip install 'scorelib[tensorboard]'" in line
    assert not (tmp_path / "save").exists() and not (tmp_path / "tb").exists()


# ---------------------------------------------------------------- issue 34, sections 2 and 3: options and workbooks
def workbook_arg(kind):
    """DATA (or --input) as a damaged workbook: CSV bytes, a truncated copy, a cell at XFD1048576, two sheets."""
    def extra(tmp, ctx, tool):
        from test_readers_xlsx import SHEET, edited, far_cell, workbook

        rows = [r.split(",") for r in good(prompts=("q1", "q2"))]
        book = workbook(tmp / "book.xlsx", sheets=("scores", "notes") if kind == "sheets" else ("Sheet",), rows=0)
        if kind != "sheets":
            import openpyxl

            wb = openpyxl.load_workbook(book)
            for r in rows:
                wb.active.append(r[:3] + [int(r[3])])
            wb.save(book)
        path = tmp / "all.xlsx"
        if kind == "csv":
            path.write_text(HEADER + "\n" + "\n".join(good(prompts=("q1", "q2"))) + "\n")
        elif kind == "truncated":
            path.write_bytes(book.read_bytes()[:1500])
        elif kind == "far":
            edited(book, path, SHEET, far_cell())
        else:
            path = book
        return data_arg(tool, path, tmp)
    return extra


def qwk_data(tmp, ctx, tool):
    return [str(csv(tmp, good(prompts=("q1", "q2")))[0]), "--best-checkpoint-metric", "qwk"]


def logdir_file(tmp, ctx, tool):
    return ["--tensorboard-logdir", str(_write(tmp / "tb", b"a file"))]


XLSX_TOOLS = ("train", "cv", "eval", "score")
ISSUE_34_CASES = [
    Cli("CSV bytes named .xlsx", XLSX_TOOLS, workbook_arg("csv"),
        ("all.xlsx: not an Excel workbook (.xlsx): File is not a zip file",)),
    Cli("a truncated .xlsx", XLSX_TOOLS, workbook_arg("truncated"), ("all.xlsx: not an Excel workbook (.xlsx)",)),
    Cli("a cell at XFD1048576", XLSX_TOOLS, workbook_arg("far"),
        ("all.xlsx: sheet 'Sheet'", "A1:XFD1048576", "past the bound of 5,000,000 cells")),
    Cli("a workbook of several sheets", XLSX_TOOLS, workbook_arg("sheets"),
        ("book.xlsx: a workbook of 2 sheets ('scores', 'notes')", "--sheet NAME")),
    Cli("--clip-norm -1", TRAIN_CV, ["--clip-norm", "-1"], ("--clip-norm must be >= 0 (0: no clipping), got -1",)),
    Cli("--seed -1", TRAIN_CV, ["--seed", "-1"], ("--seed must be in [0, 2**32)", "got -1")),
    Cli("--seed 8589934592", TRAIN_CV, ["--seed", "8589934592"], ("--seed must be in [0, 2**32)", "got 8589934592")),
    Cli("--weight-decay -1", TRAIN_CV, ["--weight-decay", "-1"], ("--weight-decay must be >= 0, got -1",)),
    Cli("--warmup-updates -5", TRAIN_CV, ["--warmup-updates", "-5"], ("--warmup-updates must be >= 0, got -5",)),
    Cli("--save-interval-updates -1", TRAIN_CV, ["--save-interval-updates", "-1"],
        ("--save-interval-updates must be >= 0", "got -1")),
    Cli("--max-train-rows -1", TRAIN_CV, ["--max-train-rows", "-1"], ("--max-train-rows must be positive", "got -1")),
    Cli("--max-train-rows 0", TRAIN_CV, ["--max-train-rows", "0"], ("--max-train-rows must be positive", "got 0")),
    Cli("--max-eval-rows 0", TRAIN_CV, ["--max-eval-rows", "0"], ("--max-eval-rows must be positive", "got 0")),
    Cli("--log-interval 0", TRAIN_CV, ["--log-interval", "0"], ("--log-interval must be positive, got 0",)),
    Cli("--lr-scheduler bogus", TRAIN_CV, ["--lr-scheduler", "bogus"],
        ("argument --lr-scheduler: invalid choice: 'bogus'", "'linear'")),
    Cli("--tensorboard-logdir naming a file", TRAIN_CV, logdir_file,
        ("--tensorboard-logdir", "is a file, not a folder")),
    Cli("--best-checkpoint-metric qwk without a step", TRAIN_CV, qwk_data,
        ("--best-checkpoint-metric qwk needs each score's step", "--score-step")),
]
ISSUE_34_PAIRS = [(case, tool) for case in ISSUE_34_CASES for tool in case.tools]


@pytest.mark.parametrize("case, tool", [pytest.param(c, t, id=f"{t}: {c.id}",
                                                     marks=[pytest.mark.slow] if t in CLI_TRAINED else [])
                                        for c, t in ISSUE_34_PAIRS])
def test_issue_34_options_and_workbooks_are_refused_in_one_line(case, tool, tmp_path, request, tokenizer, capsys,
                                                                monkeypatch):
    test_the_tools_refuse_in_one_line_and_write_nothing(case, tool, tmp_path, request, tokenizer, capsys, monkeypatch)


@pytest.mark.parametrize("tool, argv, line", [
    ("probe", ["--max-rows", "-1"], "--max-rows must be positive (leave it out for every row), got -1"),
    ("report", ["--bootstrap", "-1"], "--bootstrap must be >= 0 (0: no intervals), got -1"),
    ("report", ["--seed", "-1"], "--seed must be in [0, 2**32) (numpy's seeds), got -1"),
])
def test_probe_and_report_refuse_a_value_out_of_range(tool, argv, line, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        entry(tool)([str(tmp_path / "nowhere"), *argv])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"scorelib-{tool}: error: {line}"


def test_qwk_without_a_step_from_the_ranges_file_is_refused_before_anything_is_written(tmp_path):
    """A ranges file may give each trait its step: the check waits for the prompt table, and names the trait."""
    data = _trait_folder(tmp_path)
    ranges = tmp_path / "ranges.csv"
    ranges.write_text("trait,min,max,step\ncohesion,0,3,1\nsyntax,0,2,\n")
    with pytest.raises(ScorelibError, match=r"--best-checkpoint-metric qwk needs each score's step, and syntax has "
                                            r"none: give --score-step \(or a step column in --score-ranges\)"):
        scorelib.train(train_args(tmp_path / "save", data, *TWO_TRAITS, "--score-ranges", ranges,
                                  "--best-checkpoint-metric", "qwk"))
    assert not (tmp_path / "save").exists()
    one = tmp_path / "one.csv"
    one.write_text("prompt,min,max\na,0,3\nb,0,3\n")
    with pytest.raises(ScorelibError, match=r"qwk needs each score's step, and score has none"):
        scorelib.train(train_args(tmp_path / "save", csv(tmp_path, good())[0], "--score-ranges", one,
                                  "--best-checkpoint-metric", "qwk"))
    assert not (tmp_path / "save").exists()
