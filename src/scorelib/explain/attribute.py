"""Token attributions: which tokens the model read, and Integrated Gradients on their embeddings.

No fairseq counterpart (fairseq has no interpretability tools); this follows Captum's
``LayerIntegratedGradients`` recipe for BERT-class models (Sundararajan et al. 2017,
"Axiomatic attribution for deep networks"): interpolate the encoder's input embeddings from a
baseline (here every text token replaced by the pad token; special tokens and the context kept)
to the text's own, and integrate the gradient of the score along the way. The attributions of a
text's tokens add up to ``f(text) - f(baseline)`` up to the integral's error, reported as the
convergence delta. :mod:`scorelib.explain.explanation` turns them into an :class:`~scorelib.explain.explanation.Explanation`.
"""
from __future__ import annotations

import numpy as np
import torch

from scorelib.data import long_text as windows
from scorelib.errors import OptionError


def read_tokens(scorer, text: str, context: str | None) -> tuple[list[tuple[int, int]], list[bool]]:
    """The text's tokens (not the context's) and whether the model reads each one.

    Args:
        scorer (scorelib.hub.scorer.Scorer): gives the tokenizer, ``max_length``, ``long_text``.
        text (str): one text.
        context (str | None): its second segment, if the model takes pairs.

    Returns:
        tuple: ``(offsets, read)``: the character span ``(start, end)`` of each text token in ``text``, and
        for each a bool: False for the tokens cut by ``--long-text truncate`` (the end) or ``head-tail`` (the
        middle); ``chunks`` reads every token.
    """
    tok, length = scorer.tokenizer, scorer.max_length
    full = tok(text, context, truncation=False, return_offsets_mapping=True, verbose=False)
    seq = full.sequence_ids(0)
    offsets = [tuple(o) for o, s in zip(full["offset_mapping"], seq) if s == 0]
    n_text, n_full = len(offsets), len(full["input_ids"])
    if n_full <= length or scorer.long_text == "chunks":
        return offsets, [True] * n_text
    if scorer.long_text == "head-tail":  # as scorelib.data.long_text.encode: head + tail, the middle dropped
        budget = n_text - (n_full - length)
        head = min(windows.head_size(length), budget)
        return offsets, [i < head or i >= n_text - (budget - head) for i in range(n_text)]
    cut = tok(text, context, truncation=True, max_length=length, verbose=False)  # as scorelib.data.scoring_dataset.tokenize
    kept = sum(s == 0 for s in cut.sequence_ids(0))
    return offsets, [i < kept for i in range(n_text)]


def text_positions(scorer, batch: dict, text: str, context: str | None, offsets, read) -> torch.Tensor:
    """For each position of the model's input, the index of the text token it holds (-1: special or context).

    Args:
        batch (dict): ``ds.collater`` of the one-text dataset; ``net_input["input_ids"]`` is (W, T), W windows.
        offsets, read: from :func:`read_tokens`.

    Returns:
        LongTensor: (W, T).
    """
    ids = batch["net_input"]["input_ids"]
    out = torch.full(ids.shape, -1, dtype=torch.long)
    if scorer.long_text == "chunks" and ids.shape[0] > 1:  # the windows of scorelib.data.long_text.encode, with offsets
        enc = scorer.tokenizer([text], None if context is None else [context], truncation="only_first",
                               max_length=scorer.max_length, stride=windows.resolve_stride(scorer.max_length,
                                                                                           scorer.chunk_stride),
                               return_overflowing_tokens=True, return_offsets_mapping=True, verbose=False)
        index = {start: i for i, (start, _) in enumerate(offsets)}
        for w in range(ids.shape[0]):
            if list(enc["input_ids"][w]) != ids[w, :len(enc["input_ids"][w])].tolist():
                raise RuntimeError("scorelib.explain.attribute: the windows differ from the dataset's")  # a bug, not input
            for j, (s, (start, _)) in enumerate(zip(enc.sequence_ids(w), enc["offset_mapping"][w])):
                if s == 0:
                    out[w, j] = index[start]
        return out
    special = scorer.tokenizer.get_special_tokens_mask(ids[0].tolist(), already_has_special_tokens=True)
    plain = [j for j, m in enumerate(special) if not m and batch["net_input"]["attention_mask"][0, j]]
    for j, i in zip(plain, [i for i, r in enumerate(read) if r]):  # the text comes first, then the context
        out[0, j] = i
    return out


def integrated_gradients(model, batch: dict, positions: torch.Tensor, n_text: int, pad_id: int,
                         scale: torch.Tensor, column: int = 0,
                         steps: int = 32) -> tuple[np.ndarray, float, float, float]:
    """Integrated Gradients of one text's score on its text tokens' input embeddings.

    Args:
        model (ScoringModel): in eval mode.
        batch (dict): one text's batch (``net_input`` tensors (W, T), on the model's device).
        positions (LongTensor): (W, T) from :func:`text_positions`.
        n_text (int): the text's tokens (read or not).
        pad_id (int): the baseline's token.
        scale (Tensor): (2, K) each output's ``(min, max)``: the model's [0, 1] output is rescaled to it.
        column (int): the output (score or trait) attributed, 0 .. K-1.
        steps (int): points of the Riemann sum (Captum's ``n_steps``).

    Returns:
        tuple: ``(attributions, f_text, f_baseline, delta)``: attributions (n_text_tokens,) on the score's scale
        (tokens read twice by overlapping windows get both parts), the score of the text and of the baseline,
        and the convergence delta ``sum(attributions) - (f_text - f_baseline)``.
    """
    try:
        from captum.attr import LayerIntegratedGradients
    except ImportError:
        raise OptionError("explain(by='token') needs Captum: pip install captum (or scorelib[explain])") from None
    net = batch["net_input"]
    ids, windows_n = net["input_ids"], net["input_ids"].shape[0]
    device = ids.device
    w2t = net.get("window_to_text")

    def forward(input_ids, attention_mask, prompt_ids, token_type_ids=None):
        reps = input_ids.shape[0] // windows_n  # Captum stacks the interpolation steps along dim 0
        w = None if w2t is None else (w2t.repeat(reps) + torch.arange(reps, device=device).repeat_interleave(windows_n))
        out = model(input_ids, attention_mask, prompt_ids[:reps] if w is not None else prompt_ids,
                    token_type_ids=token_type_ids, window_to_text=w)["encoder_out"]
        out = out.reshape(out.shape[0], -1) * (scale[1] - scale[0]) + scale[0]  # (N, K) on the scores' scales
        return out[:, column]

    text_mask = positions >= 0
    baseline = ids.masked_fill(text_mask.to(device), pad_id)
    prompt_ids = net["prompt_ids"].repeat(windows_n) if w2t is not None else net["prompt_ids"]
    extra = (net["attention_mask"], prompt_ids, net.get("token_type_ids"))
    lig = LayerIntegratedGradients(forward, model.encoder.get_input_embeddings())
    with torch.enable_grad():
        attr = lig.attribute(ids, baselines=baseline, additional_forward_args=extra, n_steps=steps,
                             internal_batch_size=max(8, 8 * windows_n))
    with torch.no_grad():
        ends = forward(torch.cat([ids, baseline]), net["attention_mask"].repeat(2, 1), prompt_ids.repeat(2),
                       None if extra[2] is None else extra[2].repeat(2, 1))
    per_position = attr.sum(-1).detach().cpu()  # (W, T): summed over the embedding dimension
    out = np.zeros(n_text)
    np.add.at(out, positions[text_mask].numpy(), per_position[text_mask].double().numpy())
    f_text, f_base = float(ends[0]), float(ends[1])
    return out, f_text, f_base, float(out.sum() - (f_text - f_base))
