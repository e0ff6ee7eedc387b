"""Load the iris data, train a seeded classifier, measure it."""

from irisrepro.data import load
from irisrepro.metrics import evaluate
from irisrepro.train import train

__all__ = ["evaluate", "load", "train"]
