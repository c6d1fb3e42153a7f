"""Real human-scored data sets, one call away: ``table, card = load_dataset("mohler" | "clear" | "ellipse")``.

Beyond the course (the notes train on their own table): a local copy, else the cache, else a download pinned to a
commit of the set's public repository and checked against the files' git blob ids. See docs/datasets.md.
"""
from scorelib.datasets.fetch import DownloadError
from scorelib.datasets.loader import NAMES, DataCard, Dataset, load_dataset

__all__ = ["DataCard", "Dataset", "DownloadError", "NAMES", "load_dataset"]
