"""docker-compose.yml against the Compose Specification's JSON schema, and the deployment rules
this project holds it to (no Docker engine runs here; test_deployment.py runs its processes).

The schema is the Compose Specification's `compose_spec.json` (Apache-2.0, from the
compose-spec project) as the `docker-compose` 1.29.2 distribution on PyPI ships it, at
`compose/config/compose_spec.json` inside its wheel. `.ci/run` downloads that wheel into
`.ci/cache/` (`pip download --no-deps`, nothing installed); without it this test downloads it.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
WHEEL = "docker_compose-1.29.2-py2.py3-none-any.whl"
SCHEMA_MEMBER = "compose/config/compose_spec.json"


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    wheel = ROOT / ".ci" / "cache" / WHEEL
    if not wheel.exists():
        where = tmp_path_factory.mktemp("compose-schema")
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "-d",
                str(where),
                "docker-compose==1.29.2",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        wheel = where / WHEEL
        if done.returncode != 0 or not wheel.exists():
            if os.environ.get("CI"):
                raise RuntimeError(f"cannot get the Compose schema: {done.stderr[-500:]}")
            pytest.skip("the Compose schema's package could not be downloaded (no registry reachable)")
    loaded: dict[str, Any] = json.loads(zipfile.ZipFile(wheel).read(SCHEMA_MEMBER))
    return loaded


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _errors(schema: dict[str, Any], document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft201909Validator(schema)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)]


def test_the_compose_file_is_valid_against_the_compose_specification(schema, compose) -> None:  # type: ignore[no-untyped-def]
    assert _errors(schema, compose) == []


@pytest.mark.parametrize(
    "break_it",
    [
        lambda c: c["services"]["api"].update(helthcheck={"test": ["CMD", "true"]}),  # a typo
        lambda c: c["services"]["api"].update(ports=8000),
        lambda c: c["services"]["db"]["healthcheck"].update(interval=5),
        lambda c: c.update(secrets={"secret_key": {"file": 1}}),
    ],
)
def test_the_schema_check_catches_a_broken_file(schema, compose, break_it) -> None:  # type: ignore[no-untyped-def]
    broken = copy.deepcopy(compose)
    break_it(broken)
    assert _errors(schema, broken)


def test_the_deployment_has_its_parts(compose) -> None:  # type: ignore[no-untyped-def]
    services = compose["services"]
    assert set(services) >= {"db", "api", "scheduler", "proxy"}
    api = services["api"]
    workers = api["command"][api["command"].index("--workers") + 1]
    assert int(workers) > 1 and "--no-scheduler" in api["command"]
    assert services["scheduler"]["command"] == ["exchange", "scheduler"]
    for name in ("db", "api", "proxy"):
        assert services[name]["healthcheck"]["test"], name
    # Only the proxy is reachable from outside, and only it is trusted for client certificates.
    assert [s for s, spec in services.items() if spec.get("ports")] == ["proxy"]
    proxy_address = services["proxy"]["networks"]["backend"]["ipv4_address"]
    assert api["environment"]["EXCHANGE_TRUSTED_PROXIES"] == proxy_address
    template = services["proxy"]["volumes"][0].split(":")[0]
    assert (ROOT / template).is_file()
    assert set(compose["volumes"]) >= {"pgdata", "exchangedata"}


def test_no_secret_sits_in_the_file(compose) -> None:  # type: ignore[no-untyped-def]
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if any(word in key for word in ("SECRET", "PASSWORD", "DATABASE_URL", "KEY")):
                if key.startswith("EXCHANGE_"):
                    assert key.endswith("_FILE"), f"{name}: {key} must be read from a file"
                assert str(value).startswith("/run/secrets/"), f"{name}: {key} is not a secret's file"
                assert Path(value).name in (service.get("secrets") or []), f"{name}: {key} mounts no secret"
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./secrets/")
