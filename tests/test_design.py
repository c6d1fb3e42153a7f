"""The package's shape: the core in fairseq's folders imports no extra and no command, imports point one way (no
cycles, function-level imports included), the course's core stays small enough to read, one option check shared by
the training tools, and one code path for K scores."""
import ast
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "scorelib"
EXTRAS = ("hub", "cv", "cutpoints", "stack", "report", "explain", "datasets", "export")  # each part beyond the course, a folder of its own
COMMANDS = ("cli",)  # fairseq_cli/
CORE_LIMIT = 3000  # lines of code (cloc's count: no blank, comment or docstring lines) of the course's core
# where scorelib-train starts, with the classes it registers: the closure of their module-level imports is what a
# run on one table loads (imports inside functions are branches: the demo data, --long-text, extras' steps)
COURSE_ENTRIES = ("scorelib.training", "scorelib.tasks.text_scoring", "scorelib.models.scoring_model",
                  "scorelib.criterions.score_mse", "scorelib.options", "scorelib.logging.console")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(name: str) -> str:
    """``core``, ``extra`` or ``command``: the first folder under scorelib/ decides."""
    parts = name.split(".")
    top = parts[1] if len(parts) > 1 else ""
    return "command" if top in COMMANDS else "extra" if top in EXTRAS else "core"


def scorelib_imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Every scorelib module ``path`` imports (``from scorelib.x import y`` counts ``scorelib.x.y`` where that is a
    module, else ``scorelib.x``), inside functions too unless ``top_level_only``."""
    known = modules()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "scorelib" and not node.level:
            for alias in node.names:
                found.add(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: a relative import; scorelib imports by absolute name, as fairseq does")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "scorelib")
    return {m for m in found if m in known and m != module_name(path)}


def import_graph(top_level_only: bool = False) -> dict[str, set[str]]:
    return {name: scorelib_imports(path, top_level_only) for name, path in modules().items() if name != "scorelib"}


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


def code_lines(path: Path) -> int:
    """Lines holding code, as cloc counts Python: no blank lines, comments or docstrings."""
    text = path.read_text(encoding="utf-8")
    docstrings = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body \
                and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant) \
                and isinstance(node.body[0].value.value, str):
            docstrings.update(range(node.body[0].lineno, node.body[0].end_lineno + 1))
    lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                            tokenize.ENDMARKER):
            lines.update(range(tok.start[0], tok.end[0] + 1))
    return len(lines - docstrings)


def course_core() -> set[str]:
    """The modules a ``scorelib-train`` run on one table loads: the module-level import closure of its entries."""
    graph, seen, todo = import_graph(top_level_only=True), set(), list(COURSE_ENTRIES)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, ()))
    return seen


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_walk_sees_function_level_imports_and_folders():
    graph = import_graph()
    assert "scorelib.tasks.text_scoring" in graph["scorelib.options"], "options' function-level import of the task"
    assert "scorelib.data.demo" in graph["scorelib.data.tables"], "tables' function-level import of the demo data"
    assert "scorelib.data.demo" not in import_graph(top_level_only=True)["scorelib.data.tables"]
    assert {layer(n) for n in graph} == {"core", "extra", "command"}


def test_imports_point_one_way_function_level_imports_included():
    """commands -> extras -> core; the core imports no extra and no command, an extra no command; no cycles."""
    graph = import_graph()
    rank = {"core": 0, "extra": 1, "command": 2}
    upward = sorted(f"{a} imports {b}" for a, deps in graph.items() for b in deps if rank[layer(b)] > rank[layer(a)])
    assert not upward, upward
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_the_course_core_is_small_enough_to_read(capsys):
    """What notebooks 01-04 teach (a ``scorelib-train`` run on one table) is core only and at most CORE_LIMIT lines
    of code; the table is printed (pytest -s) for README's Development page."""
    core = course_core()
    assert all(layer(n) == "core" for n in core), sorted(n for n in core if layer(n) != "core")
    for branch in ("scorelib.data.demo", "scorelib.cutpoints.thresholds", "scorelib.stack.tfidf", "scorelib.cli.cv"):
        assert branch not in core, f"{branch} is loaded by every training run"
    paths = modules()
    rows = sorted((code_lines(paths[n]), len(paths[n].read_text(encoding="utf-8").splitlines()), n) for n in core)
    with capsys.disabled():
        print("\n".join(f"{code:5d} {lines:5d}  {name}" for code, lines, name in rows))
        print(f"{sum(r[0] for r in rows):5d} {sum(r[1] for r in rows):5d}  course core, {len(rows)} modules "
              f"(lines of code, all lines)")
    assert sum(r[0] for r in rows) <= CORE_LIMIT


def test_code_lines_leave_out_blanks_comments_and_docstrings(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text('"""Doc\nstring."""\n\nx = 1  # a comment\n# only a comment\n\n\ndef f():\n    """One."""\n'
                      '    return """not a\ndocstring"""\n', encoding="utf-8")
    assert code_lines(sample) == 4  # x = 1, def f():, and the two lines of the returned string


def test_no_private_name_is_imported_across_modules():
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("scorelib"):
                private = [a.name for a in node.names if a.name.startswith("_") and a.name != "__version__"]
                assert not private, f"{path.name} imports {private} from {node.module}"


def test_import_scorelib_is_cheap_and_keeps_its_public_names():
    code = ("import sys, scorelib; heavy = [m for m in ('torch', 'transformers', 'pandas', 'sklearn') if m in sys.modules]; "
            "assert not heavy, heavy; "
            "names = ['load', 'train', 'TextScoringTask', 'ScoringModel', 'PromptTable', 'register_task', "
            "'register_model', 'register_criterion', 'Scorer', 'ScoringDataset', 'parse_args', 'set_seed']; "
            "assert all(callable(getattr(scorelib, n)) for n in names); "
            "from scorelib import train, load; print(train.__module__, load.__module__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["scorelib.cli.train", "scorelib.hub.scorer"]


def test_at_most_ten_lines_branch_on_traits():
    """One score is one trait: the single-score and K-trait cases share every path but the naming at the edges."""
    pattern = re.compile(r"if (not )?[a-z_.]*traits|traits else|if .*\.traits")
    hits = [f"{p.relative_to(PACKAGE)}:{i}" for p in sorted(PACKAGE.rglob("*.py"))
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
