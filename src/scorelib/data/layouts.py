"""Column names, ranges and encodings of public essay-scoring sets (``--layout``).

A production extra, not part of the course's core: fairseq keeps such facts in each data
set's preprocessing script. A layout maps a known file onto scorelib's columns.
"""
from __future__ import annotations

LAYOUTS = {
    "table": {},
    "asap-aes": {  # Kaggle's training_set_rel3.tsv
        "key": "essay_id", "prompt": "essay_set", "text": "essay", "score": "domain1_score", "step": 1.0,
        "encoding_fallback": "latin-1",
        "ranges": {"1": (2, 12), "2": (1, 6), "3": (0, 3), "4": (0, 3), "5": (0, 4), "6": (0, 4), "7": (0, 30),
                   "8": (0, 60)},
    },
    "asap-sas": {  # Kaggle's train.tsv of the short-answer set
        "key": "Id", "prompt": "EssaySet", "text": "EssayText", "score": "Score1", "step": 1.0,
        "encoding_fallback": "latin-1",
        "ranges": {str(i): (0, 3 if i in (1, 2, 5, 6) else 2) for i in range(1, 11)},
    },
}
