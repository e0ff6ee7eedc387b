"""``dsrepro export --ro-crate DIR``: gate runs as a Process Run Crate (RO-Crate 1.1, Process Run
Crate 0.5), which research repositories (Zenodo, WorkflowHub) take: pytest-dsrepro as the
instrument, one ``CreateAction`` per host run with the container image it ran in, the notebooks,
tests and baselines as its objects and the reports and the attestation as its results. The
files are copied into the crate; the crate is written by the ``rocrate`` library."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest_dsrepro
from pytest_dsrepro.errors import DsreproUsageError
from pytest_dsrepro.report import attestation

PROFILE = "https://w3id.org/ro/wfrun/process/0.5"  # a profile of RO-Crate 1.1
WFRUN = "https://w3id.org/ro/terms/workflow-run#"
TERMS = {name: WFRUN + name for name in ("containerImage", "ContainerImage", "DockerImage",
                                           "registry", "tag", "sha256")}
FORMATS = {".ipynb": "application/x-ipynb+json", ".py": "text/x-python", ".yaml": "application/yaml",
           ".yml": "application/yaml", ".json": "application/json", ".jsonl": "application/jsonl",
           ".html": "text/html", ".md": "text/markdown", ".png": "image/png", ".svg": "image/svg+xml",
           ".csv": "text/csv", ".txt": "text/plain"}
TOOL = attestation.VERIFIER
DOCKER_IMAGE = "https://w3id.org/ro/terms/workflow-run#DockerImage"


def export(paths: list[Path], folder: Path, settings: Any, say: Callable[[str], None]) -> int:
    """Write the crate of the runs ``paths`` attest into ``folder``; 0."""
    from rocrate.model.contextentity import ContextEntity
    from rocrate.rocrate import ROCrate

    runs = []
    for path in paths:
        body = attestation.payload(attestation.read(path))
        if body.get("predicateType") != attestation.TEST_RESULT:
            raise DsreproUsageError(f"{path} attests no gate run (predicate "
                                    f"{body.get('predicateType')!r})")
        runs.append((path, body))
    if folder.exists() and any(folder.iterdir()):
        raise DsreproUsageError(f"{folder} is not empty: give a new folder for the crate")
    rootdir = Path(settings.rootdir)
    crate = ROCrate(version="1.1")
    crate.metadata.extra_terms = dict(TERMS)
    crate.name = f"Reproduction of {rootdir.name}"
    crate.description = (f"{len(runs)} gate run(s) of pytest-dsrepro: notebooks and tests run in "
                         "the project's container image and compared with recorded baselines")
    crate.license = crate.add(ContextEntity(crate, "https://spdx.org/licenses/CC-BY-4.0",
                                            properties={"@type": "CreativeWork",
                                                        "name": "CC BY 4.0"}))
    profile = crate.add(ContextEntity(crate, PROFILE, properties={
        "@type": "CreativeWork", "name": "Process Run Crate", "version": "0.5"}))
    crate.root_dataset["conformsTo"] = profile
    tool = crate.add(ContextEntity(crate, TOOL, properties={
        "@type": "SoftwareApplication", "name": "pytest-dsrepro",
        "version": pytest_dsrepro.__version__}))
    files: dict[str, Any] = {}
    actions: list[Any] = []

    def entity(name: str, source: Path) -> Any:
        if name not in files:
            kind = FORMATS.get(Path(name).suffix.lower(), "application/octet-stream")
            files[name] = crate.add_file(source, dest_path=name,
                                         properties={"encodingFormat": kind})
        return files[name]

    for number, (path, body) in enumerate(runs, 1):
        predicate = body.get("predicate") or {}
        objects: list[Any] = []
        results: list[Any] = []
        image: Any = None
        for subject in body.get("subject") or []:
            name = str(subject.get("name"))
            digest = dict(subject.get("digest") or {})
            if (subject.get("annotations") or {}).get("kind") == "image":
                repository, _, tag = name.rpartition(":")
                image = crate.add(ContextEntity(crate, f"#image-{digest.get('sha256', '')[:12]}",
                                                properties={
                    "@type": "ContainerImage", "additionalType": {"@id": DOCKER_IMAGE},
                    "name": repository or name, "tag": tag,
                    "sha256": digest.get("sha256", "")}))
                continue
            source = rootdir / name
            if name == attestation.CHECKOUT or not source.is_file():
                continue
            (results if name.startswith(str(Path(settings.artifacts).relative_to(rootdir)))
             else objects).append(entity(name, source))
        results.append(entity(f"attestations/run-{number}.intoto.jsonl", path))
        status = "CompletedActionStatus" if predicate.get("result") in ("PASSED", "WARNED") \
            else "FailedActionStatus"
        properties: dict[str, Any] = {
            "name": f"Gate run {number}: {predicate.get('result')}",
            "actionStatus": {"@id": f"http://schema.org/{status}"},
            "description": attestation.counts(predicate)}
        if image is not None:
            properties["containerImage"] = image
        finished = next((entry.get("annotations", {}).get("finished") for entry in
                         predicate.get("configuration") or [] if entry.get("name") == "run"), "")
        if finished:
            properties["endTime"] = finished
        action = crate.add_action(tool, identifier=f"#run-{number}", object=objects,
                                  result=results, properties=properties)
        actions.append(action)
    crate.root_dataset["mentions"] = actions[0] if len(actions) == 1 else actions
    crate.write(folder)
    say(f"RO-Crate written to {folder}: {len(runs)} run(s), {len(files)} file(s)")
    return 0
