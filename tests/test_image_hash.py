"""The content hash: pure logic over files, with the Docker SDK's .dockerignore rules."""

from __future__ import annotations

from pathlib import Path

from pytest_dsrepro.host.images.build import BuildPlan, content_hash, context_files


def plan(root: Path, **kwargs: object) -> BuildPlan:
    return BuildPlan(project="p", context=root, dockerfile=root / "Dockerfile", **kwargs)  # type: ignore[arg-type]


def make(root: Path) -> None:
    (root / "Dockerfile").write_text("FROM python:3.11-slim\nCOPY . /app\n")
    (root / "src").mkdir()
    (root / "src" / "model.py").write_text("SEED = 1\n")
    (root / "data.csv").write_text("a,b\n1,2\n")
    (root / "notes").mkdir()
    (root / "notes" / "scratch.txt").write_text("ignored\n")
    (root / ".dockerignore").write_text("# comment\nnotes\n*.log\n")


def test_same_inputs_same_hash(tmp_path: Path) -> None:
    """The same files in another folder, made at another time: the same hash; one byte
    changed: another."""
    import os

    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    make(one)
    make(two)
    os.utime(two / "data.csv", (0, 0))  # times are not content
    assert content_hash(plan(one)) == content_hash(plan(two))
    (two / "data.csv").write_text("a,b\n1,3\n")
    assert content_hash(plan(one)) != content_hash(plan(two))


def test_context_files_follow_dockerignore(tmp_path: Path) -> None:
    make(tmp_path)
    (tmp_path / "run.log").write_text("x")
    files = context_files(plan(tmp_path))
    assert "src/model.py" in files and "data.csv" in files and "Dockerfile" in files
    assert "notes/scratch.txt" not in files and "run.log" not in files


def test_content_mode_and_new_files_change_the_hash(tmp_path: Path) -> None:
    make(tmp_path)
    before = content_hash(plan(tmp_path))
    (tmp_path / "src" / "model.py").write_text("SEED = 2\n")
    after_content = content_hash(plan(tmp_path))
    assert after_content != before
    (tmp_path / "src" / "model.py").chmod(0o755)
    after_mode = content_hash(plan(tmp_path))
    assert after_mode != after_content
    (tmp_path / "src" / "new.py").write_text("")
    assert content_hash(plan(tmp_path)) != after_mode


def test_ignored_files_do_not_change_the_hash(tmp_path: Path) -> None:
    make(tmp_path)
    before = content_hash(plan(tmp_path))
    (tmp_path / "notes" / "scratch.txt").write_text("changed\n")
    (tmp_path / "debug.log").write_text("new\n")
    assert content_hash(plan(tmp_path)) == before


def test_files_that_host_runs_create_are_not_sent(tmp_path: Path) -> None:
    make(tmp_path)
    before = content_hash(plan(tmp_path))
    for name in (".pytest_cache/README.md", ".pytest_cache/v/cache/lastfailed",
                 "src/__pycache__/model.cpython-311.pyc", "stray.pyc",
                 "src/.ipynb_checkpoints/a-checkpoint.ipynb"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert content_hash(plan(tmp_path)) == before


def test_build_args_target_and_dockerfile_change_the_hash(tmp_path: Path) -> None:
    make(tmp_path)
    base = content_hash(plan(tmp_path))
    assert content_hash(plan(tmp_path, build_args=(("SEED", "1"),))) != base
    assert content_hash(plan(tmp_path, target="test")) != base
    assert content_hash(plan(tmp_path, network="host")) == base  # how, not what, is built
    (tmp_path / "Dockerfile").write_text("FROM python:3.11-slim\n")
    assert content_hash(plan(tmp_path)) != base


def test_build_errors_say_which_setting_to_fix(tmp_path: Path) -> None:
    from pytest_dsrepro.host.images.build import _step_failed

    (tmp_path / "Dockerfile").write_text("FROM base\nRUN make\n")
    staged = plan(tmp_path, target="tset")
    message = str(_step_failed(staged, "", "failed to reach build target tset in Dockerfile", []))
    assert message.endswith("set dsrepro_target to a stage of Dockerfile.")
    networked = plan(tmp_path, network="lab")
    message = str(_step_failed(networked, "Step 2/2 : RUN make", "network lab not found", []))
    assert message.startswith("image build failed at Step 2/2 : RUN make\n  network lab not found")
    assert "set dsrepro_build_network to host, bridge, none" in message
    failed = str(_step_failed(plan(tmp_path), "Step 2/2 : RUN make", "exit code 2", ["a", "b"]))
    assert failed.splitlines()[-1] == "  Nothing was tagged; fix the step and rerun."
    assert "  last 2 lines of its output:\n  | a\n  | b" in failed


def test_a_containerignore_counts_where_podman_reads_it(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "big.bin").write_text("data")
    (tmp_path / ".containerignore").write_text("big.bin\n")
    docker_plan = BuildPlan("p", tmp_path, tmp_path / "Dockerfile")
    podman_plan = BuildPlan("p", tmp_path, tmp_path / "Dockerfile", ignore_file=".containerignore")
    assert "big.bin" in context_files(docker_plan)
    assert "big.bin" not in context_files(podman_plan)
    before = content_hash(podman_plan)
    (tmp_path / "big.bin").write_text("other data")
    assert content_hash(podman_plan) == before and content_hash(docker_plan) != before
