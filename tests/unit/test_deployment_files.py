"""The deployment files (deploy/compose, deploy/kubernetes, deploy/PRODUCTION.md), checked without Docker,
Kubernetes or a network: they parse; every `gel` command they use exists with the options they give it;
every `GEL_*` variable they name is a setting (or an adapter's variable, or a test/debug one); the compose
dependency graph, volumes, secrets and healthchecks hold together; the Kubernetes manifests reference only
what exists; the adapters they run load with the environment they are given; and the committed RabbitMQ
definitions declare quorum queues for the platform's queues (read from the file, never imported: RabbitMQ
users are node-wide)."""

from __future__ import annotations

import ast
import datetime as dt
import json
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pika
import pytest
import typer
import yaml
from typer.testing import CliRunner

from adapters.sdk.config import load_adapter_config
from broker.cli import app
from broker.security.entities import load_entities
from broker.settings import Settings
from broker.transport.topology import DELIVERER_KIND, amqp_url_for, ingress_queues, platform_topology

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
KUBE_DIR = DEPLOY / "kubernetes"
PRODUCTION = DEPLOY / "PRODUCTION.md"
DEFINITIONS = DEPLOY / "rabbitmq" / "definitions.json"
MARKDOWN = (PRODUCTION, COMPOSE_DIR / "README.md")
IMAGE_ROOT = "/app"
"""Where the Dockerfile puts the repository: `/app/adapters/...` in a container is `adapters/...` here."""

SETTINGS_VARIABLES = frozenset(f"GEL_{name.upper()}" for name in Settings.model_fields)
TEST_AND_DEBUG_VARIABLES = frozenset({"GEL_CONFIG", "GEL_DEBUG", "GEL_REQUIRE_SERVICES", "GEL_TEST_POSTGRES_URL"})
"""The README's variables that are not settings fields."""
GEL_VARIABLE = re.compile(r"\bGEL_[A-Z0-9_]*[A-Z0-9]\b")


# ---------------------------------------------------------------------------------------------- loading
def _deployment_files() -> list[Path]:
    """Every file of the deployment folders (text), and PRODUCTION.md."""
    files = [p for folder in (COMPOSE_DIR, KUBE_DIR) for p in sorted(folder.rglob("*")) if p.is_file()]
    return [*files, PRODUCTION]


def _yaml_files() -> list[Path]:
    return [p for p in _deployment_files() if p.suffix in (".yaml", ".yml")]


@cache
def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


@cache
def _kube_documents() -> tuple[tuple[str, dict[str, Any]], ...]:
    """(file name, document) for every manifest the kustomization applies."""
    found: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(KUBE_DIR.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found.extend((path.name, doc) for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc)
    return tuple(found)


def _kube(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in _kube_documents() if doc["kind"] == kind}


@cache
def _kustomization() -> dict[str, Any]:
    return yaml.safe_load((KUBE_DIR / "kustomization.yaml").read_text(encoding="utf-8"))


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "DaemonSet")


def _workloads() -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind/name, workload) for every workload with a pod template."""
    for _, doc in _kube_documents():
        if doc["kind"] in WORKLOAD_KINDS:
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc


def _containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def _environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A compose service's environment as a mapping (compose accepts a list of NAME=value too)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.split("=", 1) for item in raw)
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


def _interpolated(value: str) -> str:
    """What the container gets for compose's `${NAME:-default}` (the default) and `${NAME:?message}` /
    `${NAME}` (a stand-in: the value comes from deploy/compose/.env)."""
    return re.sub(r"\$\{[A-Z_][A-Z0-9_]*(?::?(-|\?)([^}]*))?\}",
                  lambda m: m.group(2) if m.group(1) == "-" else "placeholder-secret", value)


# ------------------------------------------------------------------------------------- gel invocations
SEPARATORS = frozenset({";", "&&", "||", "|", "&", "(", ")", "((", "))", ";;"})
COMMAND_POSITION = frozenset({"exec", "sudo", "time", "do", "then", "else", "--", "!"})


@dataclass(frozen=True)
class GelCall:
    source: str
    words: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.source}: gel {' '.join(self.words)}"


def _shell_words(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|()")
    lexer.whitespace_split = True
    return list(lexer)


def _calls_in_words(words: list[str], source: str, service_names: frozenset[str] = frozenset()) -> list[GelCall]:
    """`gel …` at a command position: first word, after a separator, `exec`, `--` (kubectl exec), or a compose
    service name (`docker compose exec api gel …`). Scripts passed as one argument (`sh -c "…"`) too."""
    calls = []
    for index, word in enumerate(words):
        if " " in word or ";" in word:
            try:
                inner = _shell_words(word)
            except ValueError:  # not a shell script (unbalanced quotes): no command in it
                inner = [word]
            if inner != [word]:
                calls.extend(_calls_in_words(inner, source, service_names))
            continue
        if word != "gel" and not word.endswith("/bin/gel"):
            continue
        previous = words[index - 1] if index else None
        if previous is None or previous in SEPARATORS or previous in COMMAND_POSITION or previous in service_names:
            rest = []
            for following in words[index + 1:]:
                if following in SEPARATORS:
                    break
                rest.append(following)
            calls.append(GelCall(source, tuple(rest)))
    return calls


def _argv(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return _shell_words(value)
    return [str(v) for v in value]


def _compose_calls() -> list[GelCall]:
    calls = []
    for name, service in _services().items():
        for field in ("entrypoint", "command"):
            calls += _calls_in_words(_argv(service.get(field)), f"compose.yaml service {name} ({field})")
        test = (service.get("healthcheck") or {}).get("test")
        if test:
            calls += _calls_in_words(_argv(test)[1:] if isinstance(test, list) else _argv(test),
                                     f"compose.yaml service {name} (healthcheck)")
    return calls


def _kube_calls() -> list[GelCall]:
    calls = []
    for workload_name, workload in _workloads():
        for container in _containers(workload):
            argv = [*_argv(container.get("command")), *_argv(container.get("args"))]
            calls += _calls_in_words(argv, f"kubernetes {workload_name} container {container['name']}")
    return calls


FENCE = re.compile(r"^```([\w-]*)\s*$")
NOT_SHELL = frozenset({"yaml", "yml", "json", "ini", "toml", "conf", "python", "sql", "dockerfile", "xml"})
INLINE_CODE = re.compile(r"`([^`\n]+)`")


def _markdown_calls(path: Path) -> list[GelCall]:
    """`gel …` in the shell code blocks of a Markdown file, and inline code spans that start with `gel `."""
    services = frozenset(_services())
    calls: list[GelCall] = []
    language: str | None = None
    pending = ""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fence = FENCE.match(line.strip())
        if fence:
            language = None if language is not None else fence.group(1).lower()
            continue
        source = f"{path.relative_to(ROOT)}:{number}"
        if language is None:
            for span in INLINE_CODE.findall(line):
                if span.startswith("gel "):
                    calls += _calls_in_words(_shell_words(span), source)
            continue
        if language in NOT_SHELL:
            continue
        text = pending + line.strip().removeprefix("$ ")
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        pending = ""
        lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|()")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        calls += _calls_in_words(list(lexer), source, services)
    return calls


OPERATOR_COMMAND = re.compile(r"(?:docker compose (?:exec|run)\b.*?|kubectl\b.*? -- )(gel\b[^`#]*)")


def _comment_calls() -> list[GelCall]:
    """What the comments of the compose and Kubernetes files tell operators to run: inline `gel …` spans and
    `docker compose exec|run SERVICE gel …` / `kubectl … -- gel …` lines."""
    calls: list[GelCall] = []
    for path in _deployment_files():
        if path.suffix == ".md":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if "#" not in line and "--" not in line:
                continue
            comment = line.split("#", 1)[1] if "#" in line else ""
            source = f"{path.relative_to(ROOT)}:{number}"
            for span in INLINE_CODE.findall(comment):
                if span.startswith("gel "):
                    calls += _calls_in_words(_shell_words(span), source)
            for command in OPERATOR_COMMAND.findall(comment):
                calls += _calls_in_words(_shell_words(command), source)
    return calls


def _all_calls() -> list[GelCall]:
    return [*_compose_calls(), *_kube_calls(), *_comment_calls(),
            *(c for path in MARKDOWN for c in _markdown_calls(path))]


@cache
def _root_command() -> Any:
    """The app as a click command tree (Typer ships its own copy of click: groups are told by `commands`)."""
    return typer.main.get_command(app)


def _resolve(call: GelCall) -> tuple[list[str], Any, list[str]]:
    """The command path of a call in the Typer app, the command, and the words after the path."""
    command, path, rest = _root_command(), [], list(call.words)
    while hasattr(command, "commands") and rest and rest[0] in command.commands:
        path.append(rest.pop(0))
        command = command.commands[path[-1]]
    return path, command, rest


def _options(command: Any) -> set[str]:
    return {"--help"} | {o for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}


def _positionals(command: Any, rest: list[str]) -> list[str]:
    """The words of `rest` that are not options or option values."""
    takes_value = {o for p in command.params if p.param_type_name == "option" and not p.is_flag for o in p.opts}
    found, skip = [], False
    for word in rest:
        if skip:
            skip = False
        elif word.startswith("-") and word != "-":
            skip = word in takes_value
        else:
            found.append(word)
    return found


# ======================================================================================== the tests
@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_file_parses(path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    assert documents, f"{path.relative_to(ROOT)} is empty"
    assert all(isinstance(d, dict) for d in documents)


def test_the_deployment_folders_hold_what_the_issue_asks_for() -> None:
    for required in ("compose.yaml", "Dockerfile", "rabbitmq/rabbitmq.conf", "rabbitmq/enabled_plugins",
                     ".env.example", "README.md"):
        assert (COMPOSE_DIR / required).is_file(), required
    assert PRODUCTION.is_file()
    kinds = {doc["kind"] for _, doc in _kube_documents()}
    assert {"Namespace", "RabbitmqCluster", "StatefulSet", "ConfigMap", "Secret", "Deployment", "Job", "Service",
            "PodDisruptionBudget", "PersistentVolumeClaim"} <= kinds


# ------------------------------------------------------------------------------------- gel commands
def test_every_gel_command_in_the_deployment_files_exists_with_the_options_it_is_given() -> None:
    runner = CliRunner()
    problems = []
    for call in _all_calls():
        path, command, rest = _resolve(call)
        if rest and rest[0].startswith("<") and hasattr(command, "commands"):
            continue  # prose: `gel <command> --help`
        if not path and rest != ["--help"]:
            problems.append(f"{call}: not a gel command")
            continue
        if hasattr(command, "commands") and rest and not rest[0].startswith("-"):
            problems.append(f"{call}: `gel {' '.join(path)}` has no subcommand {rest[0]!r}")
            continue
        result = runner.invoke(app, [*path, "--help"])
        if result.exit_code != 0:
            problems.append(f"{call}: `gel {' '.join(path)} --help` exited {result.exit_code}: {result.output}")
        unknown = [w for w in rest if w.startswith("-") and w != "-" and w.split("=")[0] not in _options(command)]
        if unknown:
            problems.append(f"{call}: `gel {' '.join(path)}` has no option {', '.join(unknown)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("source", "calls", "expected"), [
    ("compose", _compose_calls, {("certs", "init"), ("topology", "apply"), ("gateway",), ("orchestrator",),
                                 ("serve",), ("adapter", "run")}),
    ("kubernetes", _kube_calls, {("certs", "init"), ("topology", "apply"), ("gateway",), ("orchestrator",),
                                 ("serve",), ("adapter", "run")}),
    ("PRODUCTION.md", lambda: _markdown_calls(PRODUCTION), {("log", "verify"), ("log", "show"), ("topology", "apply"),
                                                            ("topology", "render"), ("verify",)}),
])
def test_the_command_extraction_finds_the_platform_s_processes(source: str, calls: Any, expected: set[Any]) -> None:
    """Guards the check above against finding nothing (a parser that misses every call passes anything)."""
    found = {tuple(_resolve(call)[0]) for call in calls()}
    assert expected <= found, f"{source}: missing {sorted(expected - found)}"


def test_the_gateway_runs_two_workers_and_the_api_listens_on_every_interface() -> None:
    by_service = {call.source.split()[2]: call for call in _compose_calls()}
    assert by_service["gateway"].words[:3] == ("gateway", "--workers", "2")
    serve = by_service["api"].words
    assert serve[0] == "serve" and serve[serve.index("--host") + 1] == "0.0.0.0"


# ---------------------------------------------------------------------------------------- variables
@cache
def _adapter_variables() -> dict[str, set[Path]]:
    """GEL_* variables the shipped adapters read: `${GEL_…}` in adapter.yaml files, os.environ in their code."""
    found: dict[str, set[Path]] = {}
    for path in sorted((ROOT / "adapters").rglob("adapter.yaml")):
        for name in re.findall(r"\$\{(GEL_[A-Z0-9_]+)", path.read_text(encoding="utf-8")):
            found.setdefault(name, set()).add(path)
    for path in sorted((ROOT / "adapters").rglob("*.py")):
        for name in re.findall(r"[\"'](GEL_[A-Z0-9_]+)[\"']", path.read_text(encoding="utf-8")):
            found.setdefault(name, set()).add(path)
    return found


def test_every_gel_variable_named_in_the_deployment_files_exists() -> None:
    known = SETTINGS_VARIABLES | TEST_AND_DEBUG_VARIABLES | set(_adapter_variables())
    unknown = sorted({(str(path.relative_to(ROOT)), name) for path in _deployment_files()
                      for name in GEL_VARIABLE.findall(path.read_text(encoding="utf-8")) if name not in known})
    assert not unknown, "GEL_* variables that are neither settings (broker/settings.py), nor test/debug variables, " \
                        "nor read by an adapter: " + "; ".join(f"{file}: {name}" for file, name in unknown)


def test_the_variable_check_names_an_unknown_variable() -> None:
    assert "GEL_AMQP_URL" in SETTINGS_VARIABLES and "GEL_ORCHESTRATOR_DATABASE_URL" in SETTINGS_VARIABLES
    assert "GEL_SISBEN_DB_URL" in _adapter_variables()
    assert "GEL_AMQP_URI" not in SETTINGS_VARIABLES | TEST_AND_DEBUG_VARIABLES | set(_adapter_variables())


def _settings_from(environment: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(Settings.model_fields):
        monkeypatch.delenv(f"GEL_{name.upper()}", raising=False)
    for name, value in environment.items():
        if name in SETTINGS_VARIABLES:
            monkeypatch.setenv(name, _interpolated(value))
    return Settings()


def test_every_compose_service_s_settings_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    checked = set()
    for name, service in _services().items():
        environment = _environment(service)
        if any(key in SETTINGS_VARIABLES for key in environment):
            _settings_from(environment, monkeypatch)  # raises on an invalid value (a bad transport, level…)
            monkeypatch.undo()
            checked.add(name)
    assert {*PLATFORM_SERVICES, "certs", "topology"} <= checked


def test_the_kubernetes_settings_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    environment = dict(_kube("ConfigMap")["gel-configuracion"]["data"])
    environment |= _kube("Secret")["gel-bases-de-datos"]["stringData"]
    settings = _settings_from(environment, monkeypatch)
    assert settings.transport == "rabbitmq"
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.orchestrator_database_url.startswith("postgresql+psycopg://")
    assert settings.database_url != settings.orchestrator_database_url


# ------------------------------------------------------------------------------------------- compose
RABBITMQ_NODES = ("rabbitmq1", "rabbitmq2", "rabbitmq3")
PLATFORM_SERVICES = ("gateway", "orchestrator", "api")


def _runs(service: str) -> tuple[str, ...]:
    calls = [c for c in _compose_calls() if c.source.split()[2] == service]
    return tuple(_resolve(calls[0])[0]) if calls else ()


def test_compose_has_the_whole_platform() -> None:
    services = _services()
    for name in (*RABBITMQ_NODES, "postgres", "certs", "topology", *PLATFORM_SERVICES):
        assert name in services, name
    assert _runs("certs") == ("certs", "init")
    assert _runs("topology") == ("topology", "apply")
    assert _runs("orchestrator") == ("orchestrator",)
    adapters = [name for name in services if _runs(name) == ("adapter", "run")]
    entities = {load_adapter_config(_adapter_file(name)).entity for name in adapters}
    assert len(entities) >= 2, f"example adapters for at least two entities, found {sorted(entities)}"


def test_compose_depends_on_only_existing_services_with_conditions_they_can_meet() -> None:
    services = _services()
    for name, service in services.items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on {target}, which is not a service"
            condition = spec["condition"]
            assert condition in ("service_started", "service_healthy", "service_completed_successfully")
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} to be healthy: no healthcheck"
            if condition == "service_completed_successfully":
                assert services[target].get("restart", "no") in ("no", "on-failure"), \
                    f"{name} waits for {target} to complete, but {target} is restarted"
    # no cycles: a topological order exists
    remaining = {n: set(s.get("depends_on") or {}) for n, s in services.items()}
    while remaining:
        ready = [n for n, deps in remaining.items() if not deps & remaining.keys()]
        assert ready, f"depends_on cycle among {sorted(remaining)}"
        for n in ready:
            del remaining[n]


def test_compose_rabbitmq_is_a_three_node_cluster_with_quorum_queues() -> None:
    services = _services()
    conf = (COMPOSE_DIR / "rabbitmq" / "rabbitmq.conf").read_text(encoding="utf-8")
    settings = dict(line.split(" = ", 1) for line in conf.splitlines() if " = " in line and not line.startswith("#"))
    assert settings["cluster_formation.peer_discovery_backend"] == "classic_config"
    listed = sorted(v for k, v in settings.items() if k.startswith("cluster_formation.classic_config.nodes."))
    assert listed == [f"rabbit@{node}" for node in RABBITMQ_NODES]
    assert settings["default_queue_type"] == "quorum"
    for node in RABBITMQ_NODES:
        service = services[node]
        assert service["image"] == "rabbitmq:3.13-management"
        assert service["hostname"] == node
        assert _environment(service)["RABBITMQ_NODENAME"] == f"rabbit@{node}"
        assert service["healthcheck"]["test"] == ["CMD", "rabbitmq-diagnostics", "-q", "ping"]
        assert "erlang_cookie" in service["secrets"]
        assert "rabbitmq" in service["networks"]["default"]["aliases"]
    plugins = (COMPOSE_DIR / "rabbitmq" / "enabled_plugins").read_text(encoding="utf-8").strip()
    assert re.fullmatch(r"\[[a-z_]+(,[a-z_]+)*\]\.", plugins) and "rabbitmq_management" in plugins
    topology = services["topology"]
    assert "erlang_cookie" in topology["secrets"]
    assert _environment(topology)["RABBITMQ_NODENAME"] in listed
    assert "await_online_nodes 3" in " ".join(_argv(topology["command"]))
    assert {f"{node}" for node in RABBITMQ_NODES} <= set(topology["depends_on"])


def test_compose_postgres_and_the_databases_the_platform_uses() -> None:
    services = _services()
    postgres = services["postgres"]
    assert postgres["image"] == "postgres:16"
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    database = _environment(postgres)["POSTGRES_DB"]
    assert database == "gel"
    created = {database} | {m.lower() for f in (COMPOSE_DIR / "postgres" / "initdb").glob("*.sql")
                            for m in re.findall(r"CREATE DATABASE (\w+)", f.read_text(encoding="utf-8"), re.I)}
    for name in PLATFORM_SERVICES:
        environment = _environment(services[name])
        assert environment["GEL_TRANSPORT"] == "rabbitmq", name
        for variable in ("GEL_DATABASE_URL", "GEL_ORCHESTRATOR_DATABASE_URL"):
            url = urlparse(_interpolated(environment[variable]))
            assert url.scheme == "postgresql+psycopg" and url.hostname == "postgres", (name, variable)
            assert url.path.lstrip("/") in created, f"{name}: {variable} names a database nobody creates"
        assert urlparse(environment["GEL_AMQP_URL"]).hostname == "rabbitmq"


def test_compose_api_healthcheck_asks_for_salud_on_the_port_it_serves() -> None:
    api = _services()["api"]
    words = next(c for c in _compose_calls() if c.source.split()[2] == "api").words
    port = words[words.index("--port") + 1]
    assert f"127.0.0.1:{port}/salud" in " ".join(api["healthcheck"]["test"])


def _mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """container path → source (named volume or ./relative bind path) of a compose service."""
    found = {}
    for volume in service.get("volumes") or []:
        source, target = volume.split(":")[:2]
        found[target] = source
    return found


def _volume_of(service: Mapping[str, Any], path: str) -> str | None:
    """The named volume (or bind source) under which `path` lies in the container, if any."""
    candidates = [(target, source) for target, source in _mounts(service).items()
                  if path == target or path.startswith(target.rstrip("/") + "/")]
    return max(candidates)[1] if candidates else None


def test_compose_volumes_secrets_and_files_exist() -> None:
    compose = _compose()
    volumes, secrets = set(compose.get("volumes") or {}), set(compose.get("secrets") or {})
    for name, service in _services().items():
        for target, source in _mounts(service).items():
            if source.startswith((".", "/")):
                assert (COMPOSE_DIR / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in volumes, f"{name}: volume {source} is not declared"
            assert target.startswith("/")
        for secret in service.get("secrets") or []:
            assert secret in secrets, f"{name}: secret {secret} is not declared"
    for spec in (compose.get("secrets") or {}).values():
        assert spec["file"].startswith("./secrets/")
    assert "secrets/" in (COMPOSE_DIR / ".gitignore").read_text(encoding="utf-8").split()


def test_compose_processes_share_the_pki_and_credentials_their_one_shot_services_write() -> None:
    services = _services()
    certs_dir = _environment(services["certs"])["GEL_CERTS_DIR"]
    pki_volume = _volume_of(services["certs"], certs_dir)
    credentials = _environment(services["topology"])["GEL_RABBITMQ_CREDENTIALS_FILE"]
    credentials_volume = _volume_of(services["topology"], credentials)
    assert pki_volume and credentials_volume
    for name, service in services.items():
        if _runs(name) in (("gateway",), ("orchestrator",), ("serve",), ("adapter", "run")):
            environment = _environment(service)
            assert _volume_of(service, environment["GEL_CERTS_DIR"]) == pki_volume, name
            assert _volume_of(service, environment["GEL_RABBITMQ_CREDENTIALS_FILE"]) == credentials_volume, name
            assert environment["GEL_RABBITMQ_VHOST"] == _environment(services["topology"])["GEL_RABBITMQ_VHOST"]


def test_compose_images_build_from_stages_of_the_dockerfile() -> None:
    for name, service in _services().items():
        build = service.get("build")
        if build is None:
            assert ":" in service["image"], f"{name}: pin the image's tag"
            continue
        context = (COMPOSE_DIR / build["context"]).resolve()
        assert context == ROOT, f"{name}: the build context is the repository root"
        dockerfile = context / build["dockerfile"]
        stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile.read_text(encoding="utf-8"), re.M | re.I)
        assert build["target"] in stages, f"{name}: no stage {build['target']} in {dockerfile}"


def test_compose_interpolates_only_variables_of_env_example() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    example = {line.split("=", 1)[0] for line in (COMPOSE_DIR / ".env.example").read_text(encoding="utf-8").splitlines()
               if "=" in line and not line.startswith("#")}
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", text))
    assert used <= example, f"set in .env.example too: {sorted(used - example)}"
    bare = re.findall(r"(?<!\$)\$(?![${])[A-Za-z_]\w*", text)
    assert not bare, f"compose would substitute these from the host; write $$ for the container's shell: {bare}"


def test_the_dockerfile_installs_the_project_with_pip_on_python_3_11_slim() -> None:
    text = (COMPOSE_DIR / "Dockerfile").read_text(encoding="utf-8")
    arguments = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    platform = re.search(r"^FROM\s+(\S+)\s+AS\s+platform", text, re.M | re.I)
    assert platform and re.sub(r"\$\{(\w+)\}", lambda m: arguments[m.group(1)], platform.group(1)) == "python:3.11-slim"
    assert re.search(r"pip install --editable /app", text)
    for source in re.findall(r"^COPY (?!--)(\S+) ", text, re.M):
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    ignored = (COMPOSE_DIR / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    assert {".venv", "var", "certs/dev"} <= set(ignored), "keys, the virtualenv and var/ stay out of the image"


# ---------------------------------------------------------------------------------------------- adapters
def _adapter_file(service_or_call: str | GelCall) -> Path:
    if isinstance(service_or_call, str):
        call = next(c for c in _compose_calls() if c.source.split()[2] == service_or_call)
    else:
        call = service_or_call
    _, command, rest = _resolve(call)
    [argument] = _positionals(command, rest)
    return ROOT / argument.removeprefix(IMAGE_ROOT + "/")


def _adapter_runs() -> Iterator[tuple[str, Path, dict[str, str]]]:
    """(where, adapter.yaml, environment) for every adapter the compose file and the manifests run."""
    for name, service in _services().items():
        if _runs(name) == ("adapter", "run"):
            yield f"compose service {name}", _adapter_file(name), _environment(service)
    for workload_name, workload in _workloads():
        for container in _containers(workload):
            argv = [*_argv(container.get("command")), *_argv(container.get("args"))]
            for call in _calls_in_words(argv, workload_name):
                if tuple(_resolve(call)[0]) == ("adapter", "run"):
                    environment = {e["name"]: e.get("value", "") for e in container.get("env", [])}
                    for ref in container.get("envFrom", []):
                        if "configMapRef" in ref:
                            environment = dict(_kube("ConfigMap")[ref["configMapRef"]["name"]]["data"]) | environment
                    yield f"kubernetes {workload_name}", _adapter_file(call), environment


def test_every_adapter_configuration_referenced_exists_and_loads_with_its_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    runs = list(_adapter_runs())
    assert len(runs) >= 3
    for where, path, environment in runs:
        assert path.is_file(), f"{where}: {path.relative_to(ROOT)} does not exist"
        with monkeypatch.context() as patched:
            for name in _adapter_variables():
                patched.delenv(name, raising=False)
            for name, value in environment.items():
                patched.setenv(name, _interpolated(value))
            config = load_adapter_config(path)
        # Every default of the shipped configurations points into the source tree or at localhost: a
        # deployment must override each of them.
        loaded = json.dumps({"connector": config.connector, "store": config.store_url})
        assert str(ROOT / "var") not in loaded and "127.0.0.1" not in loaded, \
            f"{where}: {path.relative_to(ROOT)} still uses a development default: {loaded}"
        assert load_entities(ROOT / "deploy" / "entities.yaml").get(config.entity) is not None
        for name in environment:
            if name.startswith("GEL_") and name not in SETTINGS_VARIABLES:
                assert path in _adapter_variables().get(name, set()), \
                    f"{where}: {name} is not read by {path.relative_to(ROOT)}"


# -------------------------------------------------------------------------------------------- kubernetes
def test_the_kustomization_lists_exactly_the_manifests_present() -> None:
    listed = _kustomization()["resources"]
    present = sorted(p.name for p in KUBE_DIR.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == present
    assert len(listed) == len(set(listed))
    assert not [p for p in KUBE_DIR.iterdir() if p.is_dir()], "flat folder: subfolders are not listed"


def test_every_manifest_is_a_named_kubernetes_object() -> None:
    for file, doc in _kube_documents():
        assert doc.get("apiVersion") and doc.get("kind") and doc.get("metadata", {}).get("name"), file
        assert "namespace" not in doc["metadata"], f"{file}: the kustomization sets the namespace"


def test_rabbitmq_runs_three_nodes_through_the_cluster_operator_with_quorum_queues() -> None:
    [(name, cluster)] = _kube("RabbitmqCluster").items()
    assert cluster["apiVersion"] == "rabbitmq.com/v1beta1"
    assert cluster["spec"]["replicas"] == 3
    assert "default_queue_type = quorum" in cluster["spec"]["rabbitmq"]["additionalConfig"]
    amqp = urlparse(_kube("ConfigMap")["gel-configuracion"]["data"]["GEL_AMQP_URL"])
    assert amqp.hostname == name, "GEL_AMQP_URL points at the operator's Service, named after the cluster"
    job = _kube("Job")["gel-topologia"]
    [container] = _containers(job)
    environment = {e["name"]: e.get("value") for e in container["env"]}
    assert environment["RABBITMQ_NODENAME"].startswith(f"rabbit@{name}-server-0.{name}-nodes.")
    assert environment["RABBITMQ_USE_LONGNAME"] == "true"
    assert "command" not in container, "args only: the image's entry point installs the Erlang cookie"
    cookie = next(v for v in job["spec"]["template"]["spec"]["volumes"] if "secret" in v)
    assert cookie["secret"]["secretName"] == f"{name}-erlang-cookie"
    mount = next(m for m in container["volumeMounts"] if m["name"] == cookie["name"])
    assert environment["ERLANG_COOKIE_FILE"] == f"{mount['mountPath']}/{cookie['secret']['items'][0]['path']}"


def test_the_platform_deployments_have_the_replicas_and_probes_they_need() -> None:
    by_process = {}
    for name, deployment in _kube("Deployment").items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:  # not the init containers
            for call in _calls_in_words(_argv(container.get("command")), name):
                by_process[tuple(_resolve(call)[0])] = deployment
    assert by_process[("gateway",)]["spec"]["replicas"] == 2
    orchestrator = by_process[("orchestrator",)]
    assert orchestrator["spec"]["replicas"] == 1 and orchestrator["spec"]["strategy"]["type"] == "Recreate"
    api = by_process[("serve",)]
    assert api["spec"]["replicas"] == 2
    [container] = api["spec"]["template"]["spec"]["containers"]
    port = int(container["command"][container["command"].index("--port") + 1])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/salud"
        assert ports.get(get["port"], get["port"]) == port
    assert ("adapter", "run") in by_process


def test_kubernetes_references_resolve() -> None:
    config_maps, secrets = set(_kube("ConfigMap")), set(_kube("Secret"))
    claims = set(_kube("PersistentVolumeClaim"))
    clusters = set(_kube("RabbitmqCluster"))
    operator_secrets = {f"{c}-{suffix}" for c in clusters for suffix in ("erlang-cookie", "default-user")}
    images = {i["name"] for i in _kustomization().get("images", [])}
    for name, workload in _workloads():
        spec = workload["spec"]["template"]["spec"]
        templates = {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for volume in volumes.values():
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, (name, volume)
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets | operator_secrets, (name, volume)
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, (name, volume)
        for container in _containers(workload):
            image = container["image"]
            assert image in images or re.fullmatch(r"[\w./-]+:[\w.-]+", image), f"{name}: unpinned image {image}"
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes or mount["name"] in templates, (name, mount)
            for ref in container.get("envFrom", []):
                if "configMapRef" in ref:
                    assert ref["configMapRef"]["name"] in config_maps, (name, ref)
                if "secretRef" in ref:
                    assert ref["secretRef"]["name"] in secrets, (name, ref)
            for variable in container.get("env", []):
                source = variable.get("valueFrom", {})
                if "secretKeyRef" in source:
                    secret = _kube("Secret")[source["secretKeyRef"]["name"]]
                    assert source["secretKeyRef"]["key"] in secret["stringData"], (name, variable)
        if workload["kind"] == "Job":
            assert spec["restartPolicy"] in ("OnFailure", "Never"), name


def _pod_labels() -> list[dict[str, str]]:
    labels = [w["spec"]["template"]["metadata"]["labels"] for _, w in _workloads()]
    # the cluster operator labels its pods app.kubernetes.io/name=<cluster name>
    labels += [{"app.kubernetes.io/name": name} for name in _kube("RabbitmqCluster")]
    return labels


def test_selectors_match_pods() -> None:
    for name, workload in _workloads():
        selector = workload["spec"].get("selector", {}).get("matchLabels", {})
        assert selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items(), name
    for kind in ("Service", "PodDisruptionBudget"):
        for name, doc in _kube(kind).items():
            selector = doc["spec"]["selector"]
            selector = selector.get("matchLabels", selector) if kind == "PodDisruptionBudget" else selector
            assert any(selector.items() <= labels.items() for labels in _pod_labels()), f"{kind}/{name} selects nothing"
    for ingress in _kube("Ingress").values():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                service = _kube("Service")[path["backend"]["service"]["name"]]
                assert path["backend"]["service"]["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


def test_the_secrets_hold_placeholders_only() -> None:
    for name, secret in _kube("Secret").items():
        for key, value in secret.get("stringData", {}).items():
            assert "REPLACE-ME" in value, f"Secret {name} key {key}: placeholders only, never a real secret"
        assert "data" not in secret, f"Secret {name}: placeholders in stringData, readable"


# --------------------------------------------------------------------------------- RabbitMQ definitions
def test_the_committed_definitions_declare_quorum_queues_for_the_platform_s_queues() -> None:
    definitions = json.loads(DEFINITIONS.read_text(encoding="utf-8"))
    [vhost] = [v["name"] for v in definitions["vhosts"]]
    entities = load_entities(ROOT / "deploy" / "entities.yaml")
    expected = {q.name for q in platform_topology(entities).queues}
    queues = {q["name"]: q for q in definitions["queues"]}
    assert set(queues) == expected
    members = [e for e in entities if e.kind != DELIVERER_KIND]
    assert {"gel.dlq", *ingress_queues(entities)} <= expected and "gel.ingress" not in expected
    assert len(expected) == 1 + 2 * len(members)
    for name, queue in queues.items():
        assert queue["vhost"] == vhost and queue["durable"] is True, name
        assert queue["arguments"]["x-queue-type"] == "quorum", f"{name} is not a quorum queue"
        assert queue["arguments"]["x-delivery-limit"] > 0, name
    for binding in definitions["bindings"]:
        assert binding["destination"] in queues
    assert vhost == _environment(_services()["topology"])["GEL_RABBITMQ_VHOST"]
    assert vhost == _kube("ConfigMap")["gel-configuracion"]["data"]["GEL_RABBITMQ_VHOST"]
    assert all(not user["password_hash"] for user in definitions["users"]), "no password hashes in the repository"
    assert {(t["user"], t["exchange"]) for t in definitions["topic_permissions"]} == {
        (e.id, "gel.ingress") for e in members}, "each entity publishes to ingress only with its own routing key"


# ------------------------------------------------------------------------------------------ PRODUCTION.md
def test_the_paths_production_md_names_exist() -> None:
    text = PRODUCTION.read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:deploy|docs|certs|adapters|broker|chains|schemas|tests)/[\w./-]+)`", text))
    named |= {f"deploy/{link}" for link in re.findall(r"\]\(((?!\.\./|https?:)[\w./-]+)\)", text)}
    named |= {link.removeprefix("../") for link in re.findall(r"\]\((\.\./[\w./-]+)\)", text)}
    missing = sorted(p for p in named if "<" not in p and not (ROOT / p.rstrip("/")).exists())
    assert not missing, f"PRODUCTION.md names paths that do not exist: {missing}"


def _certificate_files(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gel-rabbitmq")])
    now = dt.datetime.now(dt.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now)
                   .not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_the_amqps_urls_of_production_md_survive_the_platform_and_parse_in_pika(tmp_path: Path) -> None:
    urls = re.findall(r"amqps://[^\s\"`]+", PRODUCTION.read_text(encoding="utf-8"))
    concrete = [u for u in urls if "<" not in u]
    assert any("ssl_options" in u for u in concrete) and any("certfile" in u for u in concrete)
    cert, key = _certificate_files(tmp_path)
    for url in concrete:
        parsed = urlparse(url)
        assert parsed.port == 5671, f"{url}: write the port (amqp_url_for would use 5672)"
        built = amqp_url_for(url, user="CO/GOB/899999011", password="s3creto/+", vhost="gel")
        rebuilt = urlparse(built)
        assert (rebuilt.scheme, rebuilt.port, rebuilt.query) == ("amqps", 5671, parsed.query)
        options = parse_qs(rebuilt.query).get("ssl_options")
        if options:
            files = ast.literal_eval(options[0])
            assert set(files) <= {"ca_certs", "certfile", "keyfile"}
            real = {k: str(key if k == "keyfile" else cert) for k in files}
            built = built.replace(rebuilt.query, "ssl_options=" + repr(real))
        parameters = pika.URLParameters(built)
        assert parameters.ssl_options is not None and parameters.port == 5671
        assert parameters.virtual_host == "gel"
        assert parameters.credentials.username == "CO/GOB/899999011"
        assert parameters.credentials.password == "s3creto/+"


def test_an_amqps_url_without_a_port_would_get_5672() -> None:
    """Why PRODUCTION.md insists on writing the port."""
    assert urlparse(amqp_url_for("amqps://rabbitmq.gel.example/", user="u", password="p")).port == 5672
