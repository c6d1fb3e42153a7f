"""The training loop: epochs, accumulation, AMP, clipping, schedule, validation, checkpoints.

Mirrors ``fairseq/trainer.py`` (``Trainer.train_step``, ``valid_step``, ``save_checkpoint``,
``load_checkpoint``) and the epoch loop of ``fairseq_cli/train.py`` (``main``, ``train``,
``validate_and_save``), in one small file.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import checkpoint as C
from . import evaluate as E
from .data import batch_by_size
from .model import pick_device

logger = logging.getLogger(__name__)
MAXIMIZE = {"qwk": True, "pearson": True, "spearman": True, "rmse": False, "loss": False}


def total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of all gradients together (as ``clip_grad_norm_`` computes it)."""
    if not grads:
        return torch.zeros(())
    if hasattr(torch.nn.utils, "get_total_norm"):  # torch >= 2.6
        return torch.nn.utils.get_total_norm(grads, foreach=True)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))


class BatchOutOfMemory(RuntimeError):
    """Out of memory on one batch; the message gives its shape and what to lower."""


class Trainer:
    """Train ``model`` on ``task``'s data with ``criterion``.

    Args:
        args: training options (see :mod:`scorelib.options`).
        task (TextScoringTask): with ``train`` and ``valid`` loaded or loadable.
        model (ScoringModel): the model, on the CPU.
        criterion: returns ``(loss, sample_size, logging_output)``.
    """

    def __init__(self, args, task, model, criterion):
        self.args, self.task, self.criterion = args, task, criterion
        self.device = pick_device(args.cpu)
        if args.fp16 and self.device.type != "cuda":
            raise ValueError("--fp16 needs a CUDA GPU; on the CPU use --bf16")
        self.amp_dtype = torch.float16 if args.fp16 else torch.bfloat16 if args.bf16 else None
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.model = model.to(self.device)
        self.train_data = task.dataset("train")
        self.valid_data = task.dataset("valid") if "valid" in task.frames else None
        self.updates_per_epoch = math.ceil(len(self.epoch_batches(1)) / self.world_size / args.update_freq)
        total = args.max_update or self.updates_per_epoch * max(args.max_epoch, 1)
        self.total_updates = min(total, args.max_update or total)
        warmup = args.warmup_updates if args.warmup_updates is not None else int(0.06 * self.total_updates)
        from transformers import get_scheduler

        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            (no_decay if p.ndim < 2 or "LayerNorm" in name or "ques_emb" in name else decay).append(p)
        groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        try:  # the fused kernel (CPU since torch 2.4, CUDA) steps all parameters in one pass, as HF's default
            self.optimizer = torch.optim.AdamW(groups, lr=args.lr, fused=self.device.type in ("cpu", "cuda"))
        except (RuntimeError, TypeError, ValueError):
            self.optimizer = torch.optim.AdamW(groups, lr=args.lr)
        self.scheduler = get_scheduler(args.lr_scheduler, self.optimizer, num_warmup_steps=warmup,
                                       num_training_steps=self.total_updates)
        self.scaler = torch.amp.GradScaler("cuda") if args.fp16 else None
        self.ddp = None
        if self.world_size > 1:
            # find_unused_parameters: the encoder's pooler (and a prompt row absent from a batch) gets no gradient
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        self.num_updates, self.epoch, self.iterations_in_epoch = 0, 1, 0
        self.best, self.bad_validations, self.history = None, 0, []
        self.meters = self.fresh_meters()  # this epoch's running sums, saved so a resumed epoch reports them whole
        self.metric = args.best_checkpoint_metric or ("qwk" if task.prompts.step is not None else "pearson")
        self.maximize = args.maximize_best_checkpoint_metric or MAXIMIZE[self.metric]

    # ------------------------------------------------------------------ data
    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """Length-sorted batches within ``--max-tokens``, in a seeded order that depends on the epoch."""
        ds = self.train_data
        batches = batch_by_size(ds.ordered_indices(seed=self.args.seed + epoch), ds.num_tokens,
                                self.args.max_tokens, self.args.batch_size)
        order = np.random.default_rng(self.args.seed + epoch).permutation(len(batches))
        return [batches[i] for i in order]

    def rank_batches(self, epoch: int) -> list[list[int] | None]:
        """This rank's share of the epoch's batches (``batches[rank::world_size]``), padded with ``None`` so that
        every rank runs the same number of steps (a ``None`` is a dummy batch whose gradient is zeroed)."""
        batches = self.epoch_batches(epoch)
        mine = batches[self.rank::self.world_size]
        return mine + [None] * (math.ceil(len(batches) / self.world_size) - len(mine))

    def to_device(self, sample: dict) -> dict:
        net_input = {k: v.to(self.device, non_blocking=True) for k, v in sample["net_input"].items()}
        return {**sample, "net_input": net_input, "target": sample["target"].to(self.device)}

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # ------------------------------------------------------------------ steps
    def train_step(self, samples: list[dict]) -> dict:
        """One update over ``samples`` (``--update-freq`` batches): forward, backward, clip, step."""
        self.optimizer.zero_grad(set_to_none=True)
        logs, sample_size = [], 0
        model = self.ddp or self.model
        for i, sample in enumerate(samples):
            dummy = sample is None  # this rank has no batch left: zero gradient, so DDP's all-reduce still matches
            if dummy:
                ds = self.train_data
                sample = ds.collater([ds[j] for j in self.epoch_batches(self.epoch)[0]])
            sample = self.to_device(sample)
            self._sample, self._skipped = sample, False
            sync = self.ddp.no_sync() if self.ddp and i < len(samples) - 1 else contextlib.nullcontext()
            try:
                with sync, self.autocast():
                    loss, size, log = self.task.train_step(sample, model, self.criterion, self, self.num_updates,
                                                           ignore_grad=dummy)
            except torch.OutOfMemoryError as e:
                shape = tuple(sample["net_input"]["input_ids"].shape)
                raise BatchOutOfMemory(f"out of memory on a batch of {shape[0]} texts x {shape[1]} tokens "
                                       f"({sample['ntokens']} real tokens); lower --max-tokens (now "
                                       f"{self.args.max_tokens}) or --batch-size") from e
            if not self._skipped and not dummy:
                logs.append(log)
                sample_size += size
        # sums over all ranks; DDP averages gradients over ranks, hence the world_size factor below
        sample_size, loss_sum, ntokens = self.all_reduce_sum(
            [sample_size, sum(l["loss"] for l in logs), sum(l["ntokens"] for l in logs)])
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        # divide by the sample size and clip in one multiply: the norm is that of the divided gradients
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        scale = self.world_size / sample_size if sample_size else 1.0
        grad_norm = total_norm(grads) * scale
        coef = scale * min(1.0, self.args.clip_norm / (float(grad_norm) + 1e-6)) if self.args.clip_norm else scale
        if grads and coef != 1.0:
            torch._foreach_mul_(grads, coef)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        elif not torch.isfinite(grad_norm):
            raise FloatingPointError(f"gradient norm is {float(grad_norm)} at update {self.num_updates + 1}")
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.num_updates += 1
        return {"loss": loss_sum, "sample_size": sample_size, "ntokens": ntokens, "grad_norm": float(grad_norm)}

    def backward(self, loss) -> None:
        """Called by ``task.train_step`` (as fairseq's ``optimizer.backward``): checks the loss, scales, backprops."""
        value = float(loss.detach())
        if not math.isfinite(value):
            keys = ", ".join(self._sample["key"][:20])
            if not self.args.skip_invalid_loss:
                raise FloatingPointError(f"loss is {value} at update {self.num_updates + 1} on the batch with keys "
                                         f"[{keys}]; stopping (--skip-invalid-loss skips such batches)")
            logger.warning("skipping a batch with loss %s, keys [%s]", value, keys)
            self._skipped = True
            return
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def all_reduce_sum(self, value):
        """Sum a number (or a list of numbers, in one call) over all ranks; types are kept."""
        if self.world_size == 1:
            return value
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        out = [type(v)(x) for v, x in zip(values, t.tolist())]
        return out if isinstance(value, (list, tuple)) else out[0]

    def predict(self, ds) -> tuple[float, np.ndarray]:
        """Summed loss and predictions in [0, 1] for every row of ``ds``, in input order."""
        self.model.eval()
        preds = np.zeros(len(ds), dtype=np.float64)
        loss = 0.0
        batches = batch_by_size(ds.ordered_indices(), ds.num_tokens, 2 * self.args.max_tokens, 4 * self.args.batch_size)
        mine = batches[self.rank::self.world_size]
        for batch in mine:
            sample = self.to_device(ds.collater([ds[i] for i in batch]))
            with torch.no_grad(), self.autocast():
                _, _, log, net_output = self.task.valid_step(sample, self.model, self.criterion)
            loss += log["loss"] if math.isfinite(log["loss"]) else 0.0
            preds[batch] = net_output["encoder_out"].float().cpu().numpy()
        if self.world_size > 1:
            gathered = [None] * self.world_size
            torch.distributed.all_gather_object(gathered, (loss, {i: preds[i] for b in mine for i in b}))
            loss = sum(g[0] for g in gathered)
            for _, part in gathered:
                preds[list(part)] = list(part.values())
        return loss, preds

    def validate(self) -> dict:
        """Loss and metrics on the valid split (``qwk``, ``pearson``, ``spearman``, ``rmse``, ``loss``)."""
        ds = self.valid_data
        loss, preds = self.predict(ds)
        frame = E.results_frame(ds.keys, ds.prompts, ds.targets, preds, ds.texts, self.task.prompts)
        metrics = E.flat_metrics(E.compute_metrics(frame, self.task.prompts))
        metrics["loss"] = loss / max(len(ds), 1)
        return metrics

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, end_of_epoch: bool) -> dict:
        cfg = {k: v for k, v in vars(self.args).items() if not k.startswith("_")}
        return C.plain({
            "format_version": C.FORMAT_VERSION,
            "cfg": cfg,
            "model": self.model.state_dict(),
            "prompts": self.task.prompts.to_dict(),
            "encoder": {"signature": C.encoder_signature(self.model.encoder.config),
                        "name_or_path": self.args.model_name_or_path},
            "optimizer_history": [{"criterion_name": type(self.criterion).__name__, "optimizer_name": "AdamW",
                                   "lr_scheduler_state": self.scheduler.state_dict(),
                                   "num_updates": self.num_updates}],
            "last_optimizer_state": self.optimizer.state_dict(),
            "extra_state": {
                "epoch": self.epoch, "num_updates": self.num_updates, "end_of_epoch": end_of_epoch,
                "iterations_in_epoch": self.iterations_in_epoch,
                "best": {"metric": self.metric, "value": self.best, "maximize": self.maximize},
                "bad_validations": self.bad_validations, "history": self.history, "meters": self.meters,
                "scaler": self.scaler.state_dict() if self.scaler else None, "rng": C.rng_state(),
            },
        })

    def save_checkpoint(self, end_of_epoch: bool, is_best: bool) -> list[str]:
        """Write ``checkpoint_last.pt`` and, as due, the epoch/update/best copies (rank 0 only; the other
        ranks wait, so that none reads a checkpoint before it is written)."""
        names = self._save_checkpoint(end_of_epoch, is_best) if self.rank == 0 else []
        if self.world_size > 1:
            torch.distributed.barrier()
        return names

    def _save_checkpoint(self, end_of_epoch: bool, is_best: bool) -> list[str]:
        save_dir = Path(self.args.save_dir)
        names = ["checkpoint_last.pt"]
        if end_of_epoch and not self.args.no_epoch_checkpoints:
            names.append(f"checkpoint{self.epoch}.pt")
        if not end_of_epoch and self.args.save_interval_updates:
            names.append(f"checkpoint_{self.epoch}_{self.num_updates}.pt")
        if is_best:
            names.append("checkpoint_best.pt")
        # checkpoint_last.pt is replaced last: a run killed part way resumes from the previous one and redoes
        # those updates, so checkpoint_best.pt is never older than the best value that checkpoint_last.pt records
        order = names[1:] + names[:1]
        first = save_dir / order[0]
        C.atomic_save(self.state_dict(end_of_epoch), first)
        for name in order[1:]:
            C.atomic_copy(first, save_dir / name)
        return names

    def load_checkpoint(self, path) -> bool:
        """Resume from ``path`` if it exists: weights, optimizer, schedule, position in the epoch, RNG."""
        path = Path(path)
        if not path.is_file():
            return False
        state = C.load_checkpoint(path)
        if state["prompts"]["ids"] != self.task.prompts.ids:
            raise C.CheckpointError(f"{path}: its prompts {state['prompts']['ids']} differ from the data's "
                                    f"{self.task.prompts.ids}; use another --save-dir, or --finetune-from-model")
        C.load_finetune_weights(self.model, state, self.task.prompts, self.model.encoder.config, path)
        self.optimizer.load_state_dict(state["last_optimizer_state"])
        self.scheduler.load_state_dict(state["optimizer_history"][-1]["lr_scheduler_state"])
        extra = state["extra_state"]
        if self.scaler and extra.get("scaler"):
            self.scaler.load_state_dict(extra["scaler"])
        self.num_updates = extra["num_updates"]
        self.epoch = extra["epoch"] + (1 if extra["end_of_epoch"] else 0)
        self.iterations_in_epoch = 0 if extra["end_of_epoch"] else extra["iterations_in_epoch"]
        self.best, self.bad_validations = extra["best"]["value"], extra["bad_validations"]
        self.history = list(extra["history"])
        self.meters = self.fresh_meters() if extra["end_of_epoch"] else dict(extra.get("meters") or self.fresh_meters())
        C.set_rng_state(extra["rng"])
        logger.info("resumed from %s: epoch %d, %d updates done, %d batches into the epoch",
                    path, self.epoch, self.num_updates, self.iterations_in_epoch)
        return True

    # ------------------------------------------------------------------ loop
    def is_better(self, value) -> bool:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return self.best is None
        if self.best is None:
            return True
        return value > self.best if self.maximize else value < self.best

    @staticmethod
    def fresh_meters() -> dict:
        return {"loss": 0.0, "sample_size": 0.0, "ntokens": 0, "seconds": 0.0}

    def validate_and_save(self, end_of_epoch: bool, row: dict | None = None) -> dict:
        """Validate, track the best value and save; ``row`` (the epoch's history row) goes into that checkpoint."""
        metrics = self.validate() if self.valid_data is not None else {}
        value = metrics.get(self.metric)
        is_best = self.is_better(value)
        if is_best:
            self.best = value if value is not None else self.best
            self.bad_validations = 0
        else:
            self.bad_validations += 1
        if row is not None:  # appended before saving, so that resuming from this checkpoint keeps the row
            tail = {k: row.pop(k) for k in ("tokens_per_s", "seconds")}
            self.history.append({**row, **{f"valid_{k}": v for k, v in metrics.items() if k != "n"}, **tail})
        self.save_checkpoint(end_of_epoch, is_best)
        return metrics

    def done(self) -> bool:
        over_updates = self.args.max_update and self.num_updates >= self.args.max_update
        over_epochs = self.args.max_epoch and self.epoch > self.args.max_epoch
        patience = self.args.patience >= 0 and self.bad_validations > self.args.patience
        return bool(over_updates or over_epochs or patience)

    def train(self) -> list[dict]:
        """Run epochs until ``--max-epoch``, ``--max-update`` or ``--patience`` stops training.

        Returns:
            list[dict]: the per-epoch history (also in ``SAVE_DIR/history.csv``).
        """
        from tqdm.auto import tqdm

        ds = self.train_data
        while not self.done():
            batches = self.rank_batches(self.epoch)
            groups = [batches[i:i + self.args.update_freq] for i in range(0, len(batches), self.args.update_freq)]
            start_group = self.iterations_in_epoch // self.args.update_freq
            bar = tqdm(total=len(groups), initial=start_group, desc=f"epoch {self.epoch:03d}", leave=False,
                       disable=self.args.log_format != "tqdm" or self.rank != 0)
            if start_group == 0:
                self.meters = self.fresh_meters()
            m, t0 = self.meters, time.perf_counter()
            for g in range(start_group, len(groups)):
                log = self.train_step([ds.collater([ds[i] for i in b]) if b is not None else None for b in groups[g]])
                self.iterations_in_epoch = (g + 1) * self.args.update_freq
                m["ntokens"] += log["ntokens"]
                m["loss"] += log["loss"]
                m["sample_size"] += log["sample_size"]
                bar.update(1)
                bar.set_postfix(loss=f"{log['loss'] / max(log['sample_size'], 1):.4f}",
                                lr=f"{self.scheduler.get_last_lr()[0]:.1e}")
                self.log_progress(log)
                if self.args.save_interval_updates and self.num_updates % self.args.save_interval_updates == 0 \
                        and g + 1 < len(groups):
                    m["seconds"], t0 = m["seconds"] + time.perf_counter() - t0, time.perf_counter()
                    self.validate_and_save(end_of_epoch=False)
                if self.args.max_update and self.num_updates >= self.args.max_update:
                    break
            bar.close()
            seconds = m["seconds"] + time.perf_counter() - t0
            finished_epoch = self.iterations_in_epoch >= len(batches)
            row = {"epoch": self.epoch, "updates": self.num_updates, "train_loss": m["loss"] / max(m["sample_size"], 1),
                   "tokens_per_s": m["ntokens"] / max(seconds, 1e-9), "seconds": seconds}
            self.validate_and_save(end_of_epoch=finished_epoch, row=row)
            row = self.history[-1]
            self.report(row)
            if finished_epoch:
                self.epoch, self.iterations_in_epoch = self.epoch + 1, 0
            if self.rank == 0:
                self.save_history()
            if not finished_epoch:
                break
        return self.history

    def log_progress(self, log: dict) -> None:
        if self.rank != 0 or self.args.log_format == "tqdm" or self.num_updates % self.args.log_interval:
            return
        record = {"epoch": self.epoch, "update": self.num_updates, "loss": round(log["loss"] / max(log["sample_size"], 1), 5),
                  "lr": self.scheduler.get_last_lr()[0], "gnorm": round(log["grad_norm"], 3)}
        print(json.dumps(record) if self.args.log_format == "json" else
              " | ".join(f"{k} {v}" for k, v in record.items()), flush=True)

    def report(self, row: dict) -> None:
        if self.rank != 0:
            return
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
        if self.args.log_format == "json":
            print(json.dumps(shown), flush=True)
        else:
            print(" | ".join(f"{k} {v}" for k, v in shown.items()), flush=True)

    def save_history(self) -> None:
        path = Path(self.args.save_dir) / "history.csv"
        tmp = path.with_name(".history.csv.tmp")
        pd.DataFrame(self.history).to_csv(tmp, index=False)
        os.replace(tmp, path)
