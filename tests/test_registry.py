"""A registry as the shared image cache, and the rebuild check, on the real engines."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import Project, run_with_env
from pytest_dsrepro.baselines import provenance

pytestmark = pytest.mark.usefixtures("docker_client")

# one container test whose value is a constant: what moves between engines is the image only
CONSTANT_TEST = """
import pytest

@pytest.mark.container
def test_value(baseline):
    baseline.check("value", 0.5)
"""


def _facts(report: Path, key: str) -> set[str]:
    """The values of ``key`` a JSON report names: the host's, and the containers' provenance."""
    document = json.loads(report.read_text())
    found = {document["run"][key]}
    for facts in [document["run"]["container"],
                  *(item["run_provenance"] for item in document["items"])]:
        if facts:
            found.add(facts[key])
    return found


def test_an_image_pushed_by_one_engine_is_pulled_by_the_other(
        project: Project, registry: Any, gpu_engine: Any, docker_client: Any) -> None:
    """This machine's engine builds and pushes; the second engine pulls the very same image
    (nothing is built there), and both runs record the same digest. The registry asks for
    credentials: they come from the Docker config and appear in no output or report."""
    import registry_server

    repo = f"{registry.address}/dsrepro-test/{project.name}"
    project.ini(dsrepro_registry=repo)
    project.ignore("baselines", "*.json")
    project.pytester.makepyfile(test_shared=CONSTANT_TEST)
    env = {"DOCKER_CONFIG": str(registry.docker_config)}
    first = run_with_env(project.pytester, "--in-docker", "--dsrepro-update",
                         "--dsrepro-report=first.json", **env)
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["dsrepro: image dsrepro/*:* built in *s",
                                f"dsrepro: image dsrepro/*:* pushed to {repo}:* (sha256:*)"])
    second = run_with_env(project.pytester, "--in-docker", "--dsrepro-report=second.json",
                          DOCKER_HOST=gpu_engine.url, **env)
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines([f"dsrepro: image dsrepro/*:* pulled from {repo}:* (sha256:*)",
                                 "reproduced 1, diverged 0*"])
    assert "building" not in second.stdout.str()
    (digest,) = _facts(project.path / "first.json", "image_digest")
    assert digest.startswith(f"{repo}@sha256:")
    (image_id,) = _facts(project.path / "first.json", "image_id")
    assert _facts(project.path / "second.json", "image_id") == {image_id}  # the very same image
    if "Podman" not in str(docker_client.version()["Components"][0]["Name"]):
        # Docker on both sides names the same manifest; Podman pushes its own manifest, which
        # Docker's pull names by another digest
        assert _facts(project.path / "second.json", "image_digest") == {digest}
    recorded = (project.path / "baselines" / "test_shared" / "test_value.yaml")
    assert f"image_digest: {digest}" in recorded.read_text()  # recorded on the first engine
    token = base64.b64encode(f"{registry_server.USER}:{registry_server.PASSWORD}".encode())
    for text in (first.stdout.str(), first.stderr.str(), second.stdout.str(),
                 second.stderr.str(), (project.path / "first.json").read_text(),
                 (project.path / "second.json").read_text(), recorded.read_text()):
        assert registry_server.PASSWORD not in text and token.decode() not in text


def test_a_registry_without_credentials_serves_docker_and_podman(
        project: Project, open_registry: Any, podman_engine: str) -> None:
    """No login and no Docker config entry: Docker pushes and Podman pulls the image, then
    Podman pushes a changed one and Docker pulls it."""
    repo = f"{open_registry.address}/dsrepro-test/{project.name}"
    project.ini(dsrepro_registry=repo)
    project.ignore("baselines")
    project.pytester.makepyfile(test_shared=CONSTANT_TEST)
    env = {"DOCKER_CONFIG": str(open_registry.docker_config)}
    for builder, puller in ((None, podman_engine), (podman_engine, None)):
        (project.path / "change.txt").write_text(str(builder))  # a new image each round
        where = {"DOCKER_HOST": builder} if builder else {}
        built = run_with_env(project.pytester, "--in-docker", "--dsrepro-update", **where, **env)
        built.assert_outcomes(passed=1)
        built.stdout.fnmatch_lines([f"dsrepro: image dsrepro/*:* pushed to {repo}:*"])
        assert "not pushed" not in built.stdout.str()
        where = {"DOCKER_HOST": puller} if puller else {}
        pulled = run_with_env(project.pytester, "--in-docker", **where, **env)
        pulled.assert_outcomes(passed=1)
        pulled.stdout.fnmatch_lines([f"dsrepro: image dsrepro/*:* pulled from {repo}:*"])
        assert "building" not in pulled.stdout.str()


def test_a_registry_that_cannot_be_reached_is_said_and_the_image_built_here(
        project: Project) -> None:
    project.ini(dsrepro_registry="127.0.0.1:9/nobody/here")
    project.pytester.makepyfile(test_shared=CONSTANT_TEST.replace("baseline.check(\"value\", 0.5)",
                                                               "pass"))
    result = project.run("--in-docker")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "dsrepro: registry 127.0.0.1:9/nobody/here not reachable (*); building here",
        "dsrepro: image dsrepro/*:* built in *s",
        "dsrepro: image not pushed to 127.0.0.1:9/nobody/here (*); other hosts will build it",
    ])


DRIFT = """
import os, site, time

version = f"1.{time.time_ns()}"  # a new version at every build: an unpinned dependency
folder = os.path.join(site.getsitepackages()[0], f"drifty-{version}.dist-info")
os.makedirs(folder)
with open(os.path.join(folder, "METADATA"), "w") as handle:
    handle.write(f"Metadata-Version: 2.1\\nName: drifty\\nVersion: {version}\\n")
"""


def test_the_rebuild_check_names_packages_that_drift(project: Project,
                                                     docker_client: Any) -> None:
    (project.path / "drift.py").write_text(DRIFT)
    project.dockerfile("COPY drift.py /drift.py", "RUN python /drift.py")
    project.pytester.makepyfile(test_one=CONSTANT_TEST.replace("baseline.check(\"value\", 0.5)",
                                                            "pass"))
    project.run("--in-docker").assert_outcomes(passed=1)  # the image in use
    checked = project.dsrepro("rebuild-check")
    checked.assert_outcomes(passed=1)
    assert checked.ret == pytest.ExitCode.TESTS_FAILED  # the items passed; the rebuild drifted
    checked.stdout.fnmatch_lines([
        "dsrepro: rebuild check: building dsrepro/*-rebuild-check without any cache",
        "dsrepro: rebuild check: a rebuild without cache differs from dsrepro/* in 1 package(s):",
        "dsrepro:   drifty 1.* -> 1.*",
        "rebuild check: 1 package(s) differ in a rebuild without cache: drifty 1.* -> 1.*",
    ])
    assert not [tag for image in project.images(docker_client) for tag in image.tags
                if tag.endswith("-rebuild-check")]


def test_the_rebuild_check_passes_a_pinned_image(project: Project) -> None:
    project.pytester.makepyfile(test_one=CONSTANT_TEST.replace("baseline.check(\"value\", 0.5)",
                                                            "pass"))
    checked = project.dsrepro("rebuild-check")
    assert checked.ret == pytest.ExitCode.OK
    checked.stdout.fnmatch_lines(["dsrepro: rebuild check: a rebuild without cache has the "
                                  "packages of dsrepro/*"])


def test_a_rebuild_from_the_same_inputs_is_named() -> None:
    recorded = {"image_hash": "ab" * 32, "image_digest": "r/p@sha256:" + "1" * 64,
                "image_id": "sha256:" + "3" * 64}
    # another engine's manifest digest of the same image: no change
    assert provenance.changes(recorded, {**recorded, "image_digest": "r/p@sha256:" + "2" * 64}) \
        == []
    moved = provenance.changes(recorded, {**recorded, "image_id": "sha256:" + "4" * 64})
    assert moved == [{"kind": "image", "text": "image rebuilt from the same inputs: "
                                               "333333333333 -> 444444444444"}]
    unshared = {key: value for key, value in recorded.items() if key != "image_digest"}
    assert provenance.changes(unshared, {**unshared, "image_id": "sha256:" + "4" * 64}) == []
