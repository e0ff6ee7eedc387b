"""The iris data set, which ships inside scikit-learn: no download."""

from __future__ import annotations

import pandas as pd
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split


def load(test_size: float = 0.3, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """Features and labels, split reproducibly."""
    frame = load_iris(as_frame=True).frame
    features = frame.drop(columns="target")
    labels = frame["target"]
    return train_test_split(features, labels, test_size=test_size, random_state=seed, stratify=labels)
