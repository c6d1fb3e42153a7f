"""Checkpoints laid out as fairseq's, written atomically, loaded with ``weights_only=True``.

Mirrors ``fairseq/checkpoint_utils.py`` (``save_checkpoint``, ``load_checkpoint``,
``torch_persistent_save``): ``checkpoint_last.pt``, ``checkpoint_best.pt``,
``checkpoint{epoch}.pt`` and ``checkpoint_{epoch}_{updates}.pt`` in ``--save-dir``, each a dict
with ``cfg``, ``model``, ``optimizer_history``, ``extra_state`` and ``last_optimizer_state``.
Beside them: ``tokenizer/``, ``encoder/config.json`` and ``prompts.json``, so that a save dir
alone is enough to score.
"""
from __future__ import annotations

import argparse
import logging
import os
import pickle
import random
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from .prompts import PromptTable

logger = logging.getLogger(__name__)
FORMAT_VERSION = 1
PAUSE_ENV = "SCORELIB_TEST_PAUSE_IN_SAVE"  # tests only: seconds to sleep between writing and renaming


class CheckpointError(RuntimeError):
    """A checkpoint or save dir that cannot be used; the message names the file."""


def plain(value):
    """Turn options and states into tensors and plain Python values (no Namespace, Path or numpy)."""
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, dict):  # int keys stay ints: an optimizer's state is keyed by parameter index
        return {(k if type(k) is int else str(k)): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value) if isinstance(value, tuple) else [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint: {value!r}")


def prepare_save_dir(save_dir) -> Path:
    """Create ``save_dir``; a clear error where the path (or a parent) is a regular file."""
    path = Path(save_dir)
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            raise NotADirectoryError(f"--save-dir {save_dir}: {parent} is a file, not a folder")
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob(".*.pt.tmp*"):
        logger.warning("removing %s, left by a save that was interrupted", stale)
        stale.unlink()
    return path


def atomic_save(state: dict, path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    pause = float(os.environ.get(PAUSE_ENV, "0") or 0)
    if pause:
        time.sleep(pause)
    os.replace(tmp, path)


def atomic_copy(src, dst) -> None:
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def encoder_signature(config) -> dict:
    """What must match for weights to move between two models: type and shapes of the encoder."""
    keys = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
    return {k: getattr(config, k, None) for k in keys}


def load_checkpoint(path) -> dict:
    """Load a checkpoint safely (``torch.load(weights_only=True)``) with clear errors.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: truncated, not a scorelib checkpoint, or holding objects other than
            tensors and plain values (which could run code when unpickled, so they are refused).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message opens with advice to retry with weights_only=False; keep only what was refused
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
        found = re.search(r"Unsupported global: GLOBAL \S+", text) or re.search(r"WeightsUnpickler error: [^\n]*", text)
        first = found.group(0) if found else (text.strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: refused to load: the file holds Python objects other than tensors and plain "
                              f"values, which could run code when unpickled ({first})") from None
    except Exception as e:  # truncated zip, wrong format, ...
        raise CheckpointError(f"{path}: cannot read this checkpoint (truncated or not a torch file?): {e}") from None
    if not isinstance(state, dict) or "model" not in state or "format_version" not in state:
        raise CheckpointError(f"{path}: not a scorelib checkpoint (no 'model' / 'format_version' entries)")
    if state["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format {state['format_version']} is newer than this scorelib "
                              f"({FORMAT_VERSION}); upgrade scorelib")
    return state


def save_assets(save_dir, tokenizer, config, prompts: PromptTable) -> None:
    """Write ``tokenizer/``, ``encoder/config.json`` and ``prompts.json`` beside the checkpoints."""
    save_dir = Path(save_dir)
    tokenizer.save_pretrained(save_dir / "tokenizer")
    config.save_pretrained(save_dir / "encoder")
    tmp = save_dir / ".prompts.json.tmp"
    prompts.save(tmp)
    os.replace(tmp, save_dir / "prompts.json")


def load_assets(save_dir):
    """Read back what :func:`save_assets` wrote: ``(tokenizer, config, prompts)``."""
    from transformers import AutoConfig, AutoTokenizer

    save_dir = Path(save_dir)
    if not save_dir.is_dir():
        raise FileNotFoundError(f"save dir not found: {save_dir}")
    for need in ("tokenizer", "encoder/config.json", "prompts.json"):
        if not (save_dir / need).exists():
            raise CheckpointError(f"{save_dir}: missing {need}; a save dir written by scorelib-train holds "
                                  f"tokenizer/, encoder/config.json and prompts.json beside the checkpoints")
    tokenizer = AutoTokenizer.from_pretrained(save_dir / "tokenizer")
    config = AutoConfig.from_pretrained(save_dir / "encoder")
    return tokenizer, config, PromptTable.load(save_dir / "prompts.json")


def load_finetune_weights(model, state: dict, prompts: PromptTable, config, path) -> dict:
    """Copy a checkpoint's weights into ``model``, mapping prompt-embedding rows by prompt id.

    Prompts the new data shares with the checkpoint keep their rows; new prompts keep their fresh rows.

    Returns:
        dict: ``{"shared": [...], "new": [...]}`` prompt ids.
    """
    old_sig, new_sig = state.get("encoder", {}).get("signature"), encoder_signature(config)
    if old_sig != new_sig:
        raise CheckpointError(f"{path}: trained with another encoder ({old_sig}); this run uses {new_sig}. "
                              f"Pass the same --model-name-or-path as the checkpoint, or drop --finetune-from-model")
    weights = dict(state["model"])
    old_ids = state["prompts"]["ids"]
    old_rows = weights.pop("ques_emb.weight")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if set(missing) != {"ques_emb.weight"} or unexpected:
        raise CheckpointError(f"{path}: weights do not fit this model (missing {missing}, unexpected {unexpected})")
    shared = [p for p in prompts.ids if p in old_ids]
    with torch.no_grad():
        for pid in shared:
            model.ques_emb.weight[prompts.index(pid)] = old_rows[old_ids.index(pid)]
    return {"shared": shared, "new": [p for p in prompts.ids if p not in old_ids]}
