"""What an item's result depends on, besides the files it read: the parts of its key, each a
digest, named so that a rerun can say which one changed."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

import pytest

from pytest_dsrepro.markers import SPEC_KEY
from pytest_dsrepro.settings import Settings

# settings that do not change a verdict: where and how the run happens, what it writes, what it
# selects (an item's own parameters count for it alone: see :func:`parameters`)
NOT_VERDICT = frozenset({
    "rootdir", "in_docker", "update", "image", "dockerfile", "context", "build_args", "target",
    "build_network", "rebuild", "rebuild_check", "registry", "project", "container_paths",
    "engine", "engines", "engine_mode", "executor", "transfer", "scratch", "retries", "keep",
    "keep_idle", "report", "html", "markdown", "prune", "artifacts", "signing_key", "workers",
    "cache", "refresh", "profile", "parameters", "profile_parameters", "slurm_args", "repeat",
    "perturb", "confirm", "notebooks", "require_gpu",
})
# pytest's options that select or show, and change no item's result
NOT_VERDICT_OPTIONS = frozenset({
    "keyword", "markexpr", "verbose", "reportchars", "tbstyle", "maxfail", "exitfirst", "lf",
    "failedfirst", "last_failed_no_failures", "newfirst", "showlocals", "color", "durations",
    "durations_min", "xmlpath", "junitprefix", "collectonly", "deselect", "ignore", "ignore_glob",
    "file_or_dir", "code_highlight", "showcapture", "fulltrace", "no_header", "no_summary",
    "stepwise", "stepwise_skip", "basetemp", "cacheclear", "cacheshow", "debug", "traceconfig",
    "version", "help", "rootdir", "verbosity_assertions", "verbosity_test_cases", "quiet",
    "markers", "fixtures", "fixtures_per_test", "show_fixtures_per_test", "report_log",
})

# the parts of a key, as a rerun names the one that changed
PARTS = {
    "image": "the image",
    "source": "the item's source",
    "baseline": "its baseline",
    "settings": "a setting that changes verdicts",
    "parameters": "its parameters",
    "plugin": "pytest-dsrepro's code",
    "run": "the run configuration (CPU, memory, GPU, engine)",
}


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _file(path: Path) -> str:
    from pytest_dsrepro.baselines.lineage import digest

    return digest(str(path)) or "absent"


def notebook_source(path: Path) -> str:
    """A notebook's digest without its outputs and execution counts: its cells (sources, types,
    tags) and its metadata."""
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unreadable"
    for cell in notebook.get("cells") or []:
        if isinstance(cell, dict):
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
            if isinstance(cell.get("metadata"), dict):
                cell["metadata"].pop("execution", None)
    return _digest(notebook)


@functools.cache
def plugin_code() -> str:
    """The digest of this plugin's own code (every module, as mounted into containers)."""
    root = Path(__file__).resolve().parent.parent
    sha = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".json") and "__pycache__" not in path.parts:
            sha.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return sha.hexdigest()[:16]


def settings_part(config: pytest.Config, settings: Settings) -> str:
    """The settings and pytest options that can change a verdict (paths relative to the
    rootdir, so that two checkouts share results)."""
    from pytest_dsrepro.host.parity import inside_args, option_values

    root = str(settings.rootdir)
    wire = {name: value for name, value in settings.to_wire().items() if name not in NOT_VERDICT}
    options = {name: value for name, value in option_values(config).items()
               if name not in NOT_VERDICT_OPTIONS and not name.startswith("dsrepro_")}
    args = inside_args(config, settings.rootdir)
    # the plugin's own -o overrides are in the settings already (parameters count per item)
    args = [arg for index, arg in enumerate(args)
            if not arg.startswith("dsrepro_") and not (
                arg == "-o" and index + 1 < len(args) and args[index + 1].startswith("dsrepro_"))]
    text = json.dumps([wire, options, args], sort_keys=True, default=str)
    return _digest(text.replace(root + "/", "").replace(root, "."))


def _listing(folder: Path, listings: dict[Path, list[Path]]) -> list[Path]:
    """A baseline folder's entries, listed once per ``listings`` (one plan's keys share it)."""
    if folder not in listings:
        try:
            listings[folder] = sorted(folder.iterdir())
        except OSError:
            listings[folder] = []
    return listings[folder]


def baseline_part(item: pytest.Item, settings: Settings,
                  listings: dict[Path, list[Path]] | None = None) -> str:
    """The item's baselines: its files and their variants (``name*`` beside them), with the
    files they hold; ``listings`` keeps the folders listed for the next item's."""
    from pytest_dsrepro.report.summary import baselines_used
    from pytest_dsrepro.state import store_of

    store = store_of(item.config)
    found: dict[str, str] = {}
    for path in baselines_used([item], store, settings):
        for entry in _listing(path.parent, {} if listings is None else listings):
            if not entry.name.startswith(path.stem):
                continue
            files = [entry] if entry.is_file() else sorted(p for p in entry.rglob("*") if p.is_file())
            for file in files:
                found[os.path.relpath(file, settings.rootdir)] = _file(file)
    return _digest(found)


def run_part(item: pytest.Item, settings: Settings, engine_kind: str) -> str:
    """Where it runs: the machine's architecture, CPU model and count, memory, the item's limits
    and GPU request, the variables passed in, the engine's kind."""
    spec = item.stash.get(SPEC_KEY, None)
    memory = 0
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**30
    except (ValueError, OSError, AttributeError):
        pass
    return _digest({
        "arch": platform.machine(), "cpu": _cpu_model(), "cpus": os.cpu_count(),
        "memory_gib": memory, "engine": engine_kind,
        "spec": [repr(spec.gpu), spec.cpus, spec.memory, spec.timeout] if spec else None,
        "env": {name: os.environ.get(name) for name in settings.env},
        "gpus": _gpu_names() if spec is not None and spec.gpu else [],
    })


@functools.cache
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


@functools.cache
def _gpu_names() -> list[str]:
    from pytest_dsrepro.baselines import provenance

    gpu = provenance.collect().get("gpu")
    return [str(gpu)] if gpu else []


def image_part(client: Any, image_id: str) -> str:
    """What runs of the image: its layers and the configuration a container starts with. Not its
    id: the build labels the image with the content hash of its whole context, so a changed
    notebook that the Dockerfile never copies would count as a new image."""
    found = client.api.inspect_image(image_id)
    config = found.get("Config") or {}
    return _digest({"layers": (found.get("RootFS") or {}).get("Layers"),
                    "arch": found.get("Architecture"), "os": found.get("Os"),
                    **{name: config.get(name) for name in
                       ("Env", "Entrypoint", "Cmd", "WorkingDir", "User", "Shell")}})


def parameters(item: pytest.Item) -> str:
    """A notebook's parameters and profile (a test's are in its node id)."""
    return _digest([getattr(item, "profile", None), getattr(item, "parameters", None)])


def components(item: pytest.Item, settings: Settings, image: str, settings_digest: str,
               engine_kind: str, listings: dict[Path, list[Path]] | None = None
               ) -> dict[str, str]:
    """Every part of the item's key but the files it read, by :data:`PARTS` name (``listings``:
    see :func:`baseline_part`)."""
    path = Path(str(item.path))
    source = notebook_source(path) if path.suffix == ".ipynb" else _file(path)
    return {
        "image": image,
        "source": source,
        "baseline": baseline_part(item, settings, listings),
        "settings": settings_digest,
        "parameters": parameters(item),
        "plugin": plugin_code(),
        "run": run_part(item, settings, engine_kind),
    }


def static_key(nodeid: str, parts: dict[str, str]) -> str:
    """One digest of the node id and its parts: the name results are stored under."""
    return hashlib.sha256(json.dumps([nodeid, parts], sort_keys=True).encode()).hexdigest()
