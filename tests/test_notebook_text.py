"""The notebooks' bilingual text: English and Chinese in every markdown cell, the glossary, the fast-mode banner.

Reads the .ipynb files as JSON; runs nothing.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("0*.ipynb"))
CJK = re.compile(r"[\u4e00-\u9fff]")
STEP = re.compile(r"^## Step (\d+)\b")
# What a reader does not translate: fenced and inline code, images, link targets, HTML (anchors).
NOT_PROSE = re.compile(r"```.*?```|`[^`\n]*`|!\[[^\]]*\]\([^)]*\)|\]\([^)]*\)|<[^>]+>", re.S)
WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
ENGLISH_RUN = re.compile(r"[A-Za-z][A-Za-z'-]*(?:[ ,;:()\"]+[A-Za-z][A-Za-z'-]*)+")
CHINESE_RUN = re.compile(r"[\u4e00-\u9fff\u3000-\u303f\uff01-\uff60“”‘’·]+")  # Han characters and CJK punctuation
GLOSSARY_TERMS = [
    "QWK", "quadratic weighted kappa", "二次加权 Kappa", "dynamic padding", "padding efficiency", "warm-up",
    "sample_size", "net_input", "checkpoint", "fine-tune", "cut-points", "fold", "k-fold cross-validation",
    "collater", "max_tokens", "prompt embedding", "sigmoid", "RMSE", "Pearson", "Spearman",
    "early stopping", "patience", "gradient accumulation", "update_freq", "AMP", "bf16", "fp16",
]


def cells(path, kind):
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [(c, "".join(c["source"])) for c in nb["cells"] if c["cell_type"] == kind]


def test_the_notebooks_are_found():
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert numbers == [f"{i:02d}" for i in range(1, len(numbers) + 1)] and len(numbers) >= 5, numbers


def prose(text):
    """A markdown cell's text less what is not translated (code, images, link targets, HTML)."""
    return NOT_PROSE.sub(" ", text)


def language_problems(text):
    """Why a markdown cell is not bilingual, as a list of reasons (empty: it is).

    English: a run of at least 5 English words (a sentence, not a term inside Chinese prose).
    Chinese: at least 15 Han characters, a run of at least 8 (a sentence, not a quoted term such as the
    notes' "--task中自定义的参数", which once made an English-only cell look bilingual), and at least 0.4
    Han characters per English word of the lines that hold no Chinese, tables left out (every cell of 01-05
    has at least 1.1), so that one Chinese line beside several English paragraphs is not enough.
    """
    text = prose(text)
    english_run = max((len(WORD.findall(m.group())) for m in ENGLISH_RUN.finditer(text)), default=0)
    chinese_run = max((len(CJK.findall(m.group())) for m in CHINESE_RUN.finditer(text)), default=0)
    han = len(CJK.findall(text))
    english_words = sum(len(WORD.findall(line)) for line in text.split("\n")
                        if not CJK.search(line) and not line.lstrip().startswith("|"))
    problems = []
    if english_run < 5:
        problems.append("no English sentence")
    if han < 15 or chinese_run < 8:
        problems.append("no Chinese sentence")
    elif han < 0.4 * english_words:
        problems.append(f"{han} Chinese characters beside {english_words} English words: not all of it is translated")
    return problems


def nothing_to_translate(text):
    """The one exemption: a cell with no prose at all once code, images and links are removed (an image
    alone, a table of code names). Such a cell has no sentence to write twice. No cell uses it today."""
    text = prose(text)
    return not CJK.search(text) and len(WORD.findall(text)) < 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_markdown_cell_is_bilingual(path):
    bad = []
    for cell, text in cells(path, "markdown"):
        if nothing_to_translate(text):
            continue
        problems = language_problems(text)
        if problems:
            bad.append(f"cell {cell.get('id')} ({text.splitlines()[0][:60]!r}): {'; '.join(problems)}")
    assert not bad, f"{path.name}: markdown cells that are not bilingual:\n" + "\n".join(bad)


def test_the_language_check_itself():
    """A quoted Chinese term, half a translation and Chinese alone are caught; an image alone is exempt."""
    english = "Flags become attributes with `_` for `-`; the task's own arguments (the notes' \"--task中自定义的参数\") too."
    assert "no Chinese sentence" in language_problems(english)
    half = ("One sentence here. " * 40) + "\n\n中文：这里只翻译了一句话，其余都没有翻译。"
    assert any("not all of it" in p for p in language_problems(half))
    chinese_only = "中文：笔记的第一步是「拿到参数」，`scorelib.parse_args` 接受与 fairseq 相同的参数。"
    assert language_problems(chinese_only) == ["no English sentence"]
    assert nothing_to_translate("![the widget](images/widget-scored.png)")
    assert not language_problems("The notes' first step gets the arguments, in fairseq's order.\n\n" + chinese_only)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_step_cell_is_bilingual(path):
    numbers = []
    for _, text in cells(path, "markdown"):
        lines = text.split("\n")
        later = [line for line in lines[1:] if STEP.match(line)]
        assert not later, f"{path.name}: a step heading must be its cell's first line: {later[0]!r}"
        match = STEP.match(lines[0])
        if not match:
            continue
        numbers.append(int(match.group(1)))
        heading, body = lines[0], "\n".join(lines[1:])
        assert CJK.search(heading), f"{path.name}: no Chinese heading beside {heading!r}"
        assert CJK.search(body), f"{path.name}: no Chinese paragraph under {heading!r}"
    assert numbers == list(range(1, len(numbers) + 1)) and numbers, f"{path.name}: steps {numbers}"


def test_glossary_in_01_has_every_term():
    path = next(p for p in NOTEBOOKS if p.name.startswith("01"))
    found = [text for _, text in cells(path, "markdown") if "术语表" in text and "|---|" in text]
    assert len(found) == 1, "01 should hold one glossary (术语表) table"
    glossary = found[0]
    missing = [t for t in GLOSSARY_TERMS if t.lower() not in glossary.lower()]
    assert not missing, f"glossary lacks {missing}"
    rows = [line for line in glossary.split("\n") if line.startswith("|") and "---" not in line][1:]
    assert len(rows) >= 15
    for row in rows:
        english, chinese, explanation = [c.strip() for c in row.strip("|").split("|")][:3]
        assert english and CJK.search(chinese) and CJK.search(explanation), row


def glossary_rows():
    path = next(p for p in NOTEBOOKS if p.name.startswith("01"))
    glossary = next(text for _, text in cells(path, "markdown") if "术语表" in text and "|---|" in text)
    rows = [line for line in glossary.split("\n") if line.startswith("|") and "---" not in line][1:]
    return [[c.strip() for c in row.strip("|").split("|")][:3] for row in rows]


def test_glossary_tells_gold_score_target_and_z_score_apart():
    """标准分 in Chinese usually means a z-score; the gold score is 人工评分/金标准分, `target` the score scaled to [0, 1]."""
    rows = {english.split(" (")[0]: (chinese, explanation) for english, chinese, explanation in glossary_rows()}
    wanted = {"gold score": ["人工评分", "金标准分"], "target": ["目标值", "[0, 1]"], "z-score": ["标准分", "z 分数"]}
    for term, words in wanted.items():
        assert term in rows, f"the glossary has no row for {term!r}"
        chinese, explanation = rows[term]
        assert all(w in chinese for w in words), (term, chinese)
    z_explanation = rows["z-score"][1]
    assert "人工评分" in z_explanation and "目标值" in z_explanation, "the z-score row should say how it differs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_standard_score_only_means_a_z_score(path):
    """A cell that says 标准分 (not 金标准分) says z 分数 with it: the gold score is 人工评分 or 金标准分."""
    for cell, text in cells(path, "markdown"):
        if re.search(r"(?<!金)标准分", text):
            assert "z 分数" in text, f"{path.name} cell {cell.get('id')}: 标准分 for the gold score? use 人工评分/金标准分"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_prints_the_fast_mode_banner(path):
    params = [text for c, text in cells(path, "code") if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1, f"{path.name}: one cell tagged parameters"
    text = params[0]
    assert "if FAST:" in text and "fast mode:" in text and "快速模式" in text, f"{path.name}: no fast-mode banner"
    assert "（完整运行见提交的输出）" in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_cell_is_one_chinese_word(path):
    """A notebook cell is 单元格 throughout, never 格子, 检查格, 代码格 or 下一格 / 这一格."""
    for kind in ("markdown", "code"):
        for cell, text in cells(path, kind):
            found = re.findall(r"格子|检查格|代码格|下一格|这一格", text)
            assert not found, f"{path.name} cell {cell.get('id')}: {found}; say 单元格"


def test_fold_ensemble_is_defined_in_the_glossary():
    """折集成 is a coined term: the glossary defines it (各折模型的集成) for every notebook that uses it."""
    rows = {english: (chinese, explanation) for english, chinese, explanation in glossary_rows()}
    assert "fold ensemble" in rows and "折集成" in rows["fold ensemble"][0] and "各折模型的集成" in rows["fold ensemble"][0]


def test_the_explanations_of_the_notes_match_their_text():
    """02 Step 5: the notes' s['score'] runs on our rows (each has score and target), the risk is unscaled gold;
    03 Step 2: the notes' config.update names no setting ({"xx": xx, "x": x}), so no value is put in its mouth."""
    notes = (Path(__file__).resolve().parents[2] / "shared" / "SEED_NOTES.md")
    if notes.is_file():
        text = notes.read_text(encoding="utf-8")
        assert "[s['score'] for s in samples]" in text and 'config.update({"xx":xx, "x":x})' in text
    p02 = next(p for p in NOTEBOOKS if p.name.startswith("02"))
    score_cells = [t for _, t in cells(p02, "markdown") if "s['score']" in t]
    assert score_cells and all("KeyError" not in t and "unscaled" not in t.lower() or "not scaled" in t
                               for t in score_cells)
    assert any("not scaled" in t and "未缩放" in t for t in score_cells)
    p03 = next(p for p in NOTEBOOKS if p.name.startswith("03"))
    update = [t for _, t in cells(p03, "code") if "config.update" in t]
    assert update and all("dropout 0.1" not in t for t in update) and any('{"xx": xx, "x": x}' in t for t in update)
