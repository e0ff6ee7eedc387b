"""The model's metrics must reproduce: checked in the project's image against baselines/."""

import pytest

pytestmark = pytest.mark.container  # scikit-learn exists only in the image


def _fitted():
    from irisrepro import load, train

    x_train, x_test, y_train, y_test = load()
    return train(x_train, y_train), x_test, y_test


def test_training_is_seeded():
    from irisrepro import evaluate

    model, x_test, y_test = _fitted()
    again, _, _ = _fitted()
    assert evaluate(model, x_test, y_test) == evaluate(again, x_test, y_test)


def test_metrics_reproduce(baseline):
    from irisrepro import evaluate

    model, x_test, y_test = _fitted()
    metrics = evaluate(model, x_test, y_test)
    baseline.check("accuracy", metrics["accuracy"])
    baseline.check("f1_macro", metrics["f1_macro"], rtol=1e-9)
    baseline.check("confusion", metrics["confusion"])


def test_feature_importances_reproduce(baseline):
    import pandas as pd

    model, x_test, _ = _fitted()
    importances = pd.Series(model.feature_importances_, index=x_test.columns, name="importance")
    baseline.check("importances", importances, rtol=1e-9)
