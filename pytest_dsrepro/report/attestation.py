"""A reproduction certificate others can verify: a gate run as an in-toto Statement v1 with the
test-result predicate, in a DSSE envelope, signed where a key is given (``dsrepro_signing_key``).

Subjects: the checkout (git commit and tree), the image (its id, the digest of its config, the
same on every engine), and every file the run's verdicts rest on: the notebooks and test files
that ran, the baselines they were compared with, and the reports written beside. The predicate
holds the verdict, the items by outcome, and the run's facts as configuration (engine, host,
packages, settings and the tolerance policy, each with a digest). The formats and the
cryptography are in-toto's and securesystemslib's own."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

from pytest_dsrepro.errors import DsreproUsageError

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT = "https://in-toto.io/Statement/v1"
TEST_RESULT = "https://in-toto.io/attestation/test-result/v0.1"
FILE_NAME = "reproduction.intoto.jsonl"
CHECKOUT = "checkout"
NOT_REPRODUCED = ("diverged", "missing", "stale", "corrupt", "failed", "error")
# the settings a verdict depends on: two runs under other values of these are other experiments
VSA = "https://slsa.dev/verification_summary/v1"
VERIFIER = "pkg:pypi/pytest-dsrepro"  # the package URL of the tool that verifies
# what a run must show to count: the policy a verification summary names by digest
POLICY_TEXT = {"signature": "valid for the key given", "statement": "in-toto Statement v1, "
               "test-result predicate", "subjects": "every file's sha256 and the checkout's "
               "commit as attested", "verdict": "PASSED or WARNED", "runs": "all of one commit"}
POLICY = ("rtol", "atol", "sanitize", "sanitize_file", "compare_images", "compare_timings",
          "check", "baseline_source", "variants")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def git_ids(folder: Path) -> tuple[str, str, bool] | None:
    """The commit and tree checked out in ``folder``, and whether tracked files changed since;
    None outside a git repository."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                              timeout=20, check=True, stdin=subprocess.DEVNULL).stdout.strip()
    try:
        return (git("rev-parse", "HEAD"), git("rev-parse", "HEAD^{tree}"),
                bool(git("status", "--porcelain", "--untracked-files=no")))
    except (OSError, subprocess.SubprocessError):
        return None


def source_of(nodeid: str) -> str:
    """The file an item comes from: ``nb/a.ipynb[smoke]@gpu`` -> ``nb/a.ipynb``."""
    return nodeid.split("::")[0].split("[")[0].split("@")[0]


def subject_files(doc: dict[str, Any], rootdir: Path, reports: list[Path]) -> list[str]:
    """Every file under ``rootdir`` the verdicts rest on, relative, sorted: the items' sources,
    their baselines with the files beside them, and the reports."""
    found: set[str] = set()
    for item in doc.get("items") or []:
        found.add(source_of(str(item.get("nodeid", ""))))
        baseline = item.get("baseline")
        if baseline:
            path = rootdir / str(baseline)
            found.add(str(baseline))
            outputs = path.with_name(path.stem + ".outputs.yaml")
            beside = path.with_name(path.stem + ".files")
            for extra in ([outputs] + (sorted(beside.rglob("*")) if beside.is_dir() else [])):
                if extra.is_file():
                    found.add(extra.relative_to(rootdir).as_posix())
    for report in reports:
        try:
            found.add(report.resolve().relative_to(rootdir).as_posix())
        except ValueError:  # a report outside the checkout is no file of it
            continue
    return sorted(name for name in found if name and (rootdir / name).is_file())


def subjects(doc: dict[str, Any], rootdir: Path, reports: list[Path]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    ids = git_ids(rootdir)
    if ids is not None:
        commit, tree, dirty = ids
        found.append({"name": CHECKOUT, "digest": {"gitCommit": commit, "gitTree": tree},
                      "annotations": {"dirty": dirty}})
    run = doc.get("run") or {}
    image_id = str(run.get("image_id") or "")
    if image_id.startswith("sha256:"):
        found.append({"name": str(run.get("image") or "image"),
                      "digest": {"sha256": image_id.split(":", 1)[1]},
                      "annotations": {"kind": "image"}})
    for name in subject_files(doc, rootdir, reports):
        found.append({"name": name, "digest": {"sha256": sha256(rootdir / name)}})
    return found


def verdicts(doc: dict[str, Any]) -> tuple[str, list[str], list[str], list[str]]:
    """The run's result (PASSED, WARNED: skipped items or drift, FAILED) and its items by
    outcome."""
    passed, warned, failed = [], [], []
    for item in doc.get("items") or []:
        status, outcome = str(item.get("status")), str(item.get("outcome"))
        if status in NOT_REPRODUCED or outcome in ("failed", "error"):
            failed.append(str(item["nodeid"]))
        elif status == "skipped" or outcome == "skipped":
            warned.append(str(item["nodeid"]))
        else:
            passed.append(str(item["nodeid"]))
    if failed or int(doc.get("exit_status", 1)) != 0:
        result = "FAILED"
    elif warned or doc.get("drift"):
        result = "WARNED"
    else:
        result = "PASSED"
    return result, passed, warned, failed


def configuration(doc: dict[str, Any], settings: Any) -> list[dict[str, Any]]:
    """The run's facts as resource descriptors, each named, the larger ones by digest."""
    run = doc.get("run") or {}
    container = run.get("container") or {}
    packages = container.get("packages") or {}
    policy = {name: _plain(getattr(settings, name)) for name in POLICY}
    chosen = {name: _plain(getattr(settings, name)) for name in
              ("executor", "network", "cpus", "memory", "workers", "timeout", "transfer",
               "python", "engine_mode")}
    cpu = container.get("cpu") or {}
    gpu = container.get("gpu") or {}
    return [
        {"name": "pytest-dsrepro", "annotations": {"version": str(doc.get("plugin_version"))}},
        {"name": "run", "annotations": {"finished": str(doc.get("created") or ""),
                                        "command": " ".join(doc.get("command") or [])}},
        {"name": "engine", "annotations": {"url": str(run.get("engine") or ""),
                                           "gpus_available": bool(run.get("gpus_available"))}},
        {"name": "host", "annotations": {
            "python": str(container.get("python") or ""),
            "platform": str(container.get("platform") or ""),
            "cpu": f"{cpu.get('model') or ''} x{cpu.get('count') or ''} {cpu.get('arch') or ''}",
            "gpu": str(gpu.get("name") or "none") if isinstance(gpu, dict) else "none"}},
        {"name": "packages", "digest": {"sha256": _json_digest(packages)},
         "annotations": {"count": len(packages)}},
        {"name": "settings", "digest": {"sha256": _json_digest(chosen)}, "annotations": chosen},
        {"name": "tolerance-policy", "digest": {"sha256": _json_digest(policy)},
         "annotations": policy},
    ]


def _plain(value: Any) -> Any:
    """A setting as JSON holds it (paths as text, tuples as lists, None as '')."""
    if value is None:
        return ""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_plain(entry) for entry in value]
    return value


def statement(doc: dict[str, Any], settings: Any, reports: list[Path]) -> dict[str, Any]:
    """The in-toto Statement of the run the report ``doc`` describes."""
    result, passed, warned, failed = verdicts(doc)
    return {
        "_type": STATEMENT,
        "subject": subjects(doc, Path(settings.rootdir), reports),
        "predicateType": TEST_RESULT,
        "predicate": {"result": result, "configuration": configuration(doc, settings),
                      "passedTests": passed, "warnedTests": warned, "failedTests": failed},
    }


def validate(body: dict[str, Any]) -> None:
    """in-toto's own checks of a Statement, and of its predicate where it is a test result;
    ValueError when one fails."""
    from google.protobuf import json_format
    from in_toto_attestation.predicates.test_result.v0 import test_result_pb2
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement

    try:
        proto = json_format.ParseDict(body, statement_pb2.Statement())  # type: ignore[attr-defined]
        if body.get("predicateType") == TEST_RESULT:
            json_format.ParseDict(body.get("predicate") or {},
                                  test_result_pb2.TestResult())  # type: ignore[attr-defined]
    except json_format.ParseError as exc:
        raise ValueError(str(exc)) from None
    Statement.copy_from_pb(proto).validate()


# -- keys and envelopes ---------------------------------------------------------------------------

def signing_key_text(value: str | None) -> bytes | None:
    """``dsrepro_signing_key``: a PEM private key file, or (in ``DSREPRO_SIGNING_KEY``, from a
    CI secret) the PEM text itself."""
    if not value:
        return None
    if value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    try:
        return Path(value).expanduser().read_bytes()
    except OSError as exc:
        raise DsreproUsageError(f"dsrepro_signing_key: cannot read {value} ({exc.strerror})"
                                ) from None


def signer(pem: bytes) -> Any:
    """A securesystemslib signer for an unencrypted PEM private key (ed25519, ECDSA or RSA)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]

    try:
        key = load_pem_private_key(pem, password=None)
        return CryptoSigner(key)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise DsreproUsageError(f"dsrepro_signing_key is not an unencrypted PEM private key "
                                f"(ed25519, ECDSA or RSA): {str(exc).splitlines()[0]}") from None


def public_key(pem: bytes) -> Any:
    """A securesystemslib key for a PEM public key (or the public half of a private one)."""
    from cryptography.hazmat.primitives.serialization import (
        load_pem_private_key,
        load_pem_public_key,
    )
    from securesystemslib.signer import SSlibKey  # type: ignore[attr-defined]

    try:
        key = load_pem_public_key(pem)
    except ValueError:
        try:
            key = load_pem_private_key(pem, password=None).public_key()
        except (ValueError, TypeError):
            raise DsreproUsageError("the key is not a PEM public key") from None
    return SSlibKey.from_crypto(key)  # type: ignore[arg-type]


def envelope(body: dict[str, Any], pem: bytes | None) -> dict[str, Any]:
    """``body`` in a DSSE envelope, signed with ``pem`` where given."""
    from securesystemslib.dsse import Envelope

    wrapped = Envelope(json.dumps(body, sort_keys=True).encode(), PAYLOAD_TYPE, {})
    if pem is not None:
        wrapped.sign(signer(pem))
    return dict(wrapped.to_dict())


def payload(wrapped: dict[str, Any]) -> dict[str, Any]:
    """The Statement inside an envelope."""
    return dict(json.loads(base64.b64decode(wrapped["payload"])))


def read(path: Path) -> dict[str, Any]:
    """The envelope of an attestation file (JSON Lines: the first line)."""
    try:
        line = next(text for text in path.read_text(encoding="utf-8").splitlines() if text.strip())
        wrapped = json.loads(line)
        payload(wrapped)
    except (OSError, StopIteration, ValueError, KeyError, TypeError) as exc:
        raise DsreproUsageError(f"{path} is not an attestation file ({exc.__class__.__name__}: "
                                f"{str(exc)[:120] or 'empty'})") from None
    return dict(wrapped)


def write(path: Path, wrapped: dict[str, Any]) -> None:
    from pytest_dsrepro.baselines.store import atomic_write

    atomic_write(path, (json.dumps(wrapped, sort_keys=True) + "\n").encode())


def per_engine(doc: dict[str, Any], settings: Any, reports: list[Path], pem: bytes | None
               ) -> tuple[Path | None, str]:
    """A matrix run over several engines: one attestation per engine
    (``reproduction-LABEL.intoto.jsonl``: that engine's items and image, the host items) and a
    SLSA verification summary over them; the summary's path and result."""
    engines = dict((doc.get("run") or {}).get("engines") or {})
    if not engines:
        return None, ""
    paths, bodies = [], []
    for label, facts in engines.items():
        one = {**doc, "run": {**doc.get("run", {}), **dict(facts or {})},
               "items": [item for item in doc.get("items") or []
                         if item.get("engine") in (None, label)]}
        body = statement(one, settings, reports)
        path = Path(settings.artifacts) / f"reproduction-{label.replace('/', '_')}.intoto.jsonl"
        write(path, envelope(body, pem))
        paths.append(path)
        bodies.append(body)
    passed = all((body.get("predicate") or {}).get("result") in ("PASSED", "WARNED")
                 for body in bodies)
    result = "PASSED" if passed else "FAILED"
    target = Path(settings.artifacts) / "verification.intoto.jsonl"
    write(target, envelope(summary_statement(paths, bodies, result, POLICY_TEXT,
                                             lambda path: path.name), pem))
    return target, result


def summary_statement(paths: list[Path], bodies: Sequence[dict[str, Any] | None], result: str,
                      policy_text: dict[str, str], shown: Callable[[Path], str] = str
                      ) -> dict[str, Any]:
    """A SLSA verification summary (v1) of the runs: their shared subjects, the attestations by
    digest, the policy by digest, the result."""
    shared: dict[str, dict[str, Any]] = {}
    for body in bodies:
        for subject in (body or {}).get("subject") or []:
            if subject.get("name") == CHECKOUT:
                shared[CHECKOUT] = {"name": CHECKOUT,
                                                "digest": dict(subject["digest"])}
    commit = shared.get(CHECKOUT, {}).get("digest", {}).get("gitCommit", "")
    policy = hashlib.sha256(json.dumps(policy_text, sort_keys=True).encode()).hexdigest()
    return {
        "_type": STATEMENT,
        "subject": list(shared.values()) or [{"name": "runs", "digest": {"sha256": policy}}],
        "predicateType": VSA,
        "predicate": {
            "verifier": {"id": VERIFIER},
            "timeVerified": datetime.datetime.now(datetime.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ"),
            "resourceUri": f"git+commit:{commit}" if commit else "runs",
            "policy": {"uri": VERIFIER + "#reproduction-policy", "digest": {"sha256": policy}},
            "inputAttestations": [{"uri": shown(path),
                                   "digest": {"sha256": sha256(path)}}
                                  for path in paths if path.is_file()],
            "verificationResult": result,
            "verifiedLevels": ["SLSA_BUILD_LEVEL_0"] if result == "PASSED" else ["FAILED"],
        },
    }


def counts(predicate: dict[str, Any]) -> str:
    """``7 passed, 1 warned, 0 failed``: a test-result predicate's items by outcome."""
    return ", ".join(f"{len(predicate.get(key) or [])} {word}" for key, word in
                     (("passedTests", "passed"), ("warnedTests", "warned"),
                      ("failedTests", "failed")))
