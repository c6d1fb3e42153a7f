"""Layer-wise learning rates and re-initialised top layers: the optimizer side of a regression recipe.

No fairseq counterpart (fairseq builds one parameter group, ``fairseq/optim/adam.py``); the recipe of the
Feedback Prize solutions (layer-wise learning-rate decay, a higher head learning rate, re-initialised top
layers; Zhang et al. 2021, "Revisiting Few-sample BERT Fine-tuning"). With the defaults (``--layer-lr-decay 1``,
``--head-lr 5e-4``, ``--reinit-layers 0``) the encoder trains at ``--lr`` and the head above it at ``--head-lr``,
each with and without weight decay; ``--head-lr`` equal to ``--lr`` gives the two groups of earlier releases.
"""
from __future__ import annotations

import re

from torch import nn

from scorelib.errors import OptionError

LAYER_INDEX = re.compile(r"(?:^|\.)(?:layer|layers|h|block|blocks)\.(\d+)\.")


def encoder_layers(encoder) -> nn.ModuleList:
    """The encoder's stack of transformer layers (BERT's ``encoder.layer``, others' ``layers`` / ``h``): the
    longest :class:`~torch.nn.ModuleList` whose name ends in one of those words."""
    lists = [(name, m) for name, m in encoder.named_modules()
             if isinstance(m, nn.ModuleList) and re.search(r"(?:^|\.)(?:layer|layers|h|block|blocks)$", name)]
    if not lists:
        raise OptionError(f"{type(encoder).__name__}: cannot find its layer stack (a ModuleList named layer/layers/"
                          f"h/block), so --layer-lr-decay and --reinit-layers do not apply to this encoder")
    return max(lists, key=lambda item: len(item[1]))[1]


def reinit_top_layers(encoder, n: int) -> None:
    """Re-initialise the top ``n`` layers with the encoder's own ``_init_weights`` (its ``initializer_range``).

    Hugging Face marks loaded weights as initialised (``_is_hf_initialized``) and its init functions skip those;
    the mark is cleared here first, so the layers really start again.
    """
    if n <= 0:
        return
    layers = encoder_layers(encoder)
    if n > len(layers):
        raise OptionError(f"--reinit-layers {n}: the encoder has only {len(layers)} layers")
    for layer in layers[len(layers) - n:]:
        for p in layer.parameters(recurse=True):
            p._is_hf_initialized = False
        for module in layer.modules():
            module._is_hf_initialized = False
            encoder._init_weights(module)


def depth(name: str, num_layers: int) -> int:
    """Where an encoder parameter sits: 0 for the embeddings, ``i + 1`` for layer ``i``, ``num_layers + 1`` above
    the stack (a pooler, a final norm)."""
    found = LAYER_INDEX.search(name)
    if found:
        return int(found.group(1)) + 1
    return 0 if "embed" in name else num_layers + 1


def param_groups(model, lr: float, weight_decay: float, layer_lr_decay: float = 1.0,
                 head_lr: float | None = None) -> list[dict]:
    """AdamW parameter groups: weight decay or not, and each parameter's learning rate.

    The top encoder layer (and anything above the stack) trains at ``lr``, each layer below at
    ``layer_lr_decay`` times the one above it, the embeddings lowest (``lr * layer_lr_decay ** num_layers``);
    the head, the prompt embedding and any pooling weights at ``head_lr`` (default ``lr``). Biases, norms and the
    prompt embedding have no weight decay. Groups keep the parameters' order and are made once per
    ``(lr, weight decay)``: ``head_lr == lr`` without decay gives earlier releases' two groups (decay, no decay).

    Args:
        model (ScoringModel): with ``.encoder``.
        lr (float): ``--lr``; layer_lr_decay (float): ``--layer-lr-decay`` in (0, 1]; head_lr (float | None): ``--head-lr``.

    Returns:
        list[dict]: ``{"params", "lr", "weight_decay"}`` per group; a scheduler scales every group's ``lr``.
    """
    head_lr = lr if head_lr is None else head_lr
    num_layers = len(encoder_layers(model.encoder)) if layer_lr_decay != 1.0 else 0
    groups: dict[tuple, dict] = {}
    for kind in ("decay", "no_decay"):
        for name, p in model.named_parameters():
            no_decay = p.ndim < 2 or "LayerNorm" in name or "ques_emb" in name
            if no_decay != (kind == "no_decay"):
                continue
            if name.startswith("encoder."):
                rate = lr * layer_lr_decay ** max(num_layers - depth(name, num_layers), 0) \
                    if layer_lr_decay != 1.0 else lr
            else:
                rate = head_lr
            wd = 0.0 if no_decay else weight_decay
            groups.setdefault((kind, rate, wd), {"params": [], "lr": rate, "weight_decay": wd})["params"].append(p)
    return list(groups.values())
