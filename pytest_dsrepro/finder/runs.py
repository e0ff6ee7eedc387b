"""The finder's runs, as lanes of the host session's one run loop: ``--dsrepro-confirm`` reruns
what diverged; ``dsrepro flaky --repeat N`` runs every group N-1 more times, perturbed, then twice
seeded what moved too far. Each rerun is quiet: what items obtained goes to :class:`Repeats`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pytest_dsrepro.errors import DsreproUsageError
from pytest_dsrepro.finder.repeat import Repeats, perturbation
from pytest_dsrepro.host.matrix import inner_nodeid

if TYPE_CHECKING:
    from pytest_dsrepro.host.engines import Group
    from pytest_dsrepro.host.session import HostSession


class FinderRuns:
    """Registered with the host session when it observes (repeat or confirm)."""

    def __init__(self, host: HostSession) -> None:
        self.host = host
        self.settings = host.settings
        self.config = host.config
        self.repeats = self._registered()

    def run(self, session: pytest.Session, groups: list[Group]) -> None:
        """After the first run: confirm what diverged, then repeat."""
        if self.settings.confirm:
            self._confirm(session, groups)
        if self.settings.repeat > 1:
            self._repeat(session, groups)

    def say(self, line: str) -> None:
        self.host.say(line)

    def _registered(self) -> Repeats:
        if self.host.xdist_controller or self.host.xdist_worker or self.settings.engines:
            raise DsreproUsageError("dsrepro flaky and --dsrepro-confirm run in one session on "
                                    "one engine: drop -n and name one engine")
        if self.settings.update:
            raise DsreproUsageError("dsrepro flaky and --dsrepro-confirm look at outputs that "
                                    "differ; they record nothing: drop --dsrepro-update")
        repeats = Repeats(self.settings)
        self.config.pluginmanager.register(repeats, "dsrepro-repeats")
        return repeats

    def _repeat(self, session: pytest.Session, groups: list[Group]) -> None:
        """The runs after the first: each group in a fresh worker, quietly, perturbed."""
        for run in range(2, self.settings.repeat + 1):
            env = perturbation(run, self.settings.perturb)
            shown = " ".join(f"{k}={v}" for k, v in env.items())
            self.say(f"repeat {run}/{self.settings.repeat}" + (f" ({shown})" if shown else ""))
            self.repeats.add(run, self._quietly(session, groups, env))
        self._settle(session, groups)

    def _settle(self, session: pytest.Session, groups: list[Group]) -> None:
        """Items whose outputs moved by more than a tolerance covers run twice more, every
        generator seeded alike: outputs that then stop moving were drawn without a seed."""
        from pytest_dsrepro.finder.causes import SEED, SEED_ENV

        moving = self.repeats.to_settle()
        wanted = [(spec, [i for i in items if i.nodeid in moving]) for spec, items in groups]
        wanted = [(spec, items) for spec, items in wanted if items]
        if not wanted:
            return
        count = sum(len(items) for _, items in wanted)
        self.say(f"rerunning {count} moving item{'s' if count != 1 else ''} twice with every "
                 "generator seeded, to tell drawn random numbers from other causes")
        for _ in range(2):
            self.repeats.add_seeded(self._quietly(session, wanted, {SEED_ENV: str(SEED)}))

    def _quietly(self, session: pytest.Session, groups: list[Group],
                 env: dict[str, str]) -> dict[str, dict[str, Any]]:
        """Run the groups' items once more, each group in a fresh worker, no report reaching
        pytest's hooks: what each obtained, by the node id inside."""
        return self.host.run_lanes(session, {"": list(groups)}, quiet_env=env)

    def _confirm(self, session: pytest.Session, groups: list[Group]) -> None:
        """Each item that diverged, run once more in a fresh worker: did the rerun agree?"""
        diverged = [(spec, [i for i in items if i.nodeid in self.repeats.diverged])
                    for spec, items in groups]
        count = sum(len(items) for _, items in diverged)
        if not count:
            return
        self.say(f"confirming {count} diverged item{'s' if count != 1 else ''} by running "
                 f"{'them' if count != 1 else 'it'} again")
        diverged = [(spec, items) for spec, items in diverged if items]
        rerun = self._quietly(session, diverged, {})
        summary = self.config.pluginmanager.get_plugin("dsrepro-summary")
        for item in (item for _, items in diverged for item in items):
            verdict = self.repeats.confirm(item.nodeid, rerun.get(inner_nodeid(item), {}))
            record = summary.records.get(item.nodeid) if summary is not None else None
            if record is not None:  # the JSON report and the HTML page say it too
                record.dsrepro["confirmed"] = verdict

