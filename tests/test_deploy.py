"""docs/deploy.md, checked: the systemd unit, the Dockerfile, the Kubernetes manifests, and every
flag and environment variable it names. (The nginx configuration runs in test_nginx.py.)"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from oai2ollama.config import Settings, SettingsError
from oai2ollama.middlewares import OPEN_PATHS
from oai2ollama.server import create_app
from oai2ollama.settings import SETTINGS, build_parser, settings_from

from . import system_programs
from .deploy_doc import DOC, ROOT, replace_once, snippet, snippets

SCRIPT = shutil.which("oai2ollama", path=str(Path(sys.executable).parent)) or shutil.which(
    "oai2ollama"
)
FLAGS = {s.flag for s in SETTINGS} | {"--no-" + s.flag[2:] for s in SETTINGS if s.kind == "bool"}
ENV_NAMES = {name for s in SETTINGS for name in s.env}


def settings_for(env: dict[str, str]) -> Settings:
    """What the server makes of this environment (and no flags)."""
    return settings_from(build_parser().parse_args([]), env)


def routes() -> set[str]:
    app = create_app(Settings())
    return {r.canonical for r in app.router.resources()}


# --------------------------------------------------------------------------------------------
# The document as a whole


def test_the_document_has_its_snippets() -> None:
    names = set(snippets())
    assert names == {
        "oai2ollama.service",
        "oai2ollama.env",
        "Dockerfile",
        "nginx.conf",
        "kubernetes.yaml",
    }


def test_every_flag_named_in_the_docs_exists() -> None:
    # Shell and Dockerfile blocks name other programs' flags (docker run, useradd): left out;
    # the Dockerfile's own command is checked below.
    text = re.sub(r"^```(sh|dockerfile)\n.*?^```$", "", DOC.read_text(), flags=re.M | re.S)
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))
    assert len(named) >= 8, named  # the pattern finds them
    assert named <= FLAGS, f"not flags of this server: {sorted(named - FLAGS)}"


def test_every_environment_variable_named_in_the_docs_exists() -> None:
    text = DOC.read_text() + (ROOT / "Dockerfile").read_text()
    named = set(re.findall(r"\bOAI2OLLAMA_[A-Z0-9_]+", text))
    assert len(named) >= 8, named
    assert named <= ENV_NAMES, f"not settings of this server: {sorted(named - ENV_NAMES)}"


def test_the_readme_links_the_deployment_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Running it as a service", 1)[1].split("\n## ", 1)[0]
    assert "(docs/deploy.md)" in section


# --------------------------------------------------------------------------------------------
# systemd


def unit_entries(text: str) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        sections[current].append((key.strip(), value.strip()))
    return sections


def test_the_unit_is_hardened_and_reads_settings_and_keys_from_files() -> None:
    unit = unit_entries(snippet("oai2ollama.service"))
    assert set(unit) == {"Unit", "Service", "Install"}
    service = dict(unit["Service"])  # the last value of a repeated key
    for key, value in {
        "DynamicUser": "yes",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "RestrictSUIDSGID": "yes",
        "KillSignal": "SIGTERM",
    }.items():
        assert service.get(key) == value, key
    assert service["ExecStart"].split()[0].endswith("/oai2ollama")
    assert service["EnvironmentFile"].lstrip("-").startswith("/etc/")
    # The credential is what the key-file setting names, through the credentials directory.
    name, _, source = service["LoadCredential"].partition(":")
    assert source.startswith("/")
    assert ("Environment", f"OAI2OLLAMA_API_KEY_FILE=%d/{name}") in unit["Service"]
    # Stopping waits longer than the server's own grace for requests in flight.
    assert float(service["TimeoutStopSec"]) > Settings().shutdown_grace
    assert dict(unit["Install"])["WantedBy"] == "multi-user.target"


def test_the_unit_settings_are_settings_the_server_accepts(tmp_path: Path) -> None:
    env = {}
    for line in snippet("oai2ollama.env").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    keys = tmp_path / "api-keys"
    keys.write_text("# one key per line\nunit-key\n")
    env["OAI2OLLAMA_API_KEY_FILE"] = str(keys)  # what %d/api-keys becomes
    settings = settings_for(env)
    assert settings.host == "0.0.0.0"
    assert settings.api_keys == ("unit-key",)
    assert settings.log_format == "json"
    # Without the key file, listening on 0.0.0.0 is refused: the unit's credential is needed.
    del env["OAI2OLLAMA_API_KEY_FILE"]
    with pytest.raises(SettingsError, match="--api-key"):
        settings_for(env)


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    system_programs.need("systemd-analyze", "systemd")
    assert SCRIPT, "the oai2ollama console script is not installed"
    # The unit as documented, with ExecStart at this checkout's script (verify checks it exists).
    text = replace_once(
        snippet("oai2ollama.service"),
        "ExecStart=/usr/local/bin/oai2ollama\n",
        f"ExecStart={SCRIPT}\n",
    )
    unit = tmp_path / "oai2ollama.service"
    unit.write_text(text)
    done = _verify(unit)
    about_it = [line for line in (done.stdout + done.stderr).splitlines() if unit.name in line]
    assert done.returncode == 0, done.stdout + done.stderr
    assert about_it == []  # not even a warning
    # The same check notices a misspelt key, so its silence above means something.
    unit.write_text(text.replace("NoNewPrivileges=", "NoNewPrivilege="))
    done = _verify(unit)
    assert "NoNewPrivilege" in done.stdout + done.stderr


# --------------------------------------------------------------------------------------------
# Docker


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions:
        if word == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(rest))
    return env


def test_the_dockerfile_in_the_docs_is_the_one_in_the_checkout() -> None:
    assert snippet("Dockerfile") == (ROOT / "Dockerfile").read_text()


def test_the_dockerfile_builds_from_the_checkout_as_a_non_root_user(tmp_path: Path) -> None:
    instructions = dockerfile_instructions((ROOT / "Dockerfile").read_text())
    first = dict(instructions)
    assert re.fullmatch(r"python:3\.\d+-slim", first["FROM"])
    user = first["USER"].split(":")[0]
    assert user.isdigit()  # numeric, so that runAsNonRoot can be checked
    assert int(user) != 0
    run = " ".join(rest for word, rest in instructions if word == "RUN")
    assert "pip install '/src[speed,redis]'" in run
    copied = " ".join(rest for word, rest in instructions if word == "COPY")
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything else stays out of the build context
    for needed in ("pyproject.toml", "README.md", "LICENSE", "oai2ollama"):
        assert needed in copied  # what the build backend reads
        assert f"!{needed}" in ignore
    # The command names the server's script and only flags it has.
    command = orjson.loads(first["CMD"])
    assert command[0] == "oai2ollama"
    assert set(a.split("=")[0] for a in command[1:] if a.startswith("--")) <= FLAGS
    # The settings it sets are accepted, and need a key as the docs say.
    env = dockerfile_env(instructions)
    assert set(env) - ENV_NAMES == {
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
        "PIP_NO_CACHE_DIR",
        "PIP_DISABLE_PIP_VERSION_CHECK",
    }
    with pytest.raises(SettingsError, match="--api-key"):
        settings_for(env)
    keys = tmp_path / "api-keys"
    keys.write_text("image-key\n")
    settings = settings_for({**env, "OAI2OLLAMA_API_KEY_FILE": str(keys)})
    assert first["EXPOSE"] == str(settings.port)
    # The health check asks the route that exists, on the port it listens on.
    health = first["HEALTHCHECK"]
    assert f"http://127.0.0.1:{settings.port}/healthz" in health
    assert "/healthz" in routes()


# --------------------------------------------------------------------------------------------
# Kubernetes


def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(snippet("kubernetes.yaml")) if d]
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert len(by_name) == len(docs)
    return by_name


def only(objs: dict[tuple[str, str], dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [obj for (k, _), obj in objs.items() if k == kind]
    return found


def test_the_kubernetes_manifests_fit_together(tmp_path: Path) -> None:
    objs = manifests()
    assert sorted(kind for kind, _ in objs) == [
        "ConfigMap",
        "Deployment",
        "Secret",
        "Secret",
        "Service",
    ]
    deployment, service, config = (only(objs, k) for k in ("Deployment", "Service", "ConfigMap"))
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["replicas"] >= 2

    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)

    # Settings: the image's environment, the ConfigMap's, then the container's own entries
    # (here from a Secret), as Kubernetes gives them.
    (source,) = container["envFrom"]
    assert source["configMapRef"]["name"] == config["metadata"]["name"]
    data = config["data"]
    assert all(isinstance(v, str) for v in data.values())  # ConfigMap values are strings
    env = {**dockerfile_env(dockerfile_instructions((ROOT / "Dockerfile").read_text())), **data}
    for entry in container["env"]:
        ref = entry["valueFrom"]["secretKeyRef"]
        env[entry["name"]] = objs["Secret", ref["name"]]["stringData"][ref["key"]]
    assert env["OAI2OLLAMA_RESPONSES_STORE"].startswith("redis://")

    # Keys: a Secret, mounted as files where the key-file setting looks.
    key_file = Path(env["OAI2OLLAMA_API_KEY_FILE"])
    (mount,) = container["volumeMounts"]
    assert mount["readOnly"] is True
    assert Path(mount["mountPath"]) == key_file.parent
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    keys_secret = objs["Secret", volume["secret"]["secretName"]]
    secret_text = keys_secret["stringData"][key_file.name]
    # The file is readable by the pod's group, not by others.
    assert volume["secret"]["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]

    local = tmp_path / key_file.name
    local.write_text(secret_text)
    settings = settings_for({**env, "OAI2OLLAMA_API_KEY_FILE": str(local)})
    assert settings.api_keys == ("change-me",)
    assert settings.host == "0.0.0.0"
    assert settings.responses_store == env["OAI2OLLAMA_RESPONSES_STORE"]
    assert ports[container["livenessProbe"]["httpGet"]["port"]] == settings.port
    # Stopping waits for the server's own grace.
    assert pod["terminationGracePeriodSeconds"] > settings.shutdown_grace

    # Runs as the image's user, without privileges.
    user = dockerfile_instructions((ROOT / "Dockerfile").read_text())
    assert str(pod["securityContext"]["runAsUser"]) == dict(user)["USER"].split(":")[0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_the_kubernetes_probes_ask_routes_that_answer_without_a_key() -> None:
    (container,) = only(manifests(), "Deployment")["spec"]["template"]["spec"]["containers"]
    live = container["livenessProbe"]["httpGet"]["path"]
    ready = container["readinessProbe"]["httpGet"]["path"]
    assert (live, ready) == ("/healthz", "/readyz")
    assert {live, ready} <= routes()
    assert {live, ready} <= OPEN_PATHS
    # /readyz may wait for Ollama up to the connect timeout + 5 s: the probe waits longer.
    assert container["readinessProbe"]["timeoutSeconds"] > Settings().connect_timeout + 5
