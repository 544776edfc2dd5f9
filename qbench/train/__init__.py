"""The ablation lab's trainer: `train(spec, examples, out, config)`, data readers and recipes."""

from qbench.train.data import DataError, Example, as_examples, llava_examples
from qbench.train.loop import OutOfMemory, train
from qbench.train.recipes import RECIPES, TrainConfig
from qbench.train.start import Start

__all__ = ["RECIPES", "DataError", "Example", "OutOfMemory", "Start", "TrainConfig", "as_examples", "llava_examples",
           "train"]
