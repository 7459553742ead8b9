"""docker-compose.yml's processes without Docker: PostgreSQL (a throw-away database), the `api`
service's command (two workers here) and the `scheduler`'s, with their environment taken from
the compose file and secrets read from files, behind Debian's nginx running the compose file's
template with a generated TLS certificate; taxii2-client pulls through it, with a key and with a
partner's client certificate."""

from __future__ import annotations

import json
import os
import shutil
import string
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import yaml
from sqlalchemy import create_engine, text
from taxii2client.v21 import ApiRoot, Server

from tests.support.certs import ca_pem, issue, make_ca
from tests.support.cli import environment, run
from tests.support.databases import throwaway_postgres
from tests.support.processes import ServerProcess
from tests.support.taxii import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.live]
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Deployment:
    url: str  # https://127.0.0.1:<proxy port>
    ca: str  # the server certificate's CA, for clients to verify
    demo: dict[str, Any]
    partner_key: tuple[str, str]  # an unbound credential of the demo partner
    client_cert: tuple[str, str]  # the demo partner's certificate, bound to its first credential
    rogue_cert: tuple[str, str]  # a client certificate from another CA
    database_url: str
    scheduler_pid: int


@pytest.fixture(autouse=True)
def _own_ca_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets these override a session's `verify` (which taxii2-client sets): without
    # them, the clients below trust exactly the CA they are given.
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def _localise(env: dict[str, Any], secrets: Path) -> dict[str, str]:
    """A compose service's environment with /run/secrets/<name> pointing at our files."""
    return {k: str(v).replace("/run/secrets/", f"{secrets}/") for k, v in env.items()}


def _command(argv: list[str], **options: str) -> list[str]:
    """A compose command without its leading `exchange`, with `--option value` pairs replaced."""
    args = list(argv[1:])
    for option, value in options.items():
        flag = "--" + option
        if flag in args:
            args[args.index(flag) + 1] = value
    return args


def _nginx_conf(tmp: Path, rendered: Path) -> Path:
    conf = tmp / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {tmp}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/nginx-error.log warn;\n"
        f"events {{ worker_connections 256; }}\n"
        f"http {{\n    access_log off;\n{temp}\n    include {rendered};\n}}\n"
    )
    return conf


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        if os.environ.get("CI"):
            raise RuntimeError("CI must run the deployment test: .ci/run installs nginx")
        pytest.skip("nginx is not installed (apt-get install -y -q nginx)")
    tmp = tmp_path_factory.mktemp("deployment")
    compose = _compose()
    services = compose["services"]
    secrets = tmp / "secrets"
    secrets.mkdir()
    server_ca, partner_ca, rogue_ca = make_ca(), make_ca(), make_ca()
    tls_cert, tls_key = issue(tmp, server_ca, "exchange.test")
    client = issue(tmp, partner_ca, "cert-in-system", client=True)
    rogue = issue(tmp, rogue_ca, "cert-in-system", client=True)
    (tmp / "server-ca.pem").write_text(ca_pem(server_ca))
    for name, source in (("tls_cert", tls_cert), ("tls_key", tls_key)):
        shutil.copy(source, secrets / name)
    (secrets / "partner_ca").write_text(ca_pem(partner_ca))
    (secrets / "secret_key").write_text("deploy-test-secret-" + "k" * 32 + "\n")
    proxy_port, api_port = free_port(), free_port()
    with throwaway_postgres("exchange_deploy") as database_url:
        (secrets / "database_url").write_text(database_url + "\n")
        base = environment(tmp / "data")
        api_env = base | _localise(services["api"]["environment"], secrets)
        api_env |= {
            "EXCHANGE_DATA_DIR": str(tmp / "data"),
            "EXCHANGE_PUBLIC_URL": f"https://127.0.0.1:{proxy_port}",
            "EXCHANGE_TRUSTED_PROXIES": "127.0.0.1",  # where the proxy runs here
            "EXCHANGE_LOG_LEVEL": "WARNING",
        }
        scheduler_env = base | _localise(services["scheduler"]["environment"], secrets)
        scheduler_env |= {
            k: api_env[k] for k in ("EXCHANGE_DATA_DIR", "EXCHANGE_PUBLIC_URL", "EXCHANGE_LOG_LEVEL")
        }
        assert api_env["EXCHANGE_ENVIRONMENT"] == "production" and "EXCHANGE_SECRET_KEY" not in api_env
        done = run(api_env, "demo", "--json")
        assert done.returncode == 0, done.stderr
        demo = json.loads(done.stdout)
        extra = json.loads(run(api_env, "credential", "create", "cert-in", "--json").stdout)
        bound = run(api_env, "credential", "bind-cert", demo["partner"]["id"], "--cert", str(client[0]))
        assert bound.returncode == 0, bound.stderr

        argv = _command(services["api"]["command"], host="127.0.0.1", port=str(api_port), workers="2")
        api = ServerProcess(api_env, argv, tmp / "api.log")
        processes: list[Any] = [api]
        try:
            api.wait_healthy(f"http://127.0.0.1:{api_port}/healthz")
            scheduler = ServerProcess(
                scheduler_env, _command(services["scheduler"]["command"]), tmp / "sched.log"
            )
            processes.append(scheduler)
            proxy_env = _localise(services["proxy"]["environment"], secrets)
            proxy_env |= {
                "EXCHANGE_UPSTREAM": f"127.0.0.1:{api_port}",
                "NGINX_LISTEN": f"127.0.0.1:{proxy_port}",
            }
            template = ROOT / services["proxy"]["volumes"][0].split(":")[0]
            rendered = tmp / "exchange.conf"
            rendered.write_text(string.Template(template.read_text()).safe_substitute(proxy_env))
            conf = _nginx_conf(tmp, rendered)
            checked = subprocess.run([nginx, "-t", "-q", "-c", str(conf)], capture_output=True, text=True)
            assert checked.returncode == 0, checked.stderr
            proxy = subprocess.Popen(
                [nginx, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=(tmp / "nginx.out").open("wb")
            )
            processes.append(proxy)
            url = f"https://127.0.0.1:{proxy_port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(url + "/healthz", verify=str(tmp / "server-ca.pem")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proxy.poll() is not None:
                    raise RuntimeError(
                        "nginx did not answer: " + (tmp / "nginx-error.log").read_text()[-2000:]
                    )
                time.sleep(0.2)
            yield Deployment(
                url,
                str(tmp / "server-ca.pem"),
                demo,
                (extra["credential_id"], extra["key"]),
                (str(client[0]), str(client[1])),
                (str(rogue[0]), str(rogue[1])),
                database_url,
                scheduler.proc.pid,
            )
        finally:
            for process in reversed(processes):
                if isinstance(process, ServerProcess):
                    process.stop()
                else:
                    process.terminate()
                    process.wait(timeout=20)


def test_staff_pull_through_the_proxy_with_taxii2_client(deployment: Deployment) -> None:
    admin = deployment.demo["admin"]
    server = Server(
        f"{deployment.url}/taxii2/", user=admin["id"], password=admin["key"], verify=deployment.ca
    )
    root = server.default
    assert root is not None and root.url.startswith(deployment.url)  # EXCHANGE_PUBLIC_URL, https
    collection = next(c for c in root.collections if c.alias == "indicators")
    assert len(collection.get_objects()["objects"]) >= 10


def test_a_partner_pulls_with_its_client_certificate_alone(deployment: Deployment) -> None:
    root = ApiRoot(f"{deployment.url}/taxii2/root/", verify=deployment.ca, cert=deployment.client_cert)
    collection = next(c for c in root.collections if c.alias == "indicators")
    envelope = collection.get_objects()
    assert envelope["objects"] and "x_exchange_jws" in envelope  # filtered for it, and signed
    # Page by page through the proxy (a new connection each page: any worker answers).
    seen, pages = [], 0
    from taxii2client.v21 import as_pages

    for page in as_pages(collection.get_objects, per_request=3):
        seen += [o["id"] for o in page.get("objects", [])]
        pages += 1
    assert pages >= 3 and sorted(seen) == sorted(o["id"] for o in envelope["objects"])


def test_a_key_signs_in_through_the_proxy_but_a_bound_key_needs_its_certificate(
    deployment: Deployment,
) -> None:
    url = f"{deployment.url}/taxii2/root/collections/indicators/"
    unbound = requests.get(
        url + "objects/",
        auth=deployment.partner_key,
        verify=deployment.ca,
        headers={"Accept": "application/taxii+json;version=2.1"},
    )
    assert unbound.status_code == 200
    partner = deployment.demo["partner"]
    bound = requests.get(url, auth=(partner["id"], partner["key"]), verify=deployment.ca)
    assert bound.status_code == 401
    with_cert = requests.get(
        url, auth=(partner["id"], partner["key"]), verify=deployment.ca, cert=deployment.client_cert,
        headers={"Accept": "application/taxii+json;version=2.1"},
    )  # fmt: skip
    assert with_cert.status_code == 200


def test_forged_certificate_headers_never_pass_the_proxy(deployment: Deployment) -> None:
    pem = Path(deployment.client_cert[0]).read_text()
    from urllib.parse import quote

    forged = requests.get(
        f"{deployment.url}/taxii2/root/collections/",
        verify=deployment.ca,
        headers={
            "X-Client-Cert": quote(pem),
            "X-Client-Verify": "SUCCESS",
            "Accept": "application/taxii+json;version=2.1",
        },
    )
    assert forged.status_code == 401


def test_a_certificate_from_another_ca_is_refused_at_the_proxy(deployment: Deployment) -> None:
    answer = requests.get(
        f"{deployment.url}/taxii2/root/collections/", verify=deployment.ca, cert=deployment.rogue_cert
    )
    assert answer.status_code == 400  # nginx: the certificate does not verify; the exchange never sees it


def test_the_scheduler_service_leads(deployment: Deployment) -> None:
    engine = create_engine(deployment.database_url)
    try:
        deadline = time.monotonic() + 20
        holder = None
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                holder = conn.execute(
                    text("SELECT holder FROM scheduler_lease WHERE expires_at > now()")
                ).scalar()
            if holder:
                break
            time.sleep(0.3)
    finally:
        engine.dispose()
    assert holder is not None and int(holder.split(":")[1]) == deployment.scheduler_pid
