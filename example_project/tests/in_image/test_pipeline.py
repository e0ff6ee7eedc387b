"""Collected only inside the image (dsrepro_container_paths): scikit-learn is imported at the top,
which the host does not have."""

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from irisrepro import evaluate, load


def test_a_linear_baseline_reproduces(baseline):
    x_train, x_test, y_train, y_test = load()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(x_train, y_train)
    metrics = evaluate(model, x_test, y_test)
    baseline.check("accuracy", metrics["accuracy"])
    baseline.check("coefficients", model[-1].coef_, rtol=1e-6)
