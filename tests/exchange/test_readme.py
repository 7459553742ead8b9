"""The README's examples work as written on the demo data, against a live server, on both databases."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.databases import throwaway_postgres
from tests.support.taxii import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
DOCUMENTED = "http://127.0.0.1:8000"
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```$", re.DOTALL | re.MULTILINE)


def examples(section: str, language: str = "sh") -> list[str]:
    """The fenced `language` blocks of one `## section` of the README, dedented."""
    parts = re.split(r"^## ", README.read_text(encoding="utf-8"), flags=re.MULTILINE)
    [body] = [p for p in parts if p.startswith(section + "\n")]
    blocks = []
    for indent, lang, code in FENCE.findall(body):
        if lang == language:
            blocks.append("".join(line[len(indent) :] + "\n" for line in code.splitlines()))
    assert blocks, f"no {language} example in section {section!r}"
    return blocks


def test_the_readme_and_docs_stand_alone():
    # A clone has no ../shared: every link must point inside the repository.
    for path in [README, *sorted((ROOT / "docs").rglob("*.md"))]:
        assert "../shared" not in path.read_text(encoding="utf-8"), path
    for target in re.findall(r"\]\(([^)#]+)\)", README.read_text(encoding="utf-8")):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).is_file(), target


@pytest.fixture(scope="module")
def database_url(backend: str) -> Iterator[str | None]:
    """A database of its own: the examples add partners and publish, which other tests must not see."""
    if backend == "sqlite":
        yield None
        return
    with throwaway_postgres("exchange_readme") as url:
        yield url


@pytest.fixture(scope="module")
def demo(database_url, tmp_path_factory):  # type: ignore[no-untyped-def]
    """`exchange demo`, then `exchange serve` on a free loopback port: what the README tells a new user."""
    work = tmp_path_factory.mktemp("readme")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    env["EXCHANGE_DATA_DIR"] = str(work / "exchange-data")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    if database_url:
        env["EXCHANGE_DATABASE_URL"] = database_url
    loaded = subprocess.run(
        ["exchange", "demo", "--json"],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr
    data = json.loads(loaded.stdout)
    port = free_port()
    proc = subprocess.Popen(
        ["exchange", "serve", "--port", str(port), "--no-scheduler"],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
            time.sleep(0.2)
        yield {"env": env, "work": work, "base": base, **data}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def sh(demo, block: str, credential: dict) -> str:  # type: ignore[no-untyped-def, type-arg]
    """Run one README shell example as written, with the server's address and the demo's key."""
    script = block.replace(DOCUMENTED, demo["base"]).replace("curl ", "curl -sS --fail-with-body ")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env={**demo["env"], "ID": credential["id"], "KEY": credential["key"]},
        cwd=demo["work"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.live
def test_taxii_examples_serve_the_demo_to_the_analyst_and_the_partner(demo):  # type: ignore[no-untyped-def]
    [curl] = examples("What runs where")
    for who in ("analyst", "partner"):
        objects = json.loads(sh(demo, curl, demo[who]))["objects"]
        assert any(o["type"] == "indicator" for o in objects), who
    [client] = examples("What runs where", "python")
    script = "import os\nID, KEY = os.environ['ID'], os.environ['KEY']\n" + client.replace(
        DOCUMENTED, demo["base"]
    )
    ran = subprocess.run(
        [sys.executable, "-c", script],
        env={**demo["env"], "ID": demo["partner"]["id"], "KEY": demo["partner"]["key"]},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr


@pytest.mark.live
def test_partner_examples_add_a_partner_and_apply_its_agreement(demo):  # type: ignore[no-untyped-def]
    [block] = examples("Partners and sharing agreements")
    out = sh(demo, block, demo["analyst"])
    assert '"partner": "cert-lk"' in out and "indicators" in out


@pytest.mark.live
def test_publishing_example_publishes_for_the_demo_partner(demo):  # type: ignore[no-untyped-def]
    [block] = examples("Publishing (analysts)")
    published = json.loads(sh(demo, block, demo["analyst"]))
    assert published["collection"] == "incidents"
    kinds = [o["type"] for o in published["objects"]]
    assert kinds.count("indicator") == 4 and "report" in kinds
    pulled = httpx.get(
        f"{demo['base']}/taxii2/root/collections/incidents/objects/",
        auth=(demo["partner"]["id"], demo["partner"]["key"]),
        headers={"Accept": "application/taxii+json;version=2.1"},
        timeout=30,
    )
    assert published["incident"] in {o["id"] for o in pulled.json()["objects"]}  # audience cert-in


@pytest.mark.live
def test_signed_export_example_verifies(demo):  # type: ignore[no-untyped-def]
    [block] = examples("Signed content")
    out = sh(demo, block, demo["analyst"])
    assert "OK: signed by kid" in out and "aud cert-in" in out


@pytest.mark.live
def test_reciprocity_examples_count_the_export_for_cert_in(demo):  # type: ignore[no-untyped-def]
    import csv
    import io

    [block] = examples("Reciprocity report")
    out = sh(demo, block, demo["analyst"])
    rows = list(csv.DictReader(io.StringIO(out[out.index("partner,collection") :].split("\n\n")[0])))
    exported = json.loads((demo["work"] / "cert-in-indicators.json").read_text())["objects"]
    mine = [r for r in rows if r["partner"] == "cert-in" and r["collection"] == "indicators"]
    assert sum(int(r["received"]) for r in mine) >= len(exported)
    assert '"partner":"cert-in"' in out.replace(" ", "") and '"added_per_day"' in out


@pytest.mark.live
def test_agreement_preview_and_history_examples(demo):  # type: ignore[no-untyped-def]
    # The example ends by applying the demo's agreement again, so later examples see it unchanged.
    [block] = examples("Agreement preview and history")
    out = sh(demo, block, demo["admin"])
    assert "did you mean 'malware'?" in out
    # Other examples publish into the same demo first, so only the shape of the figures is fixed.
    # The reasons are listed most frequent first, and the order depends on what was published before.
    withheld = re.search(r"0 become visible, \d+ become withheld \(([^)]*)\)", out)
    assert withheld and re.search(r"confidence \d+", withheld[1]) and re.search(r"tlp \d+", withheld[1]), out
    assert re.search(r"withheld: \d+ \(confidence \d+", out), out
    assert '"valid":false' in out.replace(" ", "") and '"field":"read.max_tlp"' in out.replace(" ", "")
    assert "-  max_tlp: amber\n+  max_tlp: green\n" in out and "+  min_confidence: 75\n" in out
    assert "agreement with cert-in: version 2" in out and "agreement with cert-in: version 3" in out


def test_limits_examples_show_the_headers_and_a_valid_rate_limit(demo):  # type: ignore[no-untyped-def]
    from policies.schemas import AgreementDoc

    [block] = examples("Limits and security headers")
    out = sh(demo, block, demo["analyst"]).lower()
    assert "x-frame-options: deny" in out and "nosniff" in out and "frame-ancestors 'none'" in out
    [rate] = examples("Limits and security headers", "yaml")
    import yaml

    head = {"partner": "cert-in", "title": "t", "valid_from": "2024-01-01", "valid_until": "2025-01-01"}
    doc = AgreementDoc.model_validate({**head, **yaml.safe_load(rate)})
    assert doc.rate_limit is not None and doc.rate_limit.capacity == 100


def test_peering_example_adds_a_peer_and_imports_its_signed_export(demo):  # type: ignore[no-untyped-def]
    """The files the example says cert-in sent: its key set and an export it signed for cert-bd."""
    import uuid

    import rfc8785
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from exchange.signing.jws import CTY_STIX, attach_signature, canonical_envelope, sign_canonical
    from exchange.signing.keys import SigningKey, public_x, thumbprint

    [block] = examples("Peering with another exchange")
    issuer = re.search(r"--issuer (identity--[0-9a-f-]{36})", block)
    assert issuer is not None
    private = Ed25519PrivateKey.generate()
    key = SigningKey(kid=thumbprint(public_x(private.public_key())), private_key=private)
    (demo["work"] / "cert-in-jwks.json").write_text(json.dumps({"keys": [key.public_jwk()]}))
    sent = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid4()}",
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "pattern_type": "stix",
        "pattern": "[domain-name:value = 'c2.cert-in.example']",
        "valid_from": "2026-01-01T00:00:00.000Z",
    }
    canonical = canonical_envelope(
        {"id": f"bundle--{uuid.uuid4()}", "type": "bundle"}, [rfc8785.dumps(sent).decode()]
    )
    token = sign_canonical(canonical, key=key, cty=CTY_STIX, aud="cert-bd", iss=issuer.group(1))
    (demo["work"] / "cert-in-export.json").write_bytes(attach_signature(canonical, token))

    out = sh(demo, block, demo["partner"])
    assert "peer cert-in added" in out and "OK: verified" in out and "1 new" in out
    stored = httpx.get(
        f"{demo['base']}/taxii2/root/collections/partner-submissions/objects/{sent['id']}/",
        auth=(demo["analyst"]["id"], demo["analyst"]["key"]),
        headers={"Accept": "application/taxii+json;version=2.1"},
        timeout=30,
    )
    assert stored.status_code == 200, stored.text
