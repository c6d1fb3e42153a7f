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
import pickle
import random
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import torch

from scorelib.data.prompts import PromptTable
from scorelib.errors import CheckpointError, MissingFileError, OptionError
from scorelib.options import complete_cfg
from scorelib.writers import atomic_write, check_writable, remove_stale_temporaries

logger = logging.getLogger(__name__)
FORMAT_VERSION = 1


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


def prepare_save_dir(save_dir, create: bool = True, lock: str | None = None) -> Path:
    """Create ``save_dir`` (with ``create=False``, only check it); a clear error where the path (or a parent)
    is a regular file. With ``lock`` (how the user named the folder), take its lock (:mod:`scorelib.locks`)
    before removing what interrupted saves left: the caller releases it (``locks.release``) when its run ends."""
    path = Path(save_dir)
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            raise OptionError(f"--save-dir {save_dir}: {parent} is a file, not a folder")
    if not create:
        return path
    check_writable(path, f"--save-dir {save_dir}", "; choose a folder you can write to")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OptionError(f"--save-dir {save_dir}: cannot create it ({e.strerror}); choose a folder you can write "
                          f"to") from None
    if lock:  # a second run must not remove the first one's temporary files, in flight
        from scorelib import locks

        locks.acquire(path, lock)
    for stale in remove_stale_temporaries(path):
        logger.warning("removed %s, left by a save that was interrupted", stale)
    return path


def save_checkpoint(save_dir, names: list[str], state: dict, keep_optimizer_in: tuple = ("checkpoint_last.pt",),
                    save_optimizer_state: bool = True) -> None:
    """Write ``state`` under each name in ``save_dir``, atomically, ``checkpoint_last.pt`` last.

    Without ``save_optimizer_state`` (``--no-save-optimizer-state``), only the files in
    ``keep_optimizer_in`` (what resuming needs) keep the AdamW moments; the others hold the weights
    and options alone, a third of the size. ``checkpoint_last.pt`` is replaced last: a run killed part
    way resumes from the previous one and redoes those updates, so ``checkpoint_best.pt`` is never
    older than the best value that ``checkpoint_last.pt`` records.
    """
    save_dir = Path(save_dir)
    order = sorted(names, key=lambda n: n == "checkpoint_last.pt")
    light = [n for n in order if not save_optimizer_state and n not in keep_optimizer_in]
    full = [n for n in order if n not in light]
    for group, value in ((light, {k: v for k, v in state.items() if k != "last_optimizer_state"}), (full, state)):
        if not group:
            continue
        first = save_dir / group[0]
        atomic_write(first, lambda tmp: torch.save(value, tmp), pause=True)
        for name in group[1:]:
            atomic_write(save_dir / name, lambda tmp: shutil.copyfile(first, tmp), pause=True)


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
        MissingFileError: no such file.
        CheckpointError: truncated, not a torch file, not a scorelib checkpoint, or holding objects other
            than tensors and plain values (which could run code when unpickled, so they are refused).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":  # torch.save writes a zip archive
        raise CheckpointError(f"{path}: not a torch checkpoint (a checkpoint is a zip archive starting with "
                              f"b'PK\\x03\\x04'; this file starts with {head!r})")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: truncated or damaged checkpoint ({path.stat().st_size:,} bytes; the zip "
                              f"archive has no end): was its save interrupted? Use another checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message advises retrying with weights_only=False, which would run the payload: keep only the
        # global it blocked ("Unsupported global: GLOBAL io.open", "unsupported GLOBAL posix.system" in torch 2.13)
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
        found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", text)
        what = f"blocked global {found.group(1)}" if found else "an object weights_only=True does not allow"
        raise CheckpointError(f"{path}: refused to load: the file holds Python objects other than tensors and plain "
                              f"values, which could run code when unpickled ({what}); never load it with "
                              f"weights_only=False unless you trust where it came from") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as e:  # a damaged member of the archive
        raise CheckpointError(f"{path}: damaged checkpoint, cannot read it: {e}") from None
    if not isinstance(state, dict) or "model" not in state or "format_version" not in state:
        raise CheckpointError(f"{path}: not a scorelib checkpoint (no 'model' / 'format_version' entries)")
    version = state["format_version"]
    if type(version) is not int or version < 1:
        raise CheckpointError(f"{path}: format_version {version!r} is not a format number; the file was edited or "
                              f"damaged")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format {version} is newer than this scorelib ({FORMAT_VERSION}); upgrade "
                              f"scorelib")
    check_parts(state, path)
    state["cfg"] = complete_cfg(state.get("cfg") or {})  # options added since it was saved: today's defaults
    return state


def check_parts(state: dict, path) -> None:
    """A checkpoint's parts of the right kinds: ``model`` tensors of finite numbers, ``encoder`` and ``prompts``
    tables, a valid prompt table (an edited or damaged file is refused in one line, naming the part)."""
    kinds = {"model": dict, "encoder": dict, "prompts": dict, "cfg": (dict, type(None))}
    for key, kind in kinds.items():
        if not isinstance(state.get(key), kind):
            found = type(state[key]).__name__ if key in state else "nothing"
            raise CheckpointError(f"{path}: its {key!r} entry holds {found}, not a table; the file was edited or "
                                  f"damaged")
    if not isinstance(state["encoder"].get("signature"), dict):
        raise CheckpointError(f"{path}: its 'encoder' entry has no signature; the file was edited or damaged")
    for name, value in state["model"].items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: weight {name!r} holds {type(value).__name__}, not a tensor")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{path}: weight {name!r} holds NaN or infinite values; the file is damaged (or "
                                  f"its training diverged): use another checkpoint")
    PromptTable.checked(state["prompts"], f"{path}: its 'prompts' entry")


# what a resumed run must share with its checkpoint: options that define the model and its data, by flag
RESUME_OPTIONS = {"model_name_or_path": "--model-name-or-path", "arch": "--arch", "pooling": "--pooling",
                  "max_length": "--max-length", "long_text": "--long-text", "chunk_stride": "--chunk-stride"}
RESUME_PROMPTS = {"traits": "--score-column", "ranges": "--score-range / --score-ranges", "step": "--score-step",
                  "trait_ranges": "--score-ranges", "trait_steps": "--score-step / --score-ranges"}


def check_resume(state: dict, args, prompts: PromptTable, path) -> None:
    """Refuse to resume from ``state`` with options that change the model or its data, naming the first one.

    Compares :data:`RESUME_OPTIONS` with the checkpoint's ``cfg``, and the score columns, ranges and steps
    with its ``prompts``. There are no ``--reset-*`` flags: to change them, train in another ``--save-dir``
    (with ``--finetune-from-model`` to start from the checkpoint's weights).
    """
    saved, table = state["prompts"], prompts.to_dict()
    diffs = [(flag, state["cfg"].get(key), getattr(args, key, None)) for key, flag in RESUME_OPTIONS.items()]
    # the optimizer's parameter groups (its saved state fits only the same groups); no --head-lr: the head at --lr
    def head_lr(cfg: dict):
        return cfg.get("lr") if cfg.get("head_lr") is None else cfg["head_lr"]

    # dropout changes how the rest of the run trains: a run keeps its own (None, written 'config': the encoder's)
    def dropout(value):
        return "config" if value is None else value

    diffs += [("--layer-lr-decay", state["cfg"].get("layer_lr_decay"), args.layer_lr_decay),
              ("--head-lr", head_lr(state["cfg"]), head_lr(vars(args))),
              ("--encoder-dropout", dropout(state["cfg"].get("encoder_dropout")),
               dropout(args.encoder_dropout))]
    diffs += [(flag, saved.get(key), table.get(key)) for key, flag in RESUME_PROMPTS.items()]
    for flag, old, new in diffs:
        if old != new:
            if isinstance(old, dict) and isinstance(new, dict):  # ranges: only the prompts (traits) that differ
                keys = [k for k in {**old, **new} if old.get(k) != new.get(k)]
                old, new = ({k: d.get(k) for k in keys} for d in (old, new))
            raise CheckpointError(f"{path}: cannot resume with {flag} giving {new}: the checkpoint was trained with "
                                  f"{old}; pass the same options to resume, or train in another --save-dir (with "
                                  f"--finetune-from-model {path} to start from its weights)")


def save_assets(save_dir, tokenizer, config, prompts: PromptTable) -> None:
    """Write ``tokenizer/``, ``encoder/config.json`` and ``prompts.json`` beside the checkpoints."""
    save_dir = Path(save_dir)
    tokenizer.save_pretrained(save_dir / "tokenizer")
    config.save_pretrained(save_dir / "encoder")
    atomic_write(save_dir / "prompts.json", prompts.save)


def load_assets(save_dir):
    """Read back what :func:`save_assets` wrote: ``(tokenizer, config, prompts)``."""
    from transformers import AutoConfig, AutoTokenizer

    save_dir = Path(save_dir)
    if not save_dir.is_dir():
        raise MissingFileError(f"save dir not found: {save_dir}")
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
    out = model.output_layer_name + ".bias"  # the head's last layer: one output per score
    if out in weights and weights[out].shape != model.state_dict()[out].shape:
        old_k, new_k = weights[out].numel(), model.state_dict()[out].numel()
        raise CheckpointError(f"{path}: its head has {old_k} output(s) and this run needs {new_k} (one per "
                              f"--score-column trait); start from a checkpoint of the same traits, or from scratch")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if set(missing) != {"ques_emb.weight"} or unexpected:
        raise CheckpointError(f"{path}: weights do not fit this model (missing {missing}, unexpected {unexpected})")
    shared = [p for p in prompts.ids if p in old_ids]
    with torch.no_grad():
        for pid in shared:
            model.ques_emb.weight[prompts.index(pid)] = old_rows[old_ids.index(pid)]
    return {"shared": shared, "new": [p for p in prompts.ids if p not in old_ids]}
