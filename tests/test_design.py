"""The package's shape: imports point one way (no cycles, function-level imports included), one option check
shared by the three training tools, files small enough to read in one sitting, and one code path for K scores."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "scorelib"


def scorelib_imports(path: Path) -> set[str]:
    """Every scorelib module ``path`` imports, at module level or inside functions (``from . import x`` too)."""
    here = path.stem
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:  # from .x import y
                found.add(node.module.split(".")[0])
            elif node.level == 1:  # from . import x, y
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.split(".")[0] == "scorelib":
                found.add(node.module.split(".")[1] if "." in node.module else "__init__")
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("scorelib."))
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    return {m for m in found if m in modules and m != here}


def import_graph() -> dict[str, set[str]]:
    return {p.stem: scorelib_imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_imports_point_one_way_function_level_imports_included():
    graph = import_graph()
    assert "tasks" in graph["options"], "the walk must see options' function-level import of tasks"
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_no_private_name_is_imported_across_modules():
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("scorelib")):
                private = [a.name for a in node.names if a.name.startswith("_") and a.name != "__version__"]
                assert not private, f"{path.name} imports {private} from {node.module}"


def test_no_module_is_over_300_lines():
    long = {p.name: n for p in PACKAGE.glob("*.py") if (n := len(p.read_text(encoding="utf-8").splitlines())) > 300}
    assert not long, long


def test_at_most_ten_lines_branch_on_traits():
    """One score is one trait: the single-score and K-trait cases share every path but the naming at the edges."""
    pattern = re.compile(r"if (not )?[a-z_.]*traits|traits else|if .*\.traits")
    hits = [f"{p.name}:{i}" for p in sorted(PACKAGE.glob("*.py"))
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert len(hits) <= 10, hits


@pytest.mark.parametrize("tools, bad, message", [
    (("train", "cv"), ["--update-freq", "0"], "--update-freq must be positive, got 0"),
    (("train", "cv"), ["--fp16", "--bf16"], "--fp16 and --bf16 exclude each other"),
    (("train", "cv", "eval"), ["--long-text", "chunks", "--max-length", "64", "--chunk-stride", "64"],
     "--chunk-stride 64: the windows' overlap must be at least 0 and smaller than the window (--max-length 64)"),
])
def test_train_cv_and_eval_refuse_a_bad_option_with_the_same_message(tmp_path, tools, bad, message):
    """One post-parse check (options.check_args) serves the three tools: the same line, wherever the option exists."""
    lines = {}
    for tool in tools:
        argv = ([str(tmp_path)] if tool == "eval" else ["--save-dir", str(tmp_path / "run")]) + bad
        proc = subprocess.run([sys.executable, "-c", f"import sys; from scorelib.cli.{tool} import cli_main; "
                               f"sys.exit(cli_main({argv!r}))"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (tool, proc.stderr)
        lines[tool] = proc.stderr.strip().splitlines()[-1]
        assert not (tmp_path / "run").exists(), f"{tool} wrote its save dir before refusing"
    assert {line.split(": error: ", 1)[1] for line in lines.values()} == {message}, lines
