"""Tidy executed notebooks before they are committed, and refuse ones that leak local paths.

Usage: python tools/clean_notebooks.py [--check] NOTEBOOK.ipynb [...]

For each notebook: drop the widget state (``metadata.widgets``), drop execution timing
(``execution`` / ``ExecuteTime`` in cell metadata), set the kernelspec to ``python3``,
and keep every output but the widget views, which cannot render without that state: a
tqdm progress bar (it would read "0%" forever on GitHub; the epoch lines printed beside
it keep the progress readable) is dropped, and another widget's text becomes a note that
it is interactive. Then look through the text of every output (streams, plain text,
HTML, Markdown, JSON, tracebacks) for absolute paths of the machine that ran it
(``/work/``, ``/root/``, ``/home/``, ``/tmp/``, ``site-packages``): such outputs read
badly on GitHub and tell nothing to a learner, so the script names the notebook, cell
and output, and exits with status 1. With ``--check`` nothing is written.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

FORBIDDEN = ("/work/", "/root/", "/home/", "/tmp/", "site-packages")
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
TIMING_KEYS = ("execution", "ExecuteTime")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
TQDM_TEXT = re.compile(r"\d+%\|")  # "epoch 001:   0%|          | 0/79 [00:00<?, ?it/s]"
WIDGET_NOTE = "(an interactive widget: run the notebook to use it)"


def tidy_widget_outputs(cell) -> bool:
    """Drop tqdm bars rendered as widgets; give other widget views a readable text; True if anything changed."""
    kept, changed = [], False
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        if WIDGET_VIEW in data:
            text = data.get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            if TQDM_TEXT.search(text):
                changed = True
                continue
            if text != WIDGET_NOTE:
                data["text/plain"], changed = WIDGET_NOTE, True
        kept.append(output)
    cell["outputs"] = kept
    return changed


def clean(nb) -> bool:
    """Remove widget state and timing metadata, normalize the kernelspec; True if anything changed."""
    changed = False
    if "widgets" in nb.metadata:
        del nb.metadata["widgets"]
        changed = True
    if dict(nb.metadata.get("kernelspec", {})) != KERNELSPEC:
        nb.metadata["kernelspec"] = dict(KERNELSPEC)
        changed = True
    for cell in nb.cells:
        if cell.get("cell_type") == "code" and tidy_widget_outputs(cell):
            changed = True
        for key in TIMING_KEYS:
            if key in cell.get("metadata", {}):
                del cell.metadata[key]
                changed = True
    return changed


def output_texts(output):
    """The textual parts of one output (images are skipped: base64 may hold '/tmp/' by chance)."""
    kind = output.get("output_type")
    if kind == "stream":
        yield output.get("text", "")
    elif kind == "error":
        yield output.get("evalue", "")
        yield "\n".join(output.get("traceback", []))
    elif kind in ("execute_result", "display_data"):
        for mime, value in output.get("data", {}).items():
            if mime.startswith("text/") or mime.endswith("json") or mime == "image/svg+xml":
                yield value if isinstance(value, str) else str(value)


def find_leaks(nb) -> list[str]:
    """Describe every output that contains a forbidden path."""
    problems = []
    for n, cell in enumerate(nb.cells, start=1):
        for k, output in enumerate(cell.get("outputs", []), start=1):
            for text in output_texts(output):
                for needle in FORBIDDEN:
                    at = text.find(needle)
                    if at >= 0:
                        line = text[max(0, text.rfind("\n", 0, at) + 1): text.find("\n", at) % (len(text) + 1)]
                        problems.append(f"cell {n} (id {cell.get('id', '?')}), output {k}: {needle!r} in: "
                                        f"{line.strip()[:160]}")
                        break
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="only check for leaked paths; write nothing")
    args = parser.parse_args(argv)
    failed = False
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        if not args.check and clean(nb):
            nbformat.write(nb, path)
            print(f"cleaned {path}")
        for problem in find_leaks(nb):
            print(f"{path}: {problem}", file=sys.stderr)
            failed = True
    if failed:
        print("error: outputs contain absolute paths of this machine; print relative paths and re-run",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
