"""``dsrepro verify``: check a run's attestation against this checkout, without rerunning
anything: the signature, the statement's form, the checkout's commit, every file's digest, the
image where the engine has it, and the verdict. ``--summary`` checks several runs of one commit
and writes a SLSA verification summary over them, signed like the runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from pytest_dsrepro.report import attestation

Say = Callable[[str], None]
class Checks:
    """One line per check; whether any failed."""

    def __init__(self, say: Say, prefix: str = "") -> None:
        self.say = say
        self.prefix = prefix
        self.failed = 0

    def ok(self, text: str) -> None:
        self.say(f"ok {self.prefix}{text}")

    def note(self, text: str) -> None:
        self.say(f"-- {self.prefix}{text}")

    def fail(self, text: str) -> None:
        self.failed += 1
        self.say(f"!! {self.prefix}{text}")


def check_run(path: Path, rootdir: Path, key: Any, client: Any, checks: Checks,
              keyless: bool = False) -> dict[str, Any] | None:
    """Check one attestation; its Statement, or None where it cannot be read."""
    from pytest_dsrepro.errors import DsreproUsageError

    try:
        wrapped = attestation.read(path)
    except DsreproUsageError as exc:
        checks.fail(str(exc))
        return None
    if keyless:
        checks.note("signature: not checked here (--keyless): the file's Sigstore bundle is, "
                    "by sigstore verify")
    else:
        _signature(wrapped, key, checks)
    body = attestation.payload(wrapped)
    try:
        attestation.validate(body)
        if wrapped.get("payloadType") != attestation.PAYLOAD_TYPE:
            raise ValueError(f"payload type {wrapped.get('payloadType')!r}")
        if body.get("predicateType") != attestation.TEST_RESULT:
            raise ValueError(f"predicate type {body.get('predicateType')!r}")
        checks.ok("statement: in-toto Statement v1 with a test-result predicate")
    except ValueError as exc:
        checks.fail(f"statement: not a valid in-toto test-result statement ({exc})")
        return body
    _subjects(body, rootdir, client, checks)
    _verdict(body, checks)
    return body


def _signature(wrapped: dict[str, Any], key: Any, checks: Checks) -> None:
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError

    if not wrapped.get("signatures"):
        checks.fail("signature: the attestation is not signed (dsrepro_signing_key signs it)")
        return
    if key is None:
        checks.fail("signature: not checked: give the signer's public key, --key PUBLIC.pem")
        return
    try:
        Envelope.from_dict(wrapped).verify([key], 1)
    except (VerificationError, ValueError) as exc:
        checks.fail(f"signature: does not verify with this key ({str(exc).splitlines()[0]})")
        return
    checks.ok(f"signature: valid, key {key.keyid[:16]}")


def _subjects(body: dict[str, Any], rootdir: Path, client: Any, checks: Checks) -> None:
    matched = 0
    for subject in body.get("subject") or []:
        name, digest = str(subject.get("name")), dict(subject.get("digest") or {})
        if name == attestation.CHECKOUT:
            _checkout(digest, rootdir, checks)
        elif (subject.get("annotations") or {}).get("kind") == "image":
            _image(name, digest.get("sha256", ""), client, checks)
        else:
            path = rootdir / name
            if not path.is_file():
                checks.fail(f"{name}: not in this checkout")
            elif attestation.sha256(path) != digest.get("sha256"):
                checks.fail(f"{name}: changed since the run (its sha256 is not the attested one)")
            else:
                matched += 1
    if matched:
        checks.ok(f"files: {matched} match the run's digests (notebooks, tests, baselines, "
                  "reports)")


def _checkout(digest: dict[str, str], rootdir: Path, checks: Checks) -> None:
    ids = attestation.git_ids(rootdir)
    commit = digest.get("gitCommit", "")
    if ids is None:
        checks.fail(f"checkout: {rootdir} is not a git checkout; the run was at {commit[:12]}")
    elif ids[0] != commit:
        checks.fail(f"checkout: the run was at commit {commit[:12]}, this checkout is at "
                    f"{ids[0][:12]}")
    else:
        checks.ok(f"checkout: commit {commit[:12]}, as attested")


def _image(tag: str, digest: str, client: Any, checks: Checks) -> None:
    if client is None:
        checks.note(f"image {tag}: no engine to look in; not checked")
        return
    for name in (f"sha256:{digest}", tag):
        try:
            found = client.images.get(name)
        except Exception:  # not in this engine under that name
            continue
        if found.id == f"sha256:{digest}":
            checks.ok(f"image {tag}: sha256:{digest[:12]} is in the engine")
            return
        content = str((found.labels or {}).get("dsrepro.hash") or "")
        if content and tag.rpartition(":")[2] and content.startswith(tag.rpartition(":")[2]):
            # the same build inputs, built again (another engine, another day): not this one
            checks.note(f"image {tag}: this engine's was built from the same inputs "
                        f"({found.id[:19]}); the run's sha256:{digest[:12]} is not here, not "
                        "checked")
        else:
            checks.fail(f"image {tag}: the engine's is {found.id[:19]}, not built from the "
                        f"run's inputs; the run used sha256:{digest[:12]}")
        return
    checks.note(f"image {tag}: not in this engine; not checked")


def _verdict(body: dict[str, Any], checks: Checks) -> None:
    predicate = body.get("predicate") or {}
    result = str(predicate.get("result"))
    counts = attestation.counts(predicate)
    if result in ("PASSED", "WARNED"):
        checks.ok(f"verdict: {result} ({counts})")
    else:
        failed = predicate.get("failedTests") or []
        checks.fail(f"verdict: {result} ({counts}): " + ", ".join(failed[:3])
                    + (f" and {len(failed) - 3} more" if len(failed) > 3 else ""))


def verify(paths: list[Path], rootdir: Path, key_file: str | None, client: Any, say: Say,
           summary: Path | None = None, signing_key: str | None = None,
           keyless: bool = False) -> int:
    """Check each attestation; with ``summary``, write the verification summary of them all.
    0 when every check passed."""
    from pytest_dsrepro.errors import DsreproUsageError

    key = None
    if keyless and key_file:
        raise DsreproUsageError("--keyless and --key: a Sigstore-signed run has no key to check; "
                                "give one of them")
    if key_file:
        try:
            key = attestation.public_key(Path(key_file).read_bytes())
        except OSError as exc:
            raise DsreproUsageError(f"--key: cannot read {key_file} ({exc.strerror})") from None
    checks = Checks(say)
    bodies: list[dict[str, Any] | None] = []
    for path in paths:
        if len(paths) > 1:
            checks.prefix = f"{shown(path)}: "
        bodies.append(check_run(path, rootdir, key, client, checks, keyless))
    checks.prefix = ""
    if summary is not None:
        commits = {str(dict(subject.get("digest") or {}).get("gitCommit"))
                   for body in bodies if body for subject in body.get("subject") or []
                   if subject.get("name") == attestation.CHECKOUT}
        if len(commits) != 1:
            checks.fail(f"summary: the runs are of {len(commits)} commits; a summary is over "
                        "runs of one")
        result = "FAILED" if checks.failed else "PASSED"
        body = attestation.summary_statement(paths, bodies, result, attestation.POLICY_TEXT,
                                             shown)
        pem = attestation.signing_key_text(signing_key)
        attestation.write(summary, attestation.envelope(body, pem))
        signed = "signed" if pem is not None else "unsigned: --signing-key signs it"
        say(f"{'ok' if result == 'PASSED' else '!!'} summary: {result}: reproduced on "
            f"{sum(1 for b in bodies if b)} host run(s); written to {summary} ({signed})")
    return 1 if checks.failed else 0


def shown(path: Path) -> str:
    """A path as the user named it: relative to the folder dsrepro runs in, where it is below."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def engine_client(settings: Any) -> Any:
    """The project's engine, or None where none answers (the image is then not checked)."""
    from pytest_dsrepro.executors import engine

    try:
        return engine.connect(engine.resolve(settings.engine))
    except Exception:  # no engine: the image check says so
        return None

