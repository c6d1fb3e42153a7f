"""``scorelib-export DIR OUT [--quantize int8]``: a trained scorer as ONNX graphs (scored by :mod:`.runtime`).

Each model (one, or a ``scorelib-cv`` dir's folds) becomes one graph holding the encoder, the pooling, the prompt
embedding, the head and the sigmoid, every trait as an output column; batch and length are dynamic, and under
``--long-text chunks`` the windows are pooled into their text inside the graph (a window-to-text input). The graph is
traced by ``torch.onnx.export(..., dynamo=False)``, the TorchScript exporter: it needs nothing beyond torch and
``onnx``, where the dynamo exporter (torch's default since 2.9) also needs ``onnxscript``. ``--quantize int8``
quantizes the weights of the graphs' matrix products to int8 with onnxruntime's dynamic quantization (activations
quantized on the fly, per batch), all but the down-projections (:func:`down_projections`).

The folder holds ``model{i}.onnx``, ``tokenizer.json`` (the fast tokenizer's own file), ``prompts.json`` and
``manifest.json``: what was exported from which checkpoint (paths and sha256), the settings of the tokenizer step, and
the sha256 of every file (and of the manifest itself). No pickle anywhere. Fairseq has no counterpart.
"""
from __future__ import annotations

import datetime
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

import scorelib
from scorelib.data.long_text import resolve_stride
from scorelib.data.scoring_dataset import TOKEN_FIELDS
from scorelib.errors import CheckpointError, OptionError, ScorelibError
from scorelib.export.runtime import FORMAT, MANIFEST, OUTPUT, VERSION, is_export, manifest_digest, read_manifest, sha256
from scorelib.hub.ensemble import fold_dirs, is_cv_dir, resolve_checkpoint, resolve_fold
from scorelib.hub.scorer import load
from scorelib.models.scoring_model import pool

logger = logging.getLogger(__name__)
OPSET = 17
QUANTIZE = ("int8",)


class ScoringGraph(nn.Module):
    """A :class:`~scorelib.models.scoring_model.ScoringModel`'s forward for tracing: inputs by position (``names``),
    the output always (B, K), and the windows of ``--long-text chunks`` pooled by a (texts x windows) matrix of
    their real tokens (the same weighted mean as :func:`~scorelib.models.scoring_model.pool_windows`, in operators
    every ONNX runtime has)."""

    def __init__(self, model, names: list[str], windows: bool):
        super().__init__()
        self.model, self.names, self.windows = model, names, windows

    def forward(self, *inputs):
        given = dict(zip(self.names, inputs))
        mask, prompt_ids = given["attention_mask"], given["prompt_ids"]
        hidden = self.model.encoder(**{k: given[k] for k in TOKEN_FIELDS if k in given}).last_hidden_state
        pooled = pool(hidden, mask, self.model.pooling, getattr(self.model, "attention_pool", None))
        if self.windows:
            texts = torch.cumsum(torch.ones_like(prompt_ids), 0) - 1  # 0 .. B-1, B taken from the batch
            member = (given["window_to_text"][None, :] == texts[:, None]).to(pooled.dtype)  # (B, W)
            weight = mask.sum(1).to(pooled.dtype)  # (W,) each window's real tokens
            pooled = (member @ (pooled * weight[:, None])) / (member @ weight).clamp(min=1.0)[:, None]
        features = torch.cat([pooled, self.model.ques_emb(prompt_ids).to(pooled.dtype)], dim=-1)
        return torch.sigmoid(self.model.head(features).float())


def checkpoints(path) -> list[Path]:
    """The checkpoint files a save dir (or checkpoint file, or CV dir) is scored from, as :func:`scorelib.load`."""
    return [resolve_fold(f) for f in fold_dirs(path)] if is_cv_dir(path) else [resolve_checkpoint(path)]


def check_out(out: Path) -> None:
    """OUT may be new, an empty folder, or an earlier export (replaced); anything else is refused."""
    if not out.exists():
        return
    if not out.is_dir():
        raise OptionError(f"OUT {out}: a file, not a folder; scorelib-export writes a folder")
    if any(out.iterdir()) and not is_export(out):
        raise OptionError(f"OUT {out}: exists and is not an earlier export (no {MANIFEST}); name a new folder, or "
                          f"an export to replace")


def example_inputs(names: list[str], windows: bool) -> tuple:
    """A batch of two texts for tracing (three windows under chunks: the first text has two)."""
    rows = 3 if windows else 2
    values = {"input_ids": torch.full((rows, 6), 101), "attention_mask": torch.ones(rows, 6, dtype=torch.long),
              "token_type_ids": torch.zeros(rows, 6, dtype=torch.long), "prompt_ids": torch.zeros(2, dtype=torch.long),
              "window_to_text": torch.tensor([0, 0, 1])}
    return tuple(values[n].long() for n in names)


def export_graph(model, names: list[str], windows: bool, path: Path) -> None:
    """Trace one model into ``path`` (fp32), batch and length dynamic."""
    rows = "windows" if windows else "texts"
    axes = {n: {0: rows, 1: "tokens"} for n in names if n in TOKEN_FIELDS}
    axes.update({"prompt_ids": {0: "texts"}, OUTPUT: {0: "texts"}})
    if windows:
        axes["window_to_text"] = {0: "windows"}
    graph = ScoringGraph(model.float().eval(), names, windows).eval()
    # the legacy exporter's deprecation notice, and the tracer's notes on transformers' mask code (a padding length
    # that is 0 for every batch, an is_causal that is False for an encoder): the tests score texts of every length
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index")
        torch.onnx.export(graph, example_inputs(names, windows), str(path), dynamo=False, input_names=names,
                          output_names=[OUTPUT], dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True)


def fuse(path: Path, config) -> None:
    """onnxruntime's transformer fusions written into the graph at ``path``: each layer's attention one
    ``Attention`` node, its residual and LayerNorm one ``SkipLayerNormalization``, its GELU with the bias one
    ``BiasGelu``; where the encoder's graph does not match a pattern it stays as traced. The graph is traced with
    eager attention for this (the patterns are those of the eager matrix products, not of SDPA's)."""
    from onnxruntime.transformers.optimizer import optimize_model

    heads, hidden = getattr(config, "num_attention_heads", 0), getattr(config, "hidden_size", 0)
    optimize_model(str(path), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=1).save_model_to_file(
        str(path))


def down_projections(path: Path) -> list[str]:
    """The matrix products whose weight maps a wider input to a narrower output: each layer's feed-forward output
    (intermediate -> hidden) and the head's. Their inputs (a GELU's outputs) hold the outliers that per-tensor int8
    activations lose (Bondarenko et al. 2021, "Understanding and overcoming the challenges of efficient transformer
    quantization"); kept in fp32, the demo model's int8 scores stay within 0.005 QWK of fp32."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    names = []
    for node in graph.node:
        shape = shapes.get(node.input[1]) if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 else None
        if shape is None or len(shape) != 2:
            continue
        transposed = any(a.name == "transB" and a.i == 1 for a in node.attribute)
        rows, cols = reversed(shape) if transposed else shape  # (input, output) features
        if rows > cols:
            names.append(node.name)
    return names


def quantize_int8(source: Path, target: Path) -> None:
    """onnxruntime's dynamic quantization: int8 weights per output channel for the matrix products (the fused
    attention's query/key/value one included) but the down-projections (:func:`down_projections`), activations
    quantized on the fly per batch."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # the fused nodes (com.microsoft domain) have no shape inference: their outputs are fp32
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul", "Gemm", "Attention"], nodes_to_exclude=down_projections(source),
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def export(path, out, quantize: str | None = None) -> dict:
    """Export the scorer of ``path`` (a save dir, a checkpoint file or a ``scorelib-cv`` dir) into the folder ``out``.

    Returns:
        dict: the manifest written.

    Raises:
        OptionError: an unknown ``--quantize``, an OUT that is not an earlier export.
        CheckpointError: a checkpoint that does not load.
    """
    if importlib.util.find_spec("onnx") is None:  # torch.onnx.export writes through it
        raise OptionError("scorelib-export needs onnx and onnxruntime: pip install \"scorelib[onnx]\"")

    if quantize is not None and quantize not in QUANTIZE:
        raise OptionError(f"--quantize {quantize!r}: choose {', '.join(QUANTIZE)}")
    out = Path(out)
    if is_export(path):
        raise OptionError(f"DIR {path}: already an export; export the save dir it came from "
                          f"({read_manifest(path)['exported_from']})")
    check_out(out)
    ckpts = checkpoints(path)
    try:
        scorer = load(path, device="cpu")
    except ScorelibError:
        raise
    except Exception as e:  # a file torch cannot read: one line, naming it
        raise CheckpointError(f"{path}: the checkpoint does not load ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None
    fields = [k for k in TOKEN_FIELDS if k in scorer.tokenizer("a", "b" if scorer.table.uses_context else None)]
    windows = scorer.long_text == "chunks"
    names = [*fields, "prompt_ids", *(["window_to_text"] if windows else [])]
    if not getattr(scorer.tokenizer, "is_fast", False):
        raise CheckpointError(f"{path}: its tokenizer is not a fast (tokenizers) one; the export needs tokenizer.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        models = []
        for i, model in enumerate(scorer.models):
            name = f"model{i}.onnx"
            if hasattr(model.encoder, "set_attn_implementation"):  # for fuse's patterns
                model.encoder.set_attn_implementation("eager")
            with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
                export_graph(model, names, windows, Path(scratch) / "fp32.onnx")
                fuse(Path(scratch) / "fp32.onnx", model.encoder.config)
                if quantize is None:
                    shutil.move(Path(scratch) / "fp32.onnx", work / name)
                else:  # after fusion: the fused graph's matrix products
                    quantize_int8(Path(scratch) / "fp32.onnx", work / name)
            models.append(name)
        scorer.tokenizer.backend_tokenizer.save(str(work / "tokenizer.json"))
        stack = write_stack(scorer.stack, work)
        scorer.table.save(work / "prompts.json")
        stride = resolve_stride(scorer.max_length, scorer.chunk_stride) if windows else scorer.chunk_stride
        body = {
            "format": FORMAT, "version": VERSION, "scorelib": scorelib.__version__, "torch": torch.__version__,
            "opset": OPSET, "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "exported_from": str(Path(path).resolve()),
            "checkpoints": [{"path": str(c.resolve()), "sha256": sha256(c)} for c in ckpts],
            "quantize": quantize, "models": models, "inputs": fields, "max_length": int(scorer.max_length),
            "long_text": scorer.long_text, "chunk_stride": stride, "stack": stack,
            "pad_token_id": int(scorer.tokenizer.pad_token_id or 0),
            "cfg": json.loads(json.dumps(scorer.cfg, default=str)),
            "files": {p.name: sha256(p) for p in sorted(work.iterdir())},
        }
        body["manifest_sha256"] = manifest_digest(body)
        (work / MANIFEST).write_text(json.dumps(body, indent=2), encoding="utf-8")
        os.chmod(work, 0o755)
        replace(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("exported %d model(s) of %s into %s (%s)", len(models), path, out, quantize or "fp32")
    return body


def write_stack(blend, work: Path) -> dict | None:
    """``--stack tfidf``: each model's TF-IDF stack as ``stack{i}.json`` and ``stack{i}.npz`` (the save dir's
    ``stack.json`` and ``arrays.npz``), and the blend weight per score; scored in NumPy and scikit-learn by
    :mod:`scorelib.stack.blend`. Returns the manifest's ``stack`` entry (None without a stack)."""
    if blend is None:
        return None
    files = []
    for i, stack in enumerate(blend.stacks):
        stack.write(work / f"stack{i}.json", work / f"stack{i}.npz")
        files.append([f"stack{i}.json", f"stack{i}.npz"])
    return {"kind": "tfidf", "files": files, "weight": [float(w) for w in blend.weight]}


def replace(work: Path, out: Path) -> None:
    """Move the finished folder to OUT, an earlier export there removed only once the new one is complete."""
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(work, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, out)
