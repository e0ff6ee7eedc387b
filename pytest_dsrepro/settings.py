"""Every option of the plugin, resolved once on the host (command line over environment over ini)
and sent to workers in the launch request, which use the host's values as they are."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from pytest_dsrepro.baselines.compare import Tolerance
from pytest_dsrepro.baselines.variants import parse_keys
from pytest_dsrepro.errors import DsreproUsageError
from pytest_dsrepro.notebooks.cell_rules import read_sanitize_file
from pytest_dsrepro.notebooks.parameters import (
    parse_parameter_lines,
    parse_profile_lines,
)
from pytest_dsrepro.parsing import (
    _choice,
    _count,
    _named,
    _number,
    _optional,
    _retries,
    from_wire_value,
    parse_bool,
    parse_engines,
    parse_key_values,
    parse_memory,
    parse_positive,
    parse_privileges,
    parse_registry,
    parse_reports,
    parse_signing_key,
    project_name,
    split_list,
    to_wire_value,
)


@dataclasses.dataclass(frozen=True)
class Option:
    """One setting: its ``dsrepro_*`` ini name and ``DSREPRO_*`` variable, a ``--dsrepro-*`` flag
    where a gate run wants it, or the ``dsrepro`` command that sets it (an action)."""

    name: str
    help: str
    kind: str = "string"  # string | bool | linelist | action
    default: Any = None
    flag: str | None = ""  # "" means --dsrepro-<name>; None means ini-only (or an action)
    ini: bool = True
    metavar: str | None = None
    shapes: bool = False  # it shapes the container: a kept container of another value is not reused
    group: str = ""  # the --help group of its flag
    command: str | None = None  # an action: the dsrepro command that sets it

    @property
    def dest(self) -> str:
        return f"dsrepro_{self.name}"

    @property
    def flag_name(self) -> str | None:
        if self.flag is None:
            return None
        return self.flag or "--dsrepro-" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "DSREPRO_" + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    # the gate run
    Option("in_docker", "run container items inside the project's image", "bool", False,
           flag="--in-docker", group="gate"),
    Option("update", "record or refresh baselines (inside the container with --in-docker)",
           "action", False, ini=False, shapes=True, group="gate"),
    Option("confirm", "rerun an item that diverged once: nondeterministic if the rerun disagrees "
           "with the first run, changed if not", "bool", False, group="gate"),
    Option("timeout", "per-item timeout in seconds for container items", metavar="SECONDS",
           group="gate"),
    Option("workers", "pytest processes sharing each container's items, for notebooks and tests "
           "that run in parallel (default: 1)", metavar="N", group="gate"),
    Option("require_gpu", "fail GPU items, instead of skipping them, where the engine cannot "
           "provide a GPU", "bool", False, group="gate"),
    Option("profile", "run only these profiles' notebook items (repeatable; profiles are "
           "defined by dsrepro_profile_parameters)", "linelist", (), metavar="NAME", group="gate"),
    Option("keep", "leave the container running after the session, Python, pytest and the "
           "plugin loaded, for the next session with the same image and settings to fork its "
           "worker from (the edit-run loop; ignored where CI is set)", "action", False, ini=False,
           group="gate"),
    Option("report", "write the run's report to this file, as its suffix says: .json (schema: "
           "report.schema.json), .html (self-contained, for review) or .md (a short summary for "
           "a pull-request comment); KIND:PATH for a path without one (md:$GITHUB_STEP_SUMMARY); "
           "repeatable (ini: one a line)",
           "linelist", (), metavar="PATH", group="gate"),
    Option("refresh", "run every container item even where the result cache verified it "
           "earlier; what reproduces is kept anew", "bool", False, ini=False, group="gate"),
    # the image
    Option("image", "use this image as it is; build nothing", metavar="IMAGE", shapes=True,
           group="image"),
    Option("rebuild", "build the image anew, without the engine's layer cache",
           "action", False, ini=False, group="image"),
    Option("registry", "registry repository shared as the image cache, host:port/org/project: "
           "pull <registry>:<content hash> before building, push it after", metavar="REPO",
           shapes=True, group="image"),
    Option("dockerfile", "Dockerfile to build, relative to the rootdir (default: Dockerfile)",
           shapes=True, flag=None),
    Option("context", "build context folder, relative to the rootdir (default: the rootdir)",
           shapes=True, flag=None),
    Option("build_args", "build arguments, KEY=VALUE, one a line", "linelist", (), shapes=True,
           flag=None, metavar="KEY=VALUE"),
    Option("target", "build stage to stop at (Dockerfile target)", shapes=True, flag=None),
    Option("build_network", "network mode of the build, e.g. host", shapes=True, flag=None),
    Option("project", "project name used in the image tag (default: the rootdir's name)",
           shapes=True, flag=None),
    Option("python", "Python command inside the image (default: python)", shapes=True, flag=None),
    # where containers run
    Option("engine", "the engine: a URL (unix://, tcp://, ssh://) or a Docker context name "
           "(default: DOCKER_HOST, DOCKER_CONTEXT, the current context, the default socket); "
           "several, comma-separated, each optionally LABEL=ENGINE, run every container item on "
           "each (see dsrepro_engine_mode)", metavar="ENGINE", shapes=True, group="engines"),
    Option("executor", "where container groups run: docker (default: this machine's engine) or "
           "slurm (a SLURM job step per group, on a compute node's engine)", metavar="NAME",
           shapes=True, group="engines"),
    Option("engine_mode", "with several engines: matrix (default: every item on every engine) "
           "or spread (groups shared out to finish sooner)", flag=None),
    Option("slurm_args", "extra srun arguments for every job step, e.g. --partition=gpu "
           "--account=lab (one a line)", "linelist", (), flag=None),
    Option("transfer", "how the repository reaches containers: auto (default: mount where the "
           "engine sees this machine's folders, else copy), mount or copy", shapes=True,
           flag=None),
    Option("scratch", "writable scratch folder shared with containers (default: a temporary "
           "folder removed at the end)", shapes=True, flag=None),
    Option("retries", "how often a worker, container or kernel that failed to start is started "
           "again (default: 1); a failing test is never retried", flag=None),
    Option("keep_idle", "seconds a kept container waits unused before it goes away (default: "
           "900)", shapes=True, flag=None),
    # the container
    Option("container_paths", "test files and folders collected only inside the container",
           "linelist", (), flag=None),
    Option("network", "network of run containers: none (default), bridge, host or a network",
           shapes=True, flag=None),
    Option("env", "host environment variables passed into containers, by name", "linelist", (),
           shapes=True, flag=None),
    Option("cpus", "CPU limit of run containers, e.g. 1.5", shapes=True, flag=None),
    Option("memory", "memory limit of run containers, e.g. 2g", shapes=True, flag=None),
    Option("gpu_env", "environment of GPU containers, KEY=VALUE, over the determinism defaults "
           "(CUBLAS_WORKSPACE_CONFIG=:4096:8 and others)", "linelist", (), metavar="KEY=VALUE",
           shapes=True, flag=None),
    Option("privileges", "restricted (default: no new privileges, no capabilities) or "
           "'engine: <why>' to keep the engine's defaults", shapes=True, flag=None),
    # what is collected and compared
    Option("notebooks", "globs of notebooks to collect, relative to the rootdir", "linelist", (),
           flag=None),
    Option("kernel", "Jupyter kernel for notebooks (default: the notebook's own, else python3)",
           flag=None),
    Option("cell_timeout", "seconds one notebook cell may run (default: 600)", flag=None),
    Option("kernel_startup_timeout", "seconds a kernel may take to start (default: 60)",
           flag=None),
    Option("parameters", "papermill parameters per notebook: GLOB: NAME=VALUE ... (one a line)",
           "linelist", (), flag=None),
    Option("profile_parameters", "named parameter sets, PROFILE [GLOB]: NAME=VALUE ...: one "
           "item per profile (train.ipynb[smoke]), each with its own baseline", "linelist", (),
           flag=None),
    Option("outputs", "globs of files items write whose content is compared with a baseline, "
           "relative to the rootdir (one a line)", "linelist", (), flag=None),
    Option("baselines", "folder of baselines, relative to the rootdir (default: baselines)",
           shapes=True, flag=None),
    Option("artifacts", "folder for the expected, obtained and difference images of failed "
           "comparisons, relative to the rootdir (default: dsrepro-artifacts)", shapes=True,
           flag=None),
    Option("baseline_source", "compare notebooks with: baselines (default), notebook (the "
           "outputs saved in the notebook, as nbval does) or none (only run them, as nbmake does)",
           flag=None),
    Option("check", "which notebook cells are compared: all (default) or marked (only cells "
           "marked NBVAL_CHECK_OUTPUT, as --nbval-lax)", flag=None),
    Option("variants", "provenance keys that keep one baseline per value, e.g. gpu.name cpu.arch "
           "(train@NVIDIA-A100.yaml beside train.yaml)", "linelist", (), flag=None),
    Option("cache", "the result cache: off (default), local (pytest's cache folder) or registry "
           "(beside the image in dsrepro_registry, shared): an item whose image, source, "
           "baseline, settings and read files are unchanged since it reproduced is reported "
           "from that run, not run", flag=None),
    Option("rtol", f"relative tolerance for numbers (default: {Tolerance.rtol:g})", flag=None),
    Option("atol", f"absolute tolerance for numbers (default: {Tolerance.atol:g})", flag=None),
    Option("compare_images", "compare image outputs of notebooks (default: true with recorded "
           "baselines, false with baseline_source = notebook, as nbval)", flag=None),
    Option("compare_timings", "compare what IPython's %timeit and %time print (default: "
           "false: their measurements become <TIMING>)", "bool", False, flag=None),
    Option("sanitize", "regexes for volatile text in outputs: REGEX or REGEX => REPLACEMENT",
           "linelist", (), flag=None),
    Option("sanitize_file", "nbval's sanitize file (regex: / replace: lines), relative to the "
           "rootdir", flag=None),
    Option("signing_key", "a PEM private key (ed25519, ECDSA or RSA) that signs the run's "
           "attestation, dsrepro-artifacts/reproduction.intoto.jsonl, relative to the rootdir; in "
           "DSREPRO_SIGNING_KEY the file's path or, from a CI secret, its text", flag=None),
    # actions: the dsrepro command runs pytest with these set
    Option("rebuild_check", "also rebuild the image without any cache and report the packages "
           "that differ from the image in use", "action", False, flag=None, ini=False,
           command="dsrepro rebuild-check"),
    Option("prune", "delete baselines no collected item uses; only on a run of the whole suite",
           "action", False, flag=None, ini=False, command="dsrepro prune"),
    Option("repeat", "run each container item N times, fresh each time, and report what moved "
           "between the runs, with proposals in dsrepro-artifacts/proposals.toml", flag=None,
           ini=False, command="dsrepro flaky --repeat N"),
    Option("perturb", "vary between the repeats: threads, hashseed, cpus (comma-separated)",
           "linelist", (), flag=None, ini=False, command="dsrepro flaky --perturb WHAT"),
)

BY_NAME = {option.name: option for option in OPTIONS}


GROUPS = {
    "gate": "reproducibility in the project's Docker image: the gate run",
    "image": "reproducibility in the project's Docker image: the image",
    "engines": "reproducibility in the project's Docker image: where containers run",
}

def reference() -> str:
    """The option reference, one row an option, made from :data:`OPTIONS`: the flags of a gate
    run first, then the ini-only options, then the actions of the ``dsrepro`` command."""
    rows = ["| ini option | flag or command | variable | meaning |", "| --- | --- | --- | --- |"]
    order = sorted(OPTIONS, key=lambda o: (0 if o.flag_name else 2 if o.command else 1))
    for option in order:
        ini = f"`{option.dest}`" if option.ini else ""
        flag = option.flag_name or option.command
        if option.flag_name and option.metavar and option.kind not in ("bool", "action"):
            flag = f"{flag} {option.metavar}"
        meaning = option.help.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
        rows.append(f"| {ini} | {f'`{flag}`' if flag else ''} | `{option.env}` | {meaning} |")
    return "\n".join(rows)


def add_options(parser: pytest.Parser) -> None:
    """Register the flags of a gate run, in their ``--help`` groups, and every ini option."""
    for option in OPTIONS:
        flag = option.flag_name
        if flag is not None:
            group = parser.getgroup(f"dsrepro-{option.group}", GROUPS[option.group])
            if option.kind in ("bool", "action"):
                group.addoption(flag, action="store_true", dest=option.dest, default=None,
                                help=option.help)
            elif option.kind == "linelist":
                group.addoption(flag, action="append", dest=option.dest, default=None,
                                metavar=option.metavar, help=option.help)
            else:
                group.addoption(flag, action="store", dest=option.dest, default=None,
                                metavar=option.metavar, help=option.help)
        if option.ini:
            ini_type = {"bool": "bool", "linelist": "linelist"}.get(option.kind, "string")
            parser.addini(option.dest, option.help, type=ini_type,  # type: ignore[arg-type]
                          default=option.default if option.kind != "linelist" else [])


def raw_value(config: pytest.Config, name: str) -> Any:
    """One option's value: command line, else ``DSREPRO_*`` variable, else ini, else default."""
    option = BY_NAME[name]
    cli = config.getoption(option.dest, default=None)
    if cli is not None and cli != []:
        return cli
    env = os.environ.get(option.env)
    if env is not None and env != "":
        if option.kind in ("bool", "action"):
            return parse_bool(env)
        if option.kind == "linelist":
            return split_list(env, key_values=option.metavar == "KEY=VALUE")
        return env
    if option.ini:
        value = config.getini(option.dest)
        if value not in (None, "", []):
            return value
    return option.default


@dataclasses.dataclass(frozen=True)
class Settings:
    """The resolved options of one session."""

    rootdir: Path
    in_docker: bool = False
    update: bool = False
    image: str | None = None
    dockerfile: Path = Path("Dockerfile")
    context: Path = Path(".")
    build_args: tuple[tuple[str, str], ...] = ()
    target: str | None = None
    build_network: str | None = None
    rebuild: bool = False
    rebuild_check: bool = False
    registry: str | None = None
    project: str = "project"
    container_paths: tuple[Path, ...] = ()
    network: str = "none"
    env: tuple[str, ...] = ()
    cpus: float | None = None
    memory: int | None = None
    require_gpu: bool = False
    workers: int = 1
    gpu_env: tuple[tuple[str, str], ...] = ()
    timeout: float | None = None
    scratch: Path | None = None
    engine: str | None = None
    engines: tuple[tuple[str, str], ...] = ()  # (label, engine): several in dsrepro_engine
    engine_mode: str = "matrix"
    executor: str = "docker"
    privileges: str = "restricted"  # or "engine: <why>"
    slurm_args: tuple[str, ...] = ()
    transfer: str = "auto"
    python: str = "python"
    notebooks: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()  # globs of files items write, compared with baselines
    kernel: str | None = None
    baselines: Path = Path("baselines")
    baseline_source: str = "baselines"
    artifacts: Path = Path("dsrepro-artifacts")
    report: Path | None = None
    html: Path | None = None
    markdown: Path | None = None
    prune: bool = False
    variants: tuple[str, ...] = ()  # provenance keys, dotted (dsrepro_variants)
    repeat: int = 1
    perturb: tuple[str, ...] = ()
    confirm: bool = False
    retries: int = 1
    check: str = "all"
    compare_images: bool | None = None  # None: as the baseline source has it
    compare_timings: bool = False  # IPython's timing magics' output as it is
    sanitize: tuple[str, ...] = ()
    sanitize_file: tuple[tuple[str, str], ...] = ()  # (regex, replacement) pairs read from it
    parameters: tuple[tuple[str, str], ...] = ()  # (glob, assignments)
    profile_parameters: tuple[tuple[str, str, str], ...] = ()  # (profile, glob, assignments)
    profile: tuple[str, ...] = ()  # --dsrepro-profile
    rtol: float = Tolerance.rtol
    atol: float = Tolerance.atol
    keep: bool = False  # --dsrepro-keep: the worker's container is kept for the next session
    keep_idle: float = 900.0
    cell_timeout: float = 600.0
    kernel_startup_timeout: float = 60.0
    signing_key: str | None = None  # a PEM file, or its text (DSREPRO_SIGNING_KEY)
    cache: str = "off"  # the result cache: off, local or registry
    refresh: bool = False  # --dsrepro-refresh: run everything, keep what reproduces

    @property
    def observing(self) -> bool:
        """Whether items note what they obtained (``dsrepro flaky``, ``--dsrepro-confirm``)."""
        return self.repeat > 1 or self.confirm

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        """Resolve and validate every option; raise :class:`DsreproUsageError` on bad input."""
        root = Path(config.rootpath)

        def path(name: str, default: str) -> Path:
            value = raw_value(config, name) or default
            candidate = Path(value)
            return candidate if candidate.is_absolute() else root / candidate

        memory = raw_value(config, "memory")
        paths = raw_value(config, "container_paths") or ()
        scratch = raw_value(config, "scratch")
        engine, engines = parse_engines(str(raw_value(config, "engine") or ""))
        reports = parse_reports(list(raw_value(config, "report")),
                                Path(config.invocation_params.dir))
        settings = cls(
            rootdir=root,
            in_docker=bool(raw_value(config, "in_docker")),
            update=bool(raw_value(config, "update")),
            image=raw_value(config, "image"),
            dockerfile=path("dockerfile", "Dockerfile"),
            context=path("context", "."),
            build_args=tuple(
                parse_key_values(list(raw_value(config, "build_args")), "build arg").items()
            ),
            target=raw_value(config, "target"),
            build_network=raw_value(config, "build_network"),
            rebuild=bool(raw_value(config, "rebuild")),
            rebuild_check=bool(raw_value(config, "rebuild_check")),
            registry=_optional(raw_value(config, "registry"), parse_registry),
            project=project_name(raw_value(config, "project") or root.name),
            container_paths=tuple(root / p for p in paths),
            network=raw_value(config, "network") or "none",
            env=tuple(raw_value(config, "env")),
            cpus=_optional(raw_value(config, "cpus"), lambda v: parse_positive(v, "cpus")),
            memory=_optional(memory, parse_memory),
            require_gpu=bool(raw_value(config, "require_gpu")),
            workers=_optional(raw_value(config, "workers"), _count) or 1,
            gpu_env=tuple(parse_key_values(list(raw_value(config, "gpu_env")), "gpu env").items()),
            timeout=_optional(raw_value(config, "timeout"),
                              lambda v: parse_positive(v, "timeout")),
            scratch=Path(scratch).resolve() if scratch else None,
            engine=engine,
            engines=engines,
            engine_mode=_choice(raw_value(config, "engine_mode") or "matrix", "engine_mode",
                                ("matrix", "spread")),
            privileges=parse_privileges(raw_value(config, "privileges") or "restricted"),
            executor=_choice(raw_value(config, "executor") or "docker", "executor",
                             ("docker", "slurm")),
            slurm_args=tuple(arg for entry in raw_value(config, "slurm_args")
                             for arg in str(entry).split()),
            transfer=_choice(raw_value(config, "transfer") or "auto", "transfer",
                             ("auto", "mount", "copy")),
            python=raw_value(config, "python") or "python",
            notebooks=tuple(raw_value(config, "notebooks")),
            outputs=tuple(raw_value(config, "outputs")),
            kernel=raw_value(config, "kernel") or None,
            baselines=path("baselines", "baselines"),
            artifacts=path("artifacts", "dsrepro-artifacts"),
            report=reports.get(".json"),
            html=reports.get(".html"),
            markdown=reports.get(".md"),
            prune=bool(raw_value(config, "prune")),
            variants=parse_keys(list(raw_value(config, "variants"))),
            baseline_source=_choice(raw_value(config, "baseline_source") or "baselines",
                                    "baseline_source", ("baselines", "notebook", "none")),
            repeat=_optional(raw_value(config, "repeat"), lambda v: _count(v, "repeat")) or 1,
            perturb=tuple(_choice(part, "perturb", PERTURBATIONS) for entry in
                          raw_value(config, "perturb") for part in str(entry).replace(",", " ").split()),
            confirm=bool(raw_value(config, "confirm")),
            retries=_retries(raw_value(config, "retries")),
            check=_choice(raw_value(config, "check") or "all", "check", ("all", "marked")),
            compare_images=_optional(raw_value(config, "compare_images"),
                                     lambda v: _named(parse_bool, v, "compare_images")),
            compare_timings=_named(parse_bool, raw_value(config, "compare_timings"),
                                   "compare_timings"),
            sanitize=tuple(raw_value(config, "sanitize")),
            sanitize_file=_optional(raw_value(config, "sanitize_file"),
                                     lambda v: read_sanitize_file(root / v)) or (),
            parameters=parse_parameter_lines(list(raw_value(config, "parameters"))),
            profile_parameters=parse_profile_lines(list(raw_value(config, "profile_parameters"))),
            profile=tuple(p for entry in raw_value(config, "profile")
                          for p in str(entry).replace(",", " ").split()),
            rtol=_number(raw_value(config, "rtol"), "rtol", Tolerance.rtol),
            atol=_number(raw_value(config, "atol"), "atol", Tolerance.atol),
            keep=bool(raw_value(config, "keep")),
            keep_idle=_optional(raw_value(config, "keep_idle"),
                                lambda v: parse_positive(v, "keep_idle")) or 900.0,
            cell_timeout=_optional(raw_value(config, "cell_timeout"),
                                   lambda v: parse_positive(v, "cell_timeout")) or 600.0,
            signing_key=parse_signing_key(raw_value(config, "signing_key"), root),
            cache=_choice(str(raw_value(config, "cache") or "off"), "cache",
                          ("off", "local", "registry")),
            refresh=bool(raw_value(config, "refresh")),
            kernel_startup_timeout=_optional(
                raw_value(config, "kernel_startup_timeout"),
                lambda v: parse_positive(v, "kernel_startup_timeout")) or 60.0,
        )
        if settings.signing_key:  # a key that cannot sign is said now, not after the run
            from pytest_dsrepro.report import attestation

            attestation.signer(attestation.signing_key_text(settings.signing_key) or b"")
        if settings.perturb and settings.repeat < 2:
            raise DsreproUsageError("DSREPRO_PERTURB varies the runs of DSREPRO_REPEAT: use "
                                    "dsrepro flaky --repeat N --perturb WHAT, with N of 2 or more")
        if settings.repeat > 1 and not settings.in_docker:
            raise DsreproUsageError("DSREPRO_REPEAT runs container items again, each in a fresh "
                                    "container: add --in-docker (dsrepro flaky does)")
        if settings.cache == "registry" and not settings.registry:
            raise DsreproUsageError("dsrepro_cache = registry keeps results beside the image in "
                                    "dsrepro_registry, which is not set: set it, or use local")
        known = sorted({name for name, _, _ in settings.profile_parameters})
        unknown = [name for name in settings.profile if name not in known]
        if unknown:
            raise DsreproUsageError(
                f"--dsrepro-profile {', '.join(unknown)}: no such profile "
                f"(dsrepro_profile_parameters names {', '.join(known) or 'none'})")
        return settings


    def to_wire(self) -> dict[str, Any]:
        """JSON-ready values for the launch request: paths as text, tuples as lists."""
        return {field.name: to_wire_value(getattr(self, field.name))
                for field in dataclasses.fields(self)}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Settings:
        """The settings :meth:`to_wire` sent; an unknown or missing name is an error."""
        fields = {field.name: str(field.type) for field in dataclasses.fields(cls)}
        if set(data) != set(fields):
            odd = sorted(set(data) ^ set(fields))
            raise ValueError(f"settings from the host do not match this plugin: {', '.join(odd)}")
        return cls(**{name: from_wire_value(value, fields[name]) for name, value in data.items()})


PERTURBATIONS = ("threads", "hashseed", "cpus")
