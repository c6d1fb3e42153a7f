"""scorelib: fairseq-style training of a text scorer, for learning and for use.

The pieces mirror fairseq's custom-task API (register a task, ``setup_task``, ``load_dataset``, ``collater``,
``build_model``, a criterion, ``fairseq-train``) around a Hugging Face encoder with a prompt embedding and a sigmoid
output. The folders show the architecture as fairseq's do: ``tasks/``, ``data/``, ``models/``, ``criterions/``,
``optim/``, ``logging/``, ``trainer.py``, ``training.py``, ``checkpoint_utils.py`` (the core), the commands in
``cli/``, and each part beyond the course in a folder of its own (``hub/``, ``cv/``, ``cutpoints/``, ``stack/``,
``report/``, ``explain/``).

``import scorelib`` loads only the errors and the registries; every other public name is imported on first use
(PEP 562), so the import stays cheap.
"""
import importlib
import logging as _std_logging

from scorelib.errors import CheckpointError, DataError, InputError, OptionError, ScorelibError
from scorelib.registry import import_user_dir, register_criterion, register_model, register_task

__version__ = "0.1.0"

# public name -> the module that defines it, imported when the name is first used
LAZY = {
    "ScoreMSECriterion": "scorelib.criterions.score_mse",
    "ScoringDataset": "scorelib.data.scoring_dataset", "batch_by_size": "scorelib.data.scoring_dataset",
    "ScoringModel": "scorelib.models.scoring_model", "default_model_path": "scorelib.models.scoring_model",
    "pick_device": "scorelib.models.scoring_model",
    "PromptTable": "scorelib.data.prompts",
    "Scorer": "scorelib.hub.scorer", "load": "scorelib.hub.scorer",
    "TextScoringTask": "scorelib.tasks.text_scoring",
    "fast_mode": "scorelib.options", "parse_args": "scorelib.options",
    "set_seed": "scorelib.training", "train": "scorelib.cli.train",
    "setup_logging": "scorelib.logging.console",
}
__all__ = sorted([
    "CheckpointError", "DataError", "InputError", "OptionError", "ScorelibError", "import_user_dir",
    "register_criterion", "register_model", "register_task", *LAZY,
])


def __getattr__(name):
    if name in LAZY:
        value = getattr(importlib.import_module(LAZY[name]), name)
        globals()[name] = value  # the next lookup is a plain attribute
        return value
    raise AttributeError(f"module 'scorelib' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(LAZY))


_std_logging.getLogger(__name__).addHandler(_std_logging.NullHandler())  # an application configures logging
