"""A stand-in for raw.githubusercontent.com on 127.0.0.1, serving files laid out and named as upstream.

The files are rebuilt from the project's copies in ``../shared/data``: the Mohler set's per-question files from
``mohler_texas_sag_v2.csv``, CLEAR's workbook from its two CSV parts, and for ELLIPSE a CSV in the corpus's column
layout made from ``feedback_prize_ell`` (the writer groups, prompts and Overall it adds are synthetic, drawn with a
seed: the Kaggle copy has none). The rebuilt files are not the upstream bytes, so :func:`build_upstream` returns
their own git blob ids, which the tests pin in place of the real ones (``scorelib.datasets.sets.SOURCES``).

Faults for the tests: ``server.faults[url_path] = "truncate" | "html" | "corrupt" | "missing"``; ``server.delay``
slows every answer; ``server.hits`` counts the requests per path.
"""
from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd

from scorelib.datasets import sets
from scorelib.datasets.fetch import Source, blob_id

ELLIPSE_COLUMNS = ["text_id_kaggle", "full_text", "gender", "grade", "race_ethnicity", "num_words", "num_words2",
                   "num_words3", "num_sent", "num_para", "num_word_div_para", "MTLD", "TTR", "Type", "Token", "task",
                   "SES", "prompt", "Overall", "Cohesion", "Syntax", "Vocabulary", "Phraseology", "Grammar",
                   "Conventions", "set"]


def mohler_files(shared: Path) -> dict[str, bytes]:
    """ShortAnswerGrading_v2.0's data/ files (those the loader reads), rebuilt from the shared table."""
    raw = pd.read_csv(shared / "mohler_sag" / "mohler_texas_sag_v2.csv", dtype={"id": str, "question_id": str},
                      keep_default_na=False)
    files, order = {}, []
    for q, rows in raw.groupby("question_id", sort=False):
        order.append(("#" if str(rows["ignored_in_paper"].iloc[0]) == "True" else "") + q)
        files[f"raw/{q}"] = "".join(f"{q} {t}\n" for t in rows["student_answer"])
        for name, column in (("me", "score_me"), ("other", "score_other"), ("ave", "score_avg")):
            files[f"scores/{q}/{name}"] = "".join(f"{float(v)!r}\n" for v in rows[column])
    first = raw.drop_duplicates("question_id")
    files["raw/questions"] = "".join(f"{q} {t}\n" for q, t in zip(first["question_id"], first["question"]))
    files["raw/answers"] = "".join(f"{q} {t}\n" for q, t in zip(first["question_id"], first["desired_answer"]))
    files["docs/files"] = "".join(f"{q}\n" for q in order)
    return {k: v.encode("latin-1") for k, v in files.items()}


def ellipse_frame(shared: Path) -> pd.DataFrame:
    """The ELL essays in ELLIPSE's column layout; groups, prompts and Overall synthetic (seeded)."""
    ell = pd.concat([pd.read_csv(shared / "feedback_prize_ell" / f"train_part{i}of3.csv", dtype=str,
                                 keep_default_na=False) for i in (1, 2, 3)], ignore_index=True)
    rng = np.random.default_rng(0)
    n = len(ell)
    words = ell["full_text"].str.split().str.len()
    traits = ell[sets.ELL_TRAITS].astype(float)
    out = pd.DataFrame({
        "text_id_kaggle": ell["text_id"], "full_text": ell["full_text"],
        "gender": rng.choice(["Male", "Female"], n), "grade": rng.choice(["8", "9", "10", "11", "12"], n),
        "race_ethnicity": rng.choice(["Hispanic/Latino", "Asian/Pacific Islander", "White", "Black/African American"],
                                     n),
        "num_words": words, "num_words2": words, "num_words3": words, "num_sent": 0, "num_para": 0,
        "num_word_div_para": 0, "MTLD": 0, "TTR": 0, "Type": 0, "Token": words, "task": "Independent",
        "SES": rng.choice(["Economically disadvantaged", "Not economically disadvantaged"], n),
        "prompt": rng.choice(["Distance learning", "Career commitment", "Success and failure"], n),
        "Overall": (traits.mean(axis=1) * 2).round() / 2})
    for t in sets.ELL_TRAITS:
        out[t.capitalize()] = ell[t]
    out["set"] = "train"
    return out[ELLIPSE_COLUMNS]


def build_upstream(shared: Path, root: Path, names=("mohler", "clear", "ellipse")) -> dict[str, Source]:
    """Write the files under ``root/OWNER/REPO/COMMIT/PATH``; returns each set's :class:`Source` with the rebuilt
    files' own blob ids (also written to ``root/pins.json`` for a notebook's kernel)."""
    sources = {}
    for name in names:
        real = sets.SOURCES[name]
        if name == "mohler":
            files = mohler_files(shared)
        elif name == "clear":
            import io

            parts = pd.concat([pd.read_csv(shared / "clear_readability" / f"CLEAR_corpus_final_part{i}of2.csv")
                               for i in (1, 2)], ignore_index=True)
            buf = io.BytesIO()
            with pd.ExcelWriter(buf, engine="openpyxl") as writer:
                parts.to_excel(writer, sheet_name="Data", index=False)
            files = {"CLEAR_corpus_final.xlsx": buf.getvalue()}
        else:
            files = {"ELLIPSE_Final_github_train.csv": ellipse_frame(shared).to_csv(index=False).encode("utf-8")}
        for rel, data in files.items():
            path = root / real.repo / real.commit / real.path(rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        sources[name] = Source(real.repo, real.commit, real.folder, {rel: blob_id(d) for rel, d in files.items()})
    (root / "pins.json").write_text(json.dumps({n: s.files for n, s in sources.items()}))
    return sources


class UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path):
        self.root, self.faults, self.hits, self.delay = Path(root), {}, Counter(), 0.0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def close(self):
        self.shutdown()
        self.server_close()


class Handler(SimpleHTTPRequestHandler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=str(args[2].root), **kwargs)

    def log_message(self, *args):
        pass

    def do_GET(self):
        import time
        import urllib.parse

        server = self.server
        path = urllib.parse.unquote(self.path)
        with server.lock:
            server.hits[path] += 1
        time.sleep(server.delay)
        fault = server.faults.get(path)
        file = server.root / path.lstrip("/")
        if fault == "missing" or not file.is_file():
            self.send_error(404, "Not Found")
            return
        data = file.read_bytes()
        if fault == "html":
            data = b"<!DOCTYPE html><html><body>Rate limit exceeded</body></html>"
        elif fault == "corrupt":
            data = data[:-1] + bytes([data[-1] ^ 1])
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if fault == "html" else "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if fault == "truncate" else data)
        if fault == "truncate":
            self.close_connection = True
