"""``Trainer``: one update at a time, and the state a checkpoint holds.

Mirrors ``fairseq/trainer.py``: ``train_step`` (forward and backward over ``--update-freq``
batches, clipping, the optimizer and scheduler steps), ``valid_step`` (here over a whole
split), ``state_dict`` / ``load_checkpoint``. The epoch loop, validation schedule, best
checkpoint and patience live in :mod:`scorelib.train`, as in ``fairseq_cli/train.py``.
"""
from __future__ import annotations

import contextlib
import logging
import math

import numpy as np
import torch

from scorelib import checkpoint_utils
from scorelib.data.scoring_dataset import epoch_batches
from scorelib.distributed import utils as dist
from scorelib.errors import BatchOutOfMemory, CheckpointError, InvalidLossError
from scorelib.inference import inference_batches, move_to, predict
from scorelib.models.scoring_model import pick_device
from scorelib.optim import precision
from scorelib.optim.layerwise import param_groups

logger = logging.getLogger(__name__)
OUT_OF_MEMORY = torch.OutOfMemoryError  # torch >= 2.5; torch.cuda.OutOfMemoryError is the same class


def total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of all gradients together (as ``clip_grad_norm_`` computes it)."""
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads, foreach=True)  # torch >= 2.6


def compile_encoder(model: torch.nn.Module) -> bool:
    """Compile ``model.encoder`` in place (``nn.Module.compile``: the state dict keeps its names, so checkpoints
    load without compiling). Returns whether it did; where torch cannot compile here, logs why and stays eager.

    Dynamic shapes: length-bucketed batches change shape every step, and one graph serves them all. Random ops
    (dropout) run torch's own kernels (inductor's ``fallback_random``) instead of inductor's generated ones: on a
    2-core CPU those made a compiled step 0.90x eager, with them 0.97x (``bench/bench_compile.py``), and dropout
    then draws from the same random stream as eager, so a seed means the same thing with and without
    ``--compile``. The setting is process-wide; it only matters to code that compiles."""
    try:
        import torch._inductor.config as inductor_config

        inductor_config.fallback_random = True
        probe = torch.compile(lambda x: x * 2 + 1, dynamic=True)
        probe(torch.ones(3))  # the backend really builds (needs a C++ compiler on the CPU)
        model.encoder.compile(dynamic=True)
        return True
    except Exception as e:  # no compiler, an unsupported platform or torch build
        logger.warning("--compile: torch.compile is not available here (%s: %s); training eagerly",
                       type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        return False


class Trainer:
    """Train ``model`` on ``task``'s data with ``criterion``.

    Args:
        args: training options (see :mod:`scorelib.options`).
        task (TextScoringTask): with ``train`` (and ``valid``) loaded or loadable.
        model (ScoringModel): the model, on the CPU.
        criterion: returns ``(loss, sample_size, logging_output)``.
    """

    def __init__(self, args, task, model, criterion):
        from transformers import get_scheduler

        self.args, self.task, self.criterion = args, task, criterion
        self.device = pick_device(args.cpu)
        self.amp_dtype = precision.amp_dtype(args.fp16, args.bf16, self.device)
        self.world = dist.World.from_env()
        self.model = model.to(self.device)
        self.compiled = args.compile and compile_encoder(self.model)
        self.ddp = dist.wrap(self.model, self.world, self.device)
        self.train_data = task.dataset("train")
        self.valid_data = task.dataset("valid") if "valid" in task.frames else None
        self.num_updates, self.dummy_batch = 0, None
        self.updates_per_epoch = math.ceil(len(self.epoch_batches(1)) / self.world.size / args.update_freq)
        epochs = self.updates_per_epoch * max(args.max_epoch, 1)  # --max-epoch 0 (no limit): one epoch's schedule
        self.total_updates = min(args.max_update, epochs) if args.max_update else epochs  # whichever stops first
        warmup = args.warmup_updates if args.warmup_updates is not None else int(0.06 * self.total_updates)
        groups = param_groups(self.model, args.lr, args.weight_decay, args.layer_lr_decay, args.head_lr)
        self.optimizer = precision.Optimizer(precision.build_adamw(groups, args.lr, self.device), fp16=args.fp16)
        self.scheduler = get_scheduler(args.lr_scheduler, self.optimizer.optimizer, num_warmup_steps=warmup,
                                       num_training_steps=self.total_updates)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """All ranks' training batches of ``epoch`` (:func:`scorelib.data.scoring_dataset.epoch_batches`)."""
        return epoch_batches(self.train_data, epoch, self.args.seed, self.args.max_tokens, self.args.batch_size)

    def rank_batches(self, epoch: int) -> list[list[int] | None]:
        """This rank's share of the epoch's batches (``None``: a dummy batch, see :func:`scorelib.distributed.utils.shard`)."""
        return dist.shard(self.epoch_batches(epoch), self.world)

    def get_lr(self) -> float:
        """The scheduled learning rate of the top encoder layer (``--lr`` at the peak of the schedule)."""
        rate, base = self.scheduler.get_last_lr()[0], self.scheduler.base_lrs[0]
        return rate if base == self.args.lr else rate / base * self.args.lr

    # ------------------------------------------------------------------ steps
    def train_step(self, samples: list[dict | None]) -> dict:
        """One update over ``samples`` (``--update-freq`` batches): forward, backward, clip, step.

        Returns:
            dict: ``loss`` (summed), ``sample_size``, ``ntokens`` (over all ranks) and ``grad_norm``.
        """
        self.optimizer.zero_grad()
        model = self.ddp or self.model
        logs, sample_size = [], 0
        for i, sample in enumerate(samples):
            dummy = sample is None  # this rank has no batch left: zero gradient, so DDP's all-reduce still matches
            sample = move_to(self.dummy_batch if dummy else sample, self.device)
            if not dummy and self.dummy_batch is None:
                self.dummy_batch = sample
            sync = self.ddp.no_sync() if self.ddp and i < len(samples) - 1 else contextlib.nullcontext()
            try:
                with sync, precision.autocast(self.device, self.amp_dtype):
                    loss, size, log = self.task.train_step(sample, model, self.criterion, self.optimizer,
                                                           self.num_updates, ignore_grad=dummy)
            except OUT_OF_MEMORY as e:
                raise self.out_of_memory(sample) from e
            except InvalidLossError as e:
                keys = ", ".join(sample["key"][:20])
                if not self.args.skip_invalid_loss:
                    raise InvalidLossError(f"{e} at update {self.num_updates + 1} on the batch with keys [{keys}]; "
                                           f"stopping (--skip-invalid-loss skips such batches)") from None
                logger.warning("skipping a batch with %s, keys [%s]", e, keys)
                continue
            if not dummy:
                logs.append(log)
                sample_size += size
        # sums over all ranks; DDP averages gradients over ranks, hence the world size factor below
        sample_size, loss_sum, ntokens = dist.all_reduce_sum(
            [sample_size, sum(l["loss"] for l in logs), sum(l["ntokens"] for l in logs)], self.world, self.device)
        self.optimizer.unscale_()
        grad_norm = self.clip_and_divide(sample_size)
        self.optimizer.step(grad_norm, self.num_updates)
        self.scheduler.step()
        self.num_updates += 1
        return {"loss": loss_sum, "sample_size": sample_size, "ntokens": ntokens, "grad_norm": float(grad_norm)}

    def clip_and_divide(self, sample_size) -> torch.Tensor:
        """Divide the gradients by the sample size and clip them in one multiply; returns the divided norm."""
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        scale = self.world.size / sample_size if sample_size else 1.0
        grad_norm = total_norm(grads) * scale
        coef = scale * min(1.0, self.args.clip_norm / (float(grad_norm) + 1e-6)) if self.args.clip_norm else scale
        if grads and coef != 1.0:
            torch._foreach_mul_(grads, coef)
        return grad_norm

    def out_of_memory(self, sample) -> BatchOutOfMemory:
        shape = tuple(sample["net_input"]["input_ids"].shape)
        rows = "windows" if "window_to_text" in sample["net_input"] else "texts"  # --long-text chunks: (W, T)
        return BatchOutOfMemory(f"out of memory on a batch of {shape[0]} {rows} x {shape[1]} tokens "
                                f"({sample['ntokens']} real tokens); lower --max-tokens (now {self.args.max_tokens}) "
                                f"or --batch-size")

    def valid_step(self, dataset) -> tuple[float, np.ndarray]:
        """Summed loss and predictions in [0, 1] for every row of ``dataset`` (all ranks share the work).

        Returns:
            tuple: ``(loss, preds)``; ``preds`` (float64, in input order) is complete on rank 0.
        """
        self.model.eval()
        batches = inference_batches(dataset, 2 * self.args.max_tokens, 4 * self.args.batch_size)
        mine = batches[self.world.rank::self.world.size]

        def forward(sample):
            with precision.autocast(self.device, self.amp_dtype):
                _, _, log, net_output = self.task.valid_step(sample, self.model, self.criterion)
            return (log["loss"] if math.isfinite(log["loss"]) else 0.0), net_output["encoder_out"]

        loss, preds = predict(forward, dataset, mine, self.device)
        return dist.gather_predictions(loss, preds, [i for b in mine for i in b], self.world)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, extra_state: dict) -> dict:
        """What a checkpoint holds: options, weights, prompt table, encoder, optimizer and ``extra_state``."""
        cfg = {k: v for k, v in vars(self.args).items() if not k.startswith("_")}
        return checkpoint_utils.plain({
            "format_version": checkpoint_utils.FORMAT_VERSION,
            "cfg": cfg,
            "model": self.model.state_dict(),
            "prompts": self.task.prompts.to_dict(),
            "encoder": {"signature": checkpoint_utils.encoder_signature(self.model.encoder.config),
                        "name_or_path": self.args.model_name_or_path},
            "optimizer_history": [{"criterion_name": type(self.criterion).__name__, "optimizer_name": "AdamW",
                                   "lr_scheduler_state": self.scheduler.state_dict(),
                                   "num_updates": self.num_updates}],
            "last_optimizer_state": self.optimizer.state_dict(),
            "extra_state": {**extra_state, "num_updates": self.num_updates,
                            "scaler": self.optimizer.scaler_state(), "rng": checkpoint_utils.rng_state()},
        })

    def save_checkpoint(self, names: list[str], extra_state: dict) -> None:
        """Write the checkpoint under ``names`` in ``--save-dir`` (rank 0; the others wait for it)."""
        if self.world.is_main:
            checkpoint_utils.save_checkpoint(self.args.save_dir, names, self.state_dict(extra_state),
                              save_optimizer_state=not self.args.no_save_optimizer_state)
        dist.barrier(self.world)

    def load_checkpoint(self, path) -> dict | None:
        """Resume from ``path``: weights, optimizer, schedule, RNG; returns its ``extra_state`` (None: no file)."""
        if not path.is_file():
            return None
        state = checkpoint_utils.load_checkpoint(path)
        if state["prompts"]["ids"] != self.task.prompts.ids:
            raise CheckpointError(f"{path}: its prompts {state['prompts']['ids']} differ from the data's "
                                  f"{self.task.prompts.ids}; use another --save-dir, or --finetune-from-model")
        # ranges, step, traits, max length, encoder: as this run's
        checkpoint_utils.check_resume(state, self.args, self.task.prompts, path)
        if "last_optimizer_state" not in state:
            raise CheckpointError(f"{path}: saved without its optimizer state (--no-save-optimizer-state), so "
                                  f"training cannot resume from it; start from it with --finetune-from-model")
        checkpoint_utils.load_finetune_weights(self.model, state, self.task.prompts, self.model.encoder.config, path)
        self.optimizer.load_state_dict(state["last_optimizer_state"])
        self.scheduler.load_state_dict(state["optimizer_history"][-1]["lr_scheduler_state"])
        extra = state["extra_state"]
        self.optimizer.load_scaler_state(extra.get("scaler"))
        self.num_updates = extra["num_updates"]
        checkpoint_utils.set_rng_state(extra["rng"])
        return extra
