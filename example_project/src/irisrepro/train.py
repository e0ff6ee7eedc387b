"""A seeded random forest."""

from __future__ import annotations

import pandas as pd
from sklearn.ensemble import RandomForestClassifier

SEED = 42


def train(features: pd.DataFrame, labels: pd.Series, *, seed: int = SEED, trees: int = 50,
          depth: int = 3) -> RandomForestClassifier:
    """Fit a small forest; the same seed gives the same model."""
    model = RandomForestClassifier(n_estimators=trees, max_depth=depth, random_state=seed)
    return model.fit(features, labels)
