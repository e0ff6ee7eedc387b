"""Runs only where the engine can provide a GPU; skipped, with the reason, everywhere else."""

import os

import pytest


@pytest.mark.container(gpu=True)
def test_training_on_a_gpu_machine_is_deterministic():
    from irisrepro import evaluate, load, train

    assert os.environ.get("NVIDIA_VISIBLE_DEVICES")  # set by the engine for GPU containers
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"  # set by pytest-dsrepro
    x_train, x_test, y_train, y_test = load()
    first = evaluate(train(x_train, y_train), x_test, y_test)
    second = evaluate(train(x_train, y_train), x_test, y_test)
    assert first == second
