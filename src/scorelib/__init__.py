"""scorelib: fairseq-style training of a text scorer, for learning and for use.

The pieces mirror fairseq's custom-task API (register a task, ``setup_task``,
``load_dataset``, ``collater``, ``build_model``, a criterion, ``fairseq-train``) around a
Hugging Face encoder with a prompt embedding and a sigmoid output.
"""
import logging

from .criterion import ScoreMSECriterion
from .dataset import ScoringDataset, batch_by_size
from .errors import CheckpointError, DataError, InputError, OptionError, ScorelibError
from .model import ScoringModel, default_model_path, pick_device
from .prompts import PromptTable
from .registry import import_user_dir, register_criterion, register_model, register_task
from .scorer import Scorer, load
from .tasks import TextScoringTask
from .options import fast_mode, parse_args
from .train import set_seed, train
from .console import setup_logging

__version__ = "0.1.0"
__all__ = [
    "CheckpointError", "DataError", "InputError", "OptionError", "PromptTable", "ScoreMSECriterion", "Scorer",
    "ScorelibError", "ScoringDataset", "ScoringModel", "TextScoringTask", "batch_by_size", "default_model_path",
    "fast_mode", "import_user_dir", "load", "parse_args", "pick_device", "register_criterion", "register_model",
    "register_task", "set_seed", "setup_logging", "train",
]
logging.getLogger(__name__).addHandler(logging.NullHandler())  # an application configures logging, not an import
