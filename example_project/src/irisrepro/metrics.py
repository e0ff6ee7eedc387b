"""Metrics of a fitted model on held-out data."""

from __future__ import annotations

import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score


def evaluate(model: object, features: pd.DataFrame, labels: pd.Series) -> dict[str, object]:
    """Accuracy, macro F1 and the confusion matrix."""
    predicted = model.predict(features)  # type: ignore[attr-defined]
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "f1_macro": float(f1_score(labels, predicted, average="macro")),
        "confusion": confusion_matrix(labels, predicted).tolist(),
    }
