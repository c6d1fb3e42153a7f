"""The notebooks' bilingual text: Chinese beside every step, the glossary, the fast-mode banner.

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
GLOSSARY_TERMS = [
    "QWK", "quadratic weighted kappa", "二次加权 Kappa", "dynamic padding", "padding efficiency", "warm-up",
    "sample_size", "net_input", "checkpoint", "fine-tune", "cut-points", "fold", "k-fold cross-validation",
    "collater", "max_tokens", "prompt embedding", "sigmoid", "RMSE", "Pearson", "Spearman",
    "early stopping", "patience", "gradient accumulation", "update_freq", "AMP", "bf16", "fp16",
]


def cells(path, kind):
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [(c, "".join(c["source"])) for c in nb["cells"] if c["cell_type"] == kind]


def test_the_six_notebooks_are_found():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]


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
        assert "Step" in heading
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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_prints_the_fast_mode_banner(path):
    params = [text for c, text in cells(path, "code") if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1, f"{path.name}: one cell tagged parameters"
    text = params[0]
    assert "if FAST:" in text and "fast mode:" in text and "快速模式" in text, f"{path.name}: no fast-mode banner"
    assert "（完整运行见提交的输出）" in text
