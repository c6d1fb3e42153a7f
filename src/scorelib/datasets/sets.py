"""The data sets: where each comes from, how its table is derived, and how to cite it. One reader per set.

Each set is read either from its upstream files (downloaded, pinned in ``pins.json``) or from a local copy laid
out as the project's ``../shared/data`` (``$SCORELIB_DATA``); both give the same table, in scorelib's columns:
``key, prompt, text`` (``context`` where the set has one), the score (``score``) or the traits, then any group
or rater columns. ``tests/test_datasets.py`` checks that the two ways give equal tables.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scorelib.datasets.fetch import Source
from scorelib.errors import DataError

PINS = json.loads((Path(__file__).with_name("pins.json")).read_text(encoding="utf-8"))
SOURCES = {name: Source(p["repo"], p["commit"], p["folder"], p["files"]) for name, p in PINS.items()}
ELL_TRAITS = ["cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions"]


@dataclass(frozen=True)
class DataSet:
    """One data set: its card's fixed text, its local layout, its two readers and its training options."""

    name: str
    title: str
    citation: str
    license: str
    derivation: str  # from the upstream files
    local_folder: str
    local_files: tuple
    local_note: str  # what the local copy is, and how it differs from the download
    options: dict = field(default_factory=dict)  # scorelib-train defaults for this set (dest -> value)

    @property
    def source(self) -> Source:
        return SOURCES[self.name]


# ----------------------------------------------------------------------------------------------------- Mohler
def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="latin-1").split("\n")


def _keyed(path: Path) -> dict[str, str]:
    """``ID text`` lines as ``{ID: text}``."""
    return {k: v.strip() for k, _, v in (line.partition(" ") for line in _lines(path) if line.strip())}


def mohler_upstream(folder: Path) -> pd.DataFrame:
    """The per-question files of ShortAnswerGrading_v2.0 as one row per answer (the shared copy's columns).

    Line i of ``raw/Q`` (``Q answer``) pairs with line i of ``scores/Q/{me,other,ave}``; the question and the
    reference answer come from ``raw/questions`` and ``raw/answers``; ``docs/files`` lists the questions, those
    commented out (``#``) being the ones the paper left out. Files are latin-1; texts are stripped.
    """
    questions, answers = _keyed(folder / "raw" / "questions"), _keyed(folder / "raw" / "answers")
    rows = []
    for entry in (line.strip() for line in _lines(folder / "docs" / "files") if line.strip()):
        q = entry.lstrip("#")
        texts = [line for line in _lines(folder / "raw" / q) if line.strip()]
        scores = {k: [line for line in _lines(folder / "scores" / q / k) if line.strip()] for k in ("me", "other", "ave")}
        for k, values in scores.items():
            if len(values) != len(texts):
                raise DataError(f"{folder / 'scores' / q / k}: {len(values)} scores for the {len(texts)} answers "
                                f"of {folder / 'raw' / q}")
        for i, line in enumerate(texts):
            qid, _, text = line.partition(" ")
            if qid != q:
                raise DataError(f"{folder / 'raw' / q}: line {i + 1} starts with {qid!r}, not the question id {q!r}")
            rows.append({"id": f"{q}.{i}", "question_id": q, "assignment": int(q.split(".")[0]),
                         "question_num": int(q.split(".")[1]), "ignored_in_paper": entry.startswith("#"),
                         "question": questions[q], "desired_answer": answers[q], "student_answer": text.strip(),
                         "score_me": float(scores["me"][i]), "score_other": float(scores["other"][i]),
                         "score_avg": float(scores["ave"][i])})
    return pd.DataFrame(rows)


def mohler_local(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "mohler_texas_sag_v2.csv", dtype={"id": str, "question_id": str})


def mohler_table(raw: pd.DataFrame, include_ignored: bool = False) -> tuple[pd.DataFrame, dict]:
    ignored = raw["ignored_in_paper"].astype(str).str.lower().eq("true").to_numpy()
    kept = raw if include_ignored else raw[~ignored]
    table = pd.DataFrame({"key": kept["id"].astype(str), "prompt": kept["question_id"].astype(str),
                          "text": kept["student_answer"].astype(str),
                          "context": kept["question"] + " " + kept["desired_answer"],
                          "score": kept["score_avg"].astype(float), "assignment": kept["assignment"].astype(int),
                          "grader1": kept["score_other"].astype(float), "grader2": kept["score_me"].astype(float)})
    if include_ignored:
        table["ignored_in_paper"] = ignored
    dropped = {} if include_ignored else {"questions the paper left out (ignored_in_paper; include_ignored=True "
                                          "keeps them)": int(ignored.sum())}
    return table.reset_index(drop=True), {"read": len(raw), "kept": len(table), "dropped": dropped}


# ----------------------------------------------------------------------------------------------------- CLEAR
def clear_upstream(folder: Path) -> pd.DataFrame:
    return pd.read_excel(folder / "CLEAR_corpus_final.xlsx", sheet_name="Data")


def clear_local(folder: Path) -> pd.DataFrame:
    return pd.concat([pd.read_csv(folder / f"CLEAR_corpus_final_part{i}of2.csv") for i in (1, 2)], ignore_index=True)


def clear_table(raw: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    table = pd.DataFrame({"key": raw["ID"].astype(str), "prompt": "0", "text": raw["Excerpt"].astype(str),
                          "score": raw["BT_easiness"].astype(float), "se": raw["s.e."].astype(float),
                          "category": raw["Categ"].astype(str)})
    return table, {"read": len(raw), "kept": len(table), "dropped": {}}


# -------------------------------------------------------------------------------------------- ELLIPSE / ELL
ELLIPSE_GROUPS = {"gender": "gender", "race_ethnicity": "race_ethnicity", "SES": "ses", "grade": "grade"}


def _need(raw: pd.DataFrame, columns, path) -> None:
    missing = [c for c in columns if c not in raw.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; columns found: {list(raw.columns)}")


def ellipse_upstream(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "ELLIPSE_Final_github_train.csv", dtype=str, keep_default_na=False)


def ell_local(folder: Path) -> pd.DataFrame:
    return pd.concat([pd.read_csv(folder / f"train_part{i}of3.csv", dtype=str, keep_default_na=False)
                      for i in (1, 2, 3)], ignore_index=True)


def ellipse_table(raw: pd.DataFrame, path) -> tuple[pd.DataFrame, dict]:
    """Either layout: ELLIPSE's (``text_id_kaggle``, ``prompt``, ``Cohesion``..., ``Overall``, writer groups) or the
    Kaggle copy's (``text_id``, ``cohesion``..., no prompt, no groups)."""
    upstream = "text_id_kaggle" in raw.columns
    traits = {t.capitalize() if upstream else t: t for t in ELL_TRAITS}
    if upstream:
        traits["Overall"] = "overall"
    _need(raw, ["text_id_kaggle" if upstream else "text_id", "full_text", *traits] + (["prompt"] if upstream else []),
          path)
    table = pd.DataFrame({"key": raw["text_id_kaggle" if upstream else "text_id"],
                          "prompt": raw["prompt"] if upstream else "0", "text": raw["full_text"]})
    for column, trait in traits.items():
        values = pd.to_numeric(raw[column].str.strip(), errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise DataError(f"{path}: row {row + 2}, column {column!r}: {raw[column].iloc[row]!r} is not a number")
        table[trait] = values.astype(float)
    for column, name in ELLIPSE_GROUPS.items():
        if upstream and column in raw.columns:
            table[name] = raw[column].astype(str)
    return table, {"read": len(raw), "kept": len(table), "dropped": {}}


# ---------------------------------------------------------------------------------------------------- catalog
SETS = {
    "mohler": DataSet(
        name="mohler", title="Mohler et al. short-answer grading (UNT computer science, v2.0)",
        citation="Michael Mohler, Razvan Bunescu and Rada Mihalcea (2011). Learning to Grade Short Answer Questions "
                 "using Semantic Similarity Measures and Dependency Graph Alignments. ACL-HLT 2011, Portland, Oregon.",
        license="no license stated (the data set's README asks for the citation only): research use",
        derivation="one row per student answer: line i of data/raw/Q paired with line i of data/scores/Q/{me,other,"
                   "ave}, the question and reference answer from data/raw/questions and data/raw/answers (latin-1, "
                   "texts stripped); questions commented out in data/docs/files (4.6, 4.7, 8.5, 9.5, 9.7, 12.3) are "
                   "those the paper left out. key = Q.i, prompt = question id, context = question + reference answer, "
                   "score = the graders' average on 0-5 (exams 11-12 were graded 0-10 and rescaled), grader1 = the TA "
                   "(score_other), grader2 = M. Mohler (score_me), on the graded scale",
        local_folder="mohler_sag", local_files=("mohler_texas_sag_v2.csv",),
        local_note="mohler_texas_sag_v2.csv, the same derivation written out as one table (equal row for row)",
        options={"score_range": [0.0, 5.0], "score_step": 0.25}),
    "clear": DataSet(
        name="clear", title="CLEAR corpus (CommonLit Ease of Readability)",
        citation="Crossley, S. A., Heintz, A., Choi, J., Batchelor, J., Karimi, M., & Malatinszky, A. A large-scaled "
                 "corpus for assessing text readability. Behavior Research Methods (2022). Also: Crossley, S. A., "
                 "Heintz, A., Choi, J., Batchelor, J., & Karimi, M. (2021). The CommonLit Ease of Readability (CLEAR) "
                 "Corpus. Proceedings of the 14th International Conference on Educational Data Mining (EDM).",
        license="CC BY-NC-SA 4.0 (the corpus); each excerpt's own source license is in the workbook's License column",
        derivation="sheet 'Data' of CLEAR_corpus_final.xlsx, one row per excerpt: key = ID, text = Excerpt, score = "
                   "BT_easiness (Bradley-Terry easiness from teachers' pairwise comparisons; higher is easier), se = "
                   "its standard error, category = Categ (Lit or Info); one prompt ('0')",
        local_folder="clear_readability", local_files=("CLEAR_corpus_final_part1of2.csv", "CLEAR_corpus_final_part2of2.csv"),
        local_note="the sheet 'Data' exported as two CSV parts (equal row for row)",
        options={"score_range": [-3.7, 1.8]}),
    "ellipse": DataSet(
        name="ellipse", title="ELLIPSE corpus, train split (English learners' essays, six analytic traits)",
        citation="Crossley, S. A., Tian, Y., Baffour, P., Franklin, A., Kim, Y., Morris, W., Benner, B., Picou, A., & "
                 "Boser, U. (2023). Measuring second language proficiency using the English Language Learner Insight, "
                 "Proficiency and Skills Evaluation (ELLIPSE) Corpus. International Journal of Learner Corpus "
                 "Research, 9(2), 248-269.",
        license="CC BY-NC-SA 4.0: attribution, non-commercial use only, share-alike",
        derivation="ELLIPSE_Final_github_train.csv (the corpus's train split; its test split is not used), one row "
                   "per essay: key = text_id_kaggle, prompt = the essay's prompt, text = full_text, the six traits "
                   "cohesion ... conventions and overall (1.0-5.0 in steps of 0.5), and the writers' groups gender, "
                   "race_ethnicity, ses (SES) and grade",
        local_folder="feedback_prize_ell", local_files=("train_part1of3.csv", "train_part2of3.csv", "train_part3of3.csv"),
        local_note="the Kaggle Feedback Prize ELL train.csv in three parts: the same 3,911 essays and six traits, "
                   "without prompts, the overall score and the writers' groups",
        options={"score_column": ",".join(ELL_TRAITS), "score_range": [1.0, 5.0], "score_step": 0.5}),
}

READERS = {  # name: (upstream reader, local reader, table builder)
    "mohler": (mohler_upstream, mohler_local, lambda raw, path, **kw: mohler_table(raw, **kw)),
    "clear": (clear_upstream, clear_local, lambda raw, path, **kw: clear_table(raw)),
    "ellipse": (ellipse_upstream, ell_local, lambda raw, path, **kw: ellipse_table(raw, path)),
}
