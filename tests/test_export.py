"""``scorelib-export``: ONNX graphs scored by onnxruntime without PyTorch, in agreement with the PyTorch scorer.

fp32 agrees within :data:`FP32_TOL` on every text; int8 within :data:`INT8_MAX` of a prompt's range on any text
(:data:`INT8_MEAN` on average), with QWK and Pearson on the demo test split within 0.005 of fp32.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import scorelib  # noqa: E402
from conftest import module_scratch, train_args  # noqa: E402
from scorelib.cli.export import cli_main as export_cli  # noqa: E402
from scorelib.cli.score import cli_main as score_cli  # noqa: E402
from scorelib.data import demo  # noqa: E402
from scorelib.errors import CheckpointError, MissingFileError  # noqa: E402
from scorelib.export.onnx import export  # noqa: E402
from scorelib.export.runtime import MANIFEST, Encoder, manifest_digest  # noqa: E402
from scorelib.metrics import compute_metrics  # noqa: E402

pytestmark = pytest.mark.slow  # every test here reads a real training run

FP32_TOL = 1e-4  # on the prompt's scale
INT8_MAX, INT8_MEAN = 0.05, 0.01  # of the prompt's range: the largest and the mean difference from fp32
LONG = ("A stack keeps its items in order: the last one pushed is the first one popped off the top, and a queue "
        "serves them in the order they came. ") * 12
BLOCK_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked in this test ({name})")
sys.meta_path.insert(0, NoTorch())
"""


def save_dir_copy(source: Path, target: Path) -> Path:
    """A save dir's files that scoring reads (no checkpoint_last, no results)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoint_last.pt", "results", "*.lock"))
    return target


def predict_split(scorer, frame) -> dict:
    """:meth:`Scorer.predict` of every row, prompt by prompt, in the frame's order: ``pred``, ``spread``."""
    out = {}
    for pid in pd.unique(frame["prompt"]):
        rows = np.flatnonzero((frame["prompt"] == pid).to_numpy())
        for key, x in scorer.predict(frame["text"].iloc[rows].tolist(), prompt=pid).items():
            out.setdefault(key, np.full((len(frame), scorer.table.num_traits), np.nan))[rows] = \
                np.reshape(x, (len(rows), -1))
    return out


def ranges_of(scorer, frame) -> np.ndarray:
    return np.array([scorer.table.ranges[p][1] - scorer.table.ranges[p][0] for p in frame["prompt"]])[:, None]


@pytest.fixture(scope="module")
def exported(trained_dir, request, tmp_path_factory):
    """The demo model's fp32 and int8 exports."""
    with module_scratch(request, tmp_path_factory, "exports") as base:
        for q in (None, "int8"):
            export(trained_dir, base / f"demo-{q or 'fp32'}", quantize=q)
        yield {"fp32": base / "demo-fp32", "int8": base / "demo-int8"}


@pytest.fixture(scope="module")
def demo_test():
    return demo.load_demo("test")


@pytest.fixture(scope="module")
def demo_preds(trained_dir, exported, demo_test):
    scorers = {"torch": scorelib.load(trained_dir, device="cpu"), **{k: scorelib.load(v) for k, v in exported.items()}}
    return scorers, {k: predict_split(s, demo_test) for k, s in scorers.items()}


@pytest.fixture(scope="module")
def trait_chunks(request, tmp_path_factory):
    """A two-trait model trained in fast mode with --long-text chunks (windows of 40 tokens), and its export."""
    with module_scratch(request, tmp_path_factory, "trait_chunks") as base:
        data = demo.write_demo_traits(base / "data")
        out = scorelib.train(train_args(base / "ckpt", data["train"].parent, "--score-column", "content,accuracy",
                                        "--score-ranges", data["ranges"], "--long-text", "chunks", "--max-length",
                                        "40", "--no-epoch-checkpoints"))
        export(out["save_dir"], base / "export")
        yield Path(out["save_dir"]), base / "export"


def test_fp32_agrees_with_pytorch_on_every_demo_test_text(demo_preds, demo_test):
    scorers, preds = demo_preds
    assert scorers["fp32"].num_models == 1 and isinstance(scorers["fp32"], scorelib.Scorer)
    np.testing.assert_allclose(preds["fp32"]["pred"], preds["torch"]["pred"], rtol=0, atol=FP32_TOL)
    rounded = {k: scorers[k].table.round(preds[k]["pred"], demo_test["prompt"].tolist()) for k in ("torch", "fp32")}
    np.testing.assert_array_equal(rounded["fp32"], rounded["torch"])


def test_int8_stays_within_its_tolerance_and_the_split_metrics_within_0_005(demo_preds, demo_test):
    scorers, preds = demo_preds
    diff = np.abs(preds["int8"]["pred"] - preds["fp32"]["pred"]) / ranges_of(scorers["fp32"], demo_test)
    assert diff.max() <= INT8_MAX and diff.mean() <= INT8_MEAN, (diff.max(), diff.mean())
    assert diff.max() > 0, "the int8 graph scored exactly as fp32: was it quantized?"
    overall = {}
    for k in ("fp32", "int8"):
        table, prompts = scorers[k].table, demo_test["prompt"].tolist()
        pred = preds[k]["pred"][:, 0]
        rounded = table.round(pred[:, None], prompts)[:, 0]
        overall[k] = compute_metrics(prompts, demo_test["score"].to_numpy(), pred, rounded, table)["overall"]
    for metric in ("qwk", "pearson"):
        assert abs(overall["int8"][metric] - overall["fp32"][metric]) <= 0.005, (metric, overall)


def test_two_trait_chunked_model_agrees_window_by_window(trait_chunks):
    save_dir, out = trait_chunks
    torch_scorer, onnx_scorer = scorelib.load(save_dir, device="cpu"), scorelib.load(out)
    assert (onnx_scorer.long_text, onnx_scorer.max_length) == ("chunks", 40)
    assert onnx_scorer.traits == ["content", "accuracy"]
    frame = demo.load_demo_traits("test").head(60)
    frame = pd.concat([frame, frame.head(3).assign(text=[LONG, LONG[:300], "short"])], ignore_index=True)
    assert len(onnx_scorer.dataset([LONG], frame["prompt"][0]).windows[0]) > 3
    expected, got = predict_split(torch_scorer, frame), predict_split(onnx_scorer, frame)
    assert got["pred"].shape == (len(frame), 2)
    np.testing.assert_allclose(got["pred"], expected["pred"], rtol=0, atol=FP32_TOL)
    prompt = frame["prompt"][0]
    got_record, want_record = (s.record(s.score(LONG, prompt=prompt), prompt) for s in (onnx_scorer, torch_scorer))
    assert set(got_record["traits"]) == {"content", "accuracy"}
    for trait, r in got_record["traits"].items():
        assert abs(r.pop("score") - want_record["traits"][trait].pop("score")) <= FP32_TOL
    assert got_record == want_record


@pytest.mark.parametrize("mode", ["truncate", "head-tail", "chunks"])
@pytest.mark.parametrize("with_context", [False, True])
def test_the_tokenizer_step_is_the_pytorch_datasets(tokenizer, tmp_path, mode, with_context):
    """Without transformers: ``tokenizers`` over tokenizer.json gives the ids, masks and windows of
    :mod:`scorelib.data.long_text` for every --long-text mode, contexts as the second segment."""
    from scorelib.data.long_text import build_dataset
    from scorelib.data.prompts import PromptTable

    tokenizer.backend_tokenizer.save(str(tmp_path / "tokenizer.json"))
    texts = [LONG, "short answer", LONG[:170], " ".join(["word"] * 33)]
    contexts = ["What does a stack do, and how does a queue differ?"] * len(texts) if with_context else None
    table = PromptTable(ids=["p"], ranges={"p": (0.0, 1.0)}, uses_context=with_context,
                        contexts={"p": contexts[0] if contexts else None})
    frame = pd.DataFrame({"key": [str(i) for i in range(len(texts))], "prompt": "p", "text": texts,
                          "context": contexts, "score": np.nan})
    ds = build_dataset(frame, tokenizer, table, max_length=32, long_text=mode,
                       chunk_stride=5 if mode == "chunks" else None)
    fields = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in ds.encodings]
    step = Encoder(tmp_path / "tokenizer.json", fields, 32, mode, 5, tokenizer.pad_token_id)
    got = step.encode(texts, contexts)
    for name in fields:
        want = ds.encodings[name] if mode == "chunks" else [[row] for row in ds.encodings[name]]
        assert [[w[name] for w in windows] for windows in got] == [[list(x) for x in row] for row in want], name
    assert any(len(w) > 1 for w in got) == (mode == "chunks")


def test_a_fold_ensemble_exports_its_folds(trained_dir, tmp_path):
    """A scorelib-cv dir: each fold a graph; the mean and spread as the PyTorch ensemble's."""
    import torch

    cv = tmp_path / "cv"
    for i in range(2):
        save_dir_copy(trained_dir, cv / f"fold{i}")
    state = torch.load(cv / "fold1" / "checkpoint_best.pt", weights_only=True)
    state["model"]["head.3.bias"] += 0.4  # a second model that scores differently
    torch.save(state, cv / "fold1" / "checkpoint_best.pt")
    (cv / "cv.json").write_text(json.dumps({"folds": 2, "args": {"text_column": "text"}}), encoding="utf-8")
    manifest = export(cv, tmp_path / "out")
    assert manifest["models"] == ["model0.onnx", "model1.onnx"] and len(manifest["checkpoints"]) == 2
    assert manifest["checkpoints"][1]["path"].endswith("fold1/checkpoint_best.pt")
    texts, prompt = demo.load_demo("test")["text"].head(20).tolist(), "q2"
    want = scorelib.load(cv, device="cpu").predict(texts, prompt)
    got = scorelib.load(tmp_path / "out").predict(texts, prompt)
    assert got["spread"].min() > 0.01
    for key in ("pred", "spread"):
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=FP32_TOL)


def test_scoring_an_export_needs_no_torch(exported, trained_dir, tmp_path, capsys):
    """scorelib.load, Scorer.score and scorelib-score (texts and --input) on the export, in a process where
    importing torch fails; the same output as the PyTorch scorer's."""
    table = tmp_path / "in.csv"
    demo.load_demo("test").head(12)[["key", "prompt", "text"]].to_csv(table, index=False)
    assert score_cli([str(trained_dir), "--cpu", "--format", "json", "--prompt", "q1", "one short answer",
                      LONG]) == 0
    want_records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert score_cli([str(trained_dir), "--cpu", "--input", str(table), "--output", str(tmp_path / "torch.csv")]) == 0
    code = BLOCK_TORCH + f"""
import json, sys
import scorelib
from scorelib.cli.score import cli_main
scorer = scorelib.load({str(exported['fp32'])!r})
print(json.dumps(scorer.score(["a text", "another text"], prompt="q3").tolist()))
assert cli_main([{str(exported['fp32'])!r}, "--format", "json", "--prompt", "q1", "one short answer",
                 {LONG!r}]) == 0
assert cli_main([{str(exported['fp32'])!r}, "--input", {str(table)!r}, "--output", {str(tmp_path / 'onnx.csv')!r}]) == 0
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "transformers")))
assert not loaded, loaded
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(json.loads(lines[0])) == 2
    records = [json.loads(line) for line in lines[1:]]
    assert [{**r, "score": None} for r in records] == [{**r, "score": None} for r in want_records]
    np.testing.assert_allclose([r["score"] for r in records], [r["score"] for r in want_records], atol=FP32_TOL)
    got, want = pd.read_csv(tmp_path / "onnx.csv"), pd.read_csv(tmp_path / "torch.csv")
    assert list(got.columns) == list(want.columns) and got["key"].tolist() == want["key"].tolist()
    np.testing.assert_allclose(got["pred"], want["pred"], atol=FP32_TOL)
    np.testing.assert_array_equal(got["pred_rounded"], want["pred_rounded"])


def test_the_widget_scores_an_export(exported, demo_preds):
    from scorelib.hub.widget import check_and_score

    scorers, _ = demo_preds
    for text in ("The tilt of the axis changes how directly sunlight hits.", LONG * 3):
        want, got = (check_and_score(scorers[k], "q1", text) for k in ("torch", "fp32"))
        assert abs(got.pop("score") - want.pop("score")) <= FP32_TOL
        assert got == want
    assert any("tokens" in w for w in got["warnings"])


def test_explanations_need_the_save_dir(exported, capsys):
    assert score_cli([str(exported["fp32"]), "--prompt", "q1", "--explain", "The axis is tilted. So light varies."]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("scorelib-score: error: ") and "--explain" in err[-1] and "save dir" in err[-1], err


def test_the_export_holds_no_pickle_and_a_manifest_of_every_file(exported, trained_dir):
    import onnx

    folder = exported["int8"]
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    assert set(manifest["files"]) | {MANIFEST} == {p.name for p in folder.iterdir()}
    assert manifest["quantize"] == "int8" and manifest["checkpoints"][0]["path"] == \
        str((trained_dir / "checkpoint_best.pt").resolve())
    for path in folder.iterdir():
        if path.suffix == ".onnx":
            onnx.checker.check_model(onnx.load(str(path)))
        else:
            json.loads(path.read_text(encoding="utf-8"))  # the tokenizer, the prompts, the manifest: JSON


def test_a_checkpoint_that_does_not_load_is_refused_in_one_line(trained_dir, tmp_path, capsys):
    broken = save_dir_copy(trained_dir, tmp_path / "broken")
    (broken / "checkpoint_best.pt").write_bytes(b"PK\x03\x04" + b"\0" * 64)
    assert export_cli([str(broken), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint_best.pt" in err[0], err
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["broken"]


def test_an_out_that_is_not_an_earlier_export_is_refused_and_an_export_replaced(exported, trained_dir, tmp_path,
                                                                                capsys):
    taken = tmp_path / "notes"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep me", encoding="utf-8")
    assert export_cli([str(trained_dir), str(taken)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "OUT" in err[0] and str(taken) in err[0], err
    assert [p.name for p in taken.iterdir()] == ["mine.txt"]
    earlier = tmp_path / "earlier"
    shutil.copytree(exported["int8"], earlier)
    assert export_cli([str(trained_dir), str(earlier)]) == 0
    assert json.loads((earlier / MANIFEST).read_text(encoding="utf-8"))["quantize"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier", "notes"]  # no temporary folder left


def flip_last_byte(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))


@pytest.mark.parametrize("tamper, message", [
    (lambda d: flip_last_byte(d / "model0.onnx"), "model0.onnx: sha256"),
    (lambda d: (d / "prompts.json").write_text((d / "prompts.json").read_text().replace("3.0", "30.0", 1)),
     "prompts.json: sha256"),
    (lambda d: (d / MANIFEST).write_text((d / MANIFEST).read_text().replace('"max_length": ', '"max_length": 1')),
     "edited after export"),
    (lambda d: (d / MANIFEST).write_text("{not json"), "not a manifest"),
    (lambda d: (d / "extra.pkl").write_bytes(b"\x80\x04N."), "extra.pkl: not listed"),
])
def test_a_tampered_export_is_refused_in_one_line(exported, tmp_path, capsys, tamper, message):
    folder = tmp_path / "export"
    shutil.copytree(exported["fp32"], folder)
    tamper(folder)
    with pytest.raises(CheckpointError, match=message.replace(".", r"\.")):
        scorelib.load(folder)
    assert score_cli([str(folder), "--prompt", "q1", "a text"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_a_missing_file_of_an_export_is_named(exported, tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(exported["fp32"], folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(MissingFileError, match="tokenizer.json: missing"):
        scorelib.load(folder)


@pytest.fixture(scope="module")
def stacked(request, tmp_path_factory):
    """A model trained in fast mode with ``--stack tfidf``, and its fp32 export's manifest."""
    with module_scratch(request, tmp_path_factory, "stacked") as base:
        out = scorelib.train(train_args(base / "ckpt", "--stack", "tfidf", "--no-epoch-checkpoints"))
        yield Path(out["save_dir"]), base / "export", export(out["save_dir"], base / "export")


def test_a_stacked_model_exports_its_tfidf_part_and_scores_as_pytorch_without_torch(stacked):
    """``--stack tfidf``: the export keeps each model's TF-IDF stack and the blend weight; scored with torch
    unimportable, the blend equals the PyTorch scorer's, and differs from the encoder alone."""
    save, folder, manifest = stacked
    assert manifest["stack"]["files"] == [["stack0.json", "stack0.npz"]]
    assert {"stack0.json", "stack0.npz"} <= set(manifest["files"])
    frame = demo.load_demo("test").groupby("prompt").head(10)
    texts = {p: g["text"].tolist() for p, g in frame.groupby("prompt")}
    pytorch = scorelib.load(save, device="cpu")
    want = {p: pytorch.score(t, prompt=p).tolist() for p, t in texts.items()}
    pytorch.stack = None
    encoder_only = {p: pytorch.score(t, prompt=p).tolist() for p, t in texts.items()}
    code = BLOCK_TORCH + f"""
import json, sys
import scorelib
scorer = scorelib.load({str(folder)!r})
print(json.dumps({{p: scorer.score(t, prompt=p).tolist() for p, t in {texts!r}.items()}}))
assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.splitlines()[-1])
    for p in texts:
        np.testing.assert_allclose(got[p], want[p], rtol=0, atol=FP32_TOL)
    assert max(abs(a - b) for p in texts for a, b in zip(want[p], encoder_only[p])) > 1e-3, "the stack had no part"


def test_an_edited_stack_entry_of_an_export_is_refused(stacked, tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(stacked[1], folder)
    body = json.loads((folder / MANIFEST).read_text())
    body["stack"]["weight"] = [7.0]
    body["manifest_sha256"] = manifest_digest(body)  # an edit that also fixes the digest
    (folder / MANIFEST).write_text(json.dumps(body))
    with pytest.raises(CheckpointError, match="blend weight in \\[0, 1\\]"):
        scorelib.load(folder)
