"""A reproduction certificate others can verify (issue 38): a gate run writes an in-toto
attestation in a DSSE envelope, signed with the project's key; ``dsrepro verify`` checks it
against the checkout without rerunning, and fails on each kind of tampering; ``--summary`` writes
a SLSA verification summary over runs on two engines; ``dsrepro export --ro-crate`` writes a
Process Run Crate the RO-Crate validator accepts. On the real engine."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import Project, needs

FILE = "dsrepro-artifacts/reproduction.intoto.jsonl"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An ed25519 signing key and its public key, and an unrelated ECDSA public key."""
    needs("cryptography")
    from cryptography.hazmat.primitives import serialization as s
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    folder = tmp_path_factory.mktemp("keys")
    private = ed25519.Ed25519PrivateKey.generate()
    other = ec.generate_private_key(ec.SECP256R1())
    paths = {"private": folder / "signing.pem", "public": folder / "signing.pub.pem",
             "other": folder / "other.pub.pem"}
    paths["private"].write_bytes(private.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8,
                                                       s.NoEncryption()))
    for name, key in (("public", private.public_key()), ("other", other.public_key())):
        paths[name].write_bytes(key.public_bytes(s.Encoding.PEM,
                                                 s.PublicFormat.SubjectPublicKeyInfo))
    return paths


def committed(project: Project) -> None:
    """The project as a git checkout, everything committed (baselines included)."""
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=project.path, check=True, capture_output=True)
    if not (project.path / ".git").exists():
        git("init", "-q")
        (project.path / ".gitignore").write_text("dsrepro-artifacts/\n*.intoto.jsonl\n"
                                                 "runpytest-*\nstdout\nstderr\n")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "state",
        "--allow-empty")


def gate(project: Project, key: Path | None, *args: str, report: str = "report.json",
         **env: str) -> pytest.RunResult:
    from conftest import run_with_env

    if key is not None:
        env["DSREPRO_SIGNING_KEY"] = str(key)
    return run_with_env(project.pytester, "--in-docker",
                        f"--dsrepro-report=dsrepro-artifacts/{report}", *args, **env)


def verify(project: Project, *args: str, **env: str) -> pytest.RunResult:
    return project.dsrepro("verify", *args, **env)


def test_a_signed_run_verifies_and_each_kind_of_tampering_fails(
        project: Project, keys: dict[str, Path], docker_client: Any) -> None:
    from stories import Story

    from pytest_dsrepro.report import attestation

    story = Story(project)
    project.ignore("value.txt", "baselines", "dsrepro-artifacts", ".git", ".gitignore", "*.jsonl")
    story.record()
    committed(project)
    run = gate(project, keys["private"])
    run.assert_outcomes(passed=2)
    run.stdout.fnmatch_lines([f"attestation: {FILE} (signed)"])
    wrapped = attestation.read(project.path / FILE)
    body = attestation.payload(wrapped)
    attestation.validate(body)  # in-toto's own checks of the statement and the predicate
    assert body["predicateType"] == "https://in-toto.io/attestation/test-result/v0.1"
    names = {subject["name"] for subject in body["subject"]}
    assert {"checkout", "nb/show.ipynb", "test_value.py", "baselines/nb/show.yaml",
            "baselines/test_value/test_value.yaml", "dsrepro-artifacts/report.json"} <= names
    assert any(name.startswith(f"dsrepro/{project.name}:") for name in names)
    assert body["predicate"]["result"] == "PASSED"
    assert sorted(body["predicate"]["passedTests"]) == ["nb/show.ipynb",
                                                        "test_value.py::test_value"]

    good = verify(project, "--key", str(keys["public"]))
    assert good.ret == 0, good.stdout.str()
    good.stdout.fnmatch_lines(["ok signature: valid, key *",
                               "ok statement: in-toto Statement v1 with a test-result predicate",
                               "ok checkout: commit *, as attested",
                               f"ok image dsrepro/{project.name}:*: sha256:* is in the engine",
                               "ok files: 5 match the run's digests (*)",
                               "ok verdict: PASSED (2 passed, 0 warned, 0 failed)"])

    wrong = verify(project, "--key", str(keys["other"]))
    assert wrong.ret == 1
    wrong.stdout.fnmatch_lines(["!! signature: does not verify with this key (*"])

    def tampered(path: str, line: str) -> None:
        target = project.path / path
        before = target.read_bytes()
        target.write_bytes(before.replace(b"0.5", b"0.6") if b"0.5" in before
                           else before + b"\n")
        try:
            failed = verify(project, "--key", str(keys["public"]))
            assert failed.ret == 1, failed.stdout.str()
            failed.stdout.fnmatch_lines([line])
        finally:
            target.write_bytes(before)

    tampered("baselines/test_value/test_value.yaml", "!! baselines/test_value/test_value.yaml: "
             "changed since the run (its sha256 is not the attested one)")
    tampered("nb/show.ipynb", "!! nb/show.ipynb: changed since the run (*)")
    tampered("dsrepro-artifacts/report.json", "!! dsrepro-artifacts/report.json: changed *")
    # the envelope's statement edited: the signature no longer holds
    edited = dict(wrapped)
    edited["payload"] = attestation.envelope({**body, "predicate": {
        **body["predicate"], "passedTests": [*body["predicate"]["passedTests"],
                                             "test_more.py::test_claimed"]}}, None)["payload"]
    (project.path / "edited.jsonl").write_text(json.dumps(edited) + "\n")
    forged = verify(project, "edited.jsonl", "--key", str(keys["public"]))
    assert forged.ret == 1
    forged.stdout.fnmatch_lines(["!! signature: does not verify with this key (*"])
    # another commit checked out
    (project.path / "later.txt").write_text("a later change\n")
    committed(project)
    moved = verify(project, "--key", str(keys["public"]))
    assert moved.ret == 1
    moved.stdout.fnmatch_lines(["!! checkout: the run was at commit *, this checkout is at *"])
    subprocess.run(["git", "reset", "-q", "--hard", "HEAD~1"], cwd=project.path, check=True)
    assert verify(project, "--key", str(keys["public"])).ret == 0
    # another image under the run's tag
    image = next(subject for subject in body["subject"]
                 if (subject.get("annotations") or {}).get("kind") == "image")
    docker_client.images.remove(image["name"], force=True)
    docker_client.images.get(project.base).tag(*image["name"].rsplit(":", 1))
    try:
        other = verify(project, "--key", str(keys["public"]))
    finally:  # only the tag goes: the base image is shared by the suite
        docker_client.images.remove(image["name"], noprune=True)
    assert other.ret == 1
    other.stdout.fnmatch_lines([f"!! image {image['name']}: the engine's is sha256:*, not built "
                                "from the run's inputs; the run used sha256:*"])


def test_an_unsigned_run_and_a_failed_one_do_not_verify(project: Project,
                                                        keys: dict[str, Path]) -> None:
    from stories import Story

    story = Story(project, notebook=False)
    project.ignore("value.txt", "baselines", "dsrepro-artifacts", ".git", ".gitignore", "*.jsonl")
    story.record(passed=1)
    committed(project)
    unsigned = gate(project, None)
    unsigned.stdout.fnmatch_lines([f"attestation: {FILE} (unsigned: set dsrepro_signing_key to "
                                   "sign it)"])
    result = verify(project, "--key", str(keys["public"]))
    assert result.ret == 1
    result.stdout.fnmatch_lines(["!! signature: the attestation is not signed (*"])
    # signed keyless outside (Sigstore): everything but the envelope's signature is checked
    keyless = verify(project, "--keyless")
    assert keyless.ret == 0, keyless.stdout.str()
    keyless.stdout.fnmatch_lines(["-- signature: not checked here (--keyless): *",
                                  "ok verdict: PASSED*"])
    both = verify(project, "--keyless", "--key", str(keys["public"]))
    assert both.ret == 2
    both.stderr.fnmatch_lines(["dsrepro: error: --keyless and --key: a Sigstore-signed run has "
                               "no key to check; give one of them"])
    story.value("0.75")
    gate(project, keys["private"]).assert_outcomes(failed=1)
    failed = verify(project, "--key", str(keys["public"]))
    assert failed.ret == 1
    failed.stdout.fnmatch_lines(["ok signature: valid, key *",
                                 "!! verdict: FAILED (0 passed, 0 warned, 1 failed): "
                                 "test_value.py::test_value"])
    nokey = verify(project)
    assert nokey.ret == 1
    nokey.stdout.fnmatch_lines(["!! signature: not checked: give the signer's public key, "
                                "--key PUBLIC.pem"])
    missing = verify(project, "nowhere.jsonl", "--key", str(keys["public"]))
    missing.stdout.fnmatch_lines(["!! * is not an attestation file (*"])
    bad = verify(project, "--key", "nowhere.pem")
    assert bad.ret == 2
    bad.stderr.fnmatch_lines(["dsrepro: error: --key: cannot read nowhere.pem (No such file*"])


def test_a_run_under_xdist_writes_one_attestation_that_verifies(project: Project,
                                                                keys: dict[str, Path]) -> None:
    """``pytest -n 2 --in-docker``: the controller writes the attestation, over every item the
    workers ran, and it verifies."""
    from stories import Story

    story = Story(project)
    project.ignore("value.txt", "baselines", "dsrepro-artifacts", ".git", ".gitignore", "*.jsonl")
    story.record()
    committed(project)
    run = gate(project, keys["private"], "-n", "2")
    run.assert_outcomes(passed=2)
    run.stdout.fnmatch_lines([f"attestation: {FILE} (signed)"])
    assert len((project.path / FILE).read_text().splitlines()) == 1
    result = verify(project, "--key", str(keys["public"]))
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["ok signature: valid, key *",
                                 "ok verdict: PASSED (2 passed, 0 warned, 0 failed)*"])


def test_a_summary_over_two_engines_and_an_ro_crate(project: Project, keys: dict[str, Path],
                                                    remote_engine: Any, tmp_path: Path) -> None:
    """Runs of one commit on two engines (the second one sees none of this machine's folders:
    files are copied in) summarized, signed; the runs as a Process Run Crate that the RO-Crate
    validator accepts."""
    from stories import Story

    from pytest_dsrepro.report import attestation

    story = Story(project)
    project.ignore("value.txt", "baselines", "dsrepro-artifacts", ".git", ".gitignore", "*.jsonl")
    story.record()
    committed(project)
    runs = []
    for label, env in (("here", {}), ("remote", {"DOCKER_HOST": remote_engine.url})):
        gate(project, keys["private"], report=f"report-{label}.json", **env).assert_outcomes(
            passed=2)
        runs.append(project.path / f"{label}.intoto.jsonl")
        (project.path / FILE).rename(runs[-1])
    summary = verify(project, *[run.name for run in runs], "--key", str(keys["public"]),
                     "--summary", "--output", "summary.jsonl",
                     "--signing-key", str(keys["private"]))
    assert summary.ret == 0, summary.stdout.str()
    summary.stdout.fnmatch_lines(["ok here.intoto.jsonl: signature: valid, key *",
                                  "-- remote.intoto.jsonl: image *: this engine's was built "
                                  "from the same inputs (*); the run's * is not here, not checked",
                                  "ok remote.intoto.jsonl: verdict: PASSED *",
                                  "ok summary: PASSED: reproduced on 2 host run(s); written to "
                                  "*summary.jsonl (signed)"])
    wrapped = attestation.read(project.path / "summary.jsonl")
    body = attestation.payload(wrapped)
    attestation.validate(body)
    from google.protobuf import json_format
    from in_toto_attestation.predicates.vsa.v1 import vsa_pb2

    # in-toto-attestation's VSA proto declares verifiedLevels one string where the SLSA spec says
    # an array (of one level per track): the spec is followed, the library checks the rest
    levels = body["predicate"]["verifiedLevels"]
    assert levels == ["SLSA_BUILD_LEVEL_0"]
    json_format.ParseDict({**body["predicate"], "verifiedLevels": levels[0]},
                          vsa_pb2.VerificationSummary())
    assert body["predicateType"] == "https://slsa.dev/verification_summary/v1"
    assert body["predicate"]["verificationResult"] == "PASSED"
    assert [entry["uri"] for entry in body["predicate"]["inputAttestations"]] == [
        "here.intoto.jsonl", "remote.intoto.jsonl"]
    from securesystemslib.dsse import Envelope

    Envelope.from_dict(wrapped).verify([attestation.public_key(keys["public"].read_bytes())], 1)

    crate = tmp_path / "crate"
    exported = project.dsrepro("export", "--ro-crate", str(crate), *[run.name for run in runs])
    assert exported.ret == 0, exported.stdout.str() + exported.stderr.str()
    exported.stdout.fnmatch_lines(["dsrepro: RO-Crate written to *: 2 run(s), * file(s)"])
    metadata = json.loads((crate / "ro-crate-metadata.json").read_text())
    actions = [entity for entity in metadata["@graph"] if entity.get("@type") == "CreateAction"]
    assert len(actions) == 2 and all("containerImage" in action for action in actions)
    assert (crate / "nb" / "show.ipynb").is_file()
    assert validated(crate) == []
    again = project.dsrepro("export", "--ro-crate", str(crate), runs[0].name)
    assert again.ret == 2
    again.stderr.fnmatch_lines(["dsrepro: error: * is not empty: give a new folder for the crate"])


VALIDATE = """
import io, json, sys
from pathlib import Path
import requests, rocrate, urllib3
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from rocrate_validator import models, services

shipped = json.loads((Path(rocrate.__file__).parent / "data" / "ro-crate.jsonld").read_text())
context = json.dumps({"@context": shipped["@context"]}).encode()
real = HTTPAdapter.send

def send(adapter, request, **kwargs):
    if not str(request.url).startswith("https://w3id.org/ro/crate/"):
        return real(adapter, request, **kwargs)
    response = requests.Response()
    response.status_code, response.url, response.request = 200, request.url, request
    response.headers = CaseInsensitiveDict({"Content-Type": "application/ld+json"})
    response.raw = urllib3.HTTPResponse(body=io.BytesIO(context), status=200,
                                        headers={"Content-Type": "application/ld+json"},
                                        preload_content=False)
    return response

HTTPAdapter.send = send
result = services.validate(services.ValidationSettings(
    rocrate_uri=sys.argv[1], profile_identifier="process-run-crate",
    requirement_severity=models.Severity.REQUIRED))
print(json.dumps([str(issue.message) for issue in result.get_issues()]))
"""


def validated(crate: Path) -> list[str]:
    """The RO-Crate validator's required-level issues for the Process Run Crate profile, from a
    process of its own (the validator changes its process's state). No network reaches w3id.org
    here: the RO-Crate JSON-LD context comes from the copy the rocrate library ships (the 1.3
    context, whose terms include 1.1's)."""
    import sys

    needs("rocrate_validator")
    proc = subprocess.run([sys.executable, "-c", VALIDATE, str(crate)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return list(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("key, line", [
    ("nowhere.pem", "ERROR: dsrepro_signing_key: cannot read */nowhere.pem (No such file*"),
    ("garbage.pem", "ERROR: dsrepro_signing_key is not an unencrypted PEM private key (ed25519, "
                    "ECDSA or RSA): *"),
])
def test_a_key_that_cannot_sign_is_said_before_the_run(pytester: pytest.Pytester, key: str,
                                                       line: str) -> None:
    from conftest import run_with_env

    (pytester.path / "garbage.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n")
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = run_with_env(pytester, DSREPRO_SIGNING_KEY=key)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([line])
    assert "Traceback" not in result.stderr.str()


def test_verify_and_export_refuse_what_they_cannot_read(pytester: pytest.Pytester,
                                                        keys: dict[str, Path]) -> None:
    """No engine: a key that is no public key, and a summary given to export as a run."""
    from conftest import dsrepro_command
    from pytest_dsrepro.report import attestation

    (pytester.path / "garbage.pem").write_text("not a key\n")
    (pytester.path / "summary.jsonl").write_text(json.dumps(attestation.envelope({
        "_type": attestation.STATEMENT, "subject": [{"name": "x", "digest": {"sha256": "0" * 64}}],
        "predicateType": "https://slsa.dev/verification_summary/v1", "predicate": {}}, None)))
    bad_key = dsrepro_command(pytester, "verify", "summary.jsonl", "--key", "garbage.pem")
    assert bad_key.ret == 2
    bad_key.stderr.fnmatch_lines(["dsrepro: error: the key is not a PEM public key"])
    crate = dsrepro_command(pytester, "export", "--ro-crate", "crate", "summary.jsonl")
    assert crate.ret == 2
    crate.stderr.fnmatch_lines(["dsrepro: error: *summary.jsonl attests no gate run (predicate "
                                "'https://slsa.dev/verification_summary/v1')"])
    summary = dsrepro_command(pytester, "verify", "summary.jsonl", "--key",
                              str(keys["public"]))
    assert summary.ret == 1
    summary.stdout.fnmatch_lines(["!! signature: the attestation is not signed (*",
                                  "!! statement: not a valid in-toto test-result statement "
                                  "(Predicate object required)"])
