import pytest

pytestmark = pytest.mark.container


def test_training_is_seeded():
    from irisrepro import evaluate, load, train

    x_train, x_test, y_train, y_test = load()
    first = evaluate(train(x_train, y_train), x_test, y_test)
    second = evaluate(train(x_train, y_train), x_test, y_test)
    assert first == second
    assert first["accuracy"] > 0.8
