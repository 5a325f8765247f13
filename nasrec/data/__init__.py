"""Data: read interaction files (or generate synthetic ones), split leave-one-out, batch for torch."""

from __future__ import annotations

from nasrec.data.batching import WindowLoader, eval_inputs, history_matrix, training_windows
from nasrec.data.dataset import SequenceData, load_data
from nasrec.data.download import DATASETS, download_dataset
from nasrec.data.readers import FORMATS
from nasrec.data.split import EvalSet, Splits, leave_one_out
from nasrec.data.stats import dataset_stats
from nasrec.data.synthetic import SyntheticConfig, generate_synthetic

__all__ = [
    "DATASETS",
    "FORMATS",
    "EvalSet",
    "SequenceData",
    "Splits",
    "SyntheticConfig",
    "WindowLoader",
    "dataset_stats",
    "download_dataset",
    "eval_inputs",
    "generate_synthetic",
    "history_matrix",
    "leave_one_out",
    "load_data",
    "training_windows",
]
