"""Data: tfds builders for scale-varied data sets and the input pipeline."""

from scalenet.data.builders import BUILDERS, make_builder
from scalenet.data.generate import FIXED_TEST_FACTORS, fixed_split_name
from scalenet.data.pipeline import Datasets, Split, eval_batches, get_datasets, train_batches
from scalenet.data.readers import DataError

__all__ = [
    "BUILDERS", "DataError", "Datasets", "FIXED_TEST_FACTORS", "Split", "eval_batches",
    "fixed_split_name", "get_datasets", "make_builder", "train_batches",
]
