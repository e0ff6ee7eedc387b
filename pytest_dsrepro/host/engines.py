"""The executors of one host session: the one ``dsrepro_engine`` (or ``dsrepro_executor``) names,
or one per label of several engines (``dsrepro_engine``); what the session header, the summary and the JSON
report say of them, and which groups each one runs (its lane)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import pytest

from pytest_dsrepro.errors import DsreproUsageError
from pytest_dsrepro.executors import Executor, gpu_words
from pytest_dsrepro.host.xdist import XDIST_IMAGE
from pytest_dsrepro.markers import ContainerSpec
from pytest_dsrepro.settings import Settings

Group = tuple[ContainerSpec, "list[pytest.Item]"]  # items that share one worker, and its spec


class Engines:
    """``default`` runs every group unless several engines (``dsrepro_engine``) give ``by_label``."""

    def __init__(self, config: pytest.Config, settings: Settings, session_id: str,
                 say: Callable[[str], None], xdist_worker: bool, xdist: bool) -> None:
        self.settings = settings
        for_executor = settings
        if xdist_worker:  # the controller has the image ready: use it as given
            image = getattr(config, "workerinput", {}).get(XDIST_IMAGE)
            if image:
                for_executor = dataclasses.replace(settings, image=image)
        self.by_label: dict[str, Executor] = {}
        if settings.engines:
            self._check(xdist)
            for label, engine in settings.engines:
                self.by_label[label] = config.hook.pytest_dsrepro_make_executor(
                    config=config, settings=dataclasses.replace(for_executor, engine=engine),
                    session_id=session_id, say=_labelled(say, label))
            self.default: Executor = next(iter(self.by_label.values()))
        else:
            self.default = config.hook.pytest_dsrepro_make_executor(
                config=config, settings=for_executor, session_id=session_id, say=say)

    def _check(self, xdist: bool) -> None:
        if xdist:
            raise DsreproUsageError("several engines and pytest-xdist (-n) do not combine: the "
                                    "engines already run side by side; drop -n")
        if self.settings.update and self.settings.engine_mode == "matrix":
            raise DsreproUsageError(
                "--dsrepro-update with several engines in matrix mode would record every "
                "baseline once per engine. Record on one engine (--dsrepro-engine NAME), then "
                "check on all.")

    def all(self) -> list[Executor]:
        return list(self.by_label.values()) or [self.default]

    def get(self, label: str) -> Executor:
        """The executor of lane ``label`` (``""``: the only one)."""
        return self.by_label.get(label, self.default)

    def header(self) -> list[str]:
        if not self.by_label:
            return [f"dsrepro: container items run in the project's image "
                    f"({self.default.header()})"]
        return [f"dsrepro: container items run in the project's image on "
                f"{len(self.by_label)} engines ({self.settings.engine_mode})",
                *(f"dsrepro:   {label}: {executor.header()}"
                  for label, executor in self.by_label.items())]

    def describe(self, gpus_seen: bool | None) -> list[str]:
        """The summary's lines; ``gpus_seen`` is what xdist workers found."""
        if self.by_label:
            return [f"[{label}] {line}" for label, executor in self.by_label.items()
                    for line in executor.describe()]
        lines = self.default.describe()
        if gpus_seen is not None:
            lines = [line.replace("GPUs not requested", f"GPUs {gpu_words(gpus_seen)}")
                     for line in lines]
        return lines

    def facts(self, gpus_seen: bool | None) -> dict[str, Any]:
        """The JSON report's facts, with each engine's under ``engines``."""
        facts = self.default.facts()
        if self.by_label:
            facts["engines"] = {label: {**executor.facts(),
                                        "kind": getattr(executor, "kind", "engine")}
                                for label, executor in self.by_label.items()}
        if facts.get("gpus_available") is None and gpus_seen is not None:
            facts["gpus_available"] = gpus_seen
        return facts

    def lanes(self, groups: list[Group], durations: Callable[[], dict[str, float]]
              ) -> dict[str, list[Group]]:
        """Which groups each engine runs, one after another: all of them on this session's
        engine; with several engines, each its own items (matrix) or its share (spread, longest
        first)."""
        if not self.by_label:
            return {"": groups}
        from pytest_dsrepro.host import matrix

        labels = list(self.by_label)
        if self.settings.engine_mode == "spread":
            shares = matrix.spread(groups, labels, durations())
            return {label: [(dataclasses.replace(spec, engine=label), items)
                            for spec, items in shares[label]] for label in labels}
        return {label: [(spec, items) for spec, items in groups if spec.engine == label]
                for label in labels}


def _labelled(say: Callable[[str], None], label: str) -> Callable[[str], None]:
    return lambda line: say(f"[{label}] {line}")
