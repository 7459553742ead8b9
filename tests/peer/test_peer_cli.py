"""`exchange peer add|list|keys|remove` and what they refuse, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.bootstrap import initialise, migrate
from exchange.config import Settings
from exchange.database.core import make_engine, make_session_factory, session_scope
from exchange.signing.keys import public_jwk, public_x, thumbprint
from tests.support.cli import environment, run

COLLECTION_URL = "https://in.example/taxii2/root/collections/indicators/"


@pytest.fixture(scope="module")
def env(settings: Settings, engine, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The command on its own exchange (the test database on PostgreSQL, its own file on SQLite)."""
    data_dir = tmp_path_factory.mktemp("peer-cli")
    cli_settings = Settings(data_dir=data_dir, database_url=settings.database_url)
    db_engine = make_engine(cli_settings.sqlalchemy_url)
    migrate(db_engine)
    with session_scope(make_session_factory(db_engine), write=True) as db:
        initialise(db, cli_settings)
    db_engine.dispose()
    return environment(data_dir, settings.database_url)


def _jwks_file(tmp_path: Path, keys: list[dict] | None = None) -> Path:  # type: ignore[type-arg]
    if keys is None:
        x = public_x(Ed25519PrivateKey.generate().public_key())
        keys = [public_jwk(thumbprint(x), x)]
    path = tmp_path / f"jwks-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps({"keys": keys}))
    return path


def _partner(env: dict[str, str], *, identity: bool = True) -> str:
    slug = f"cert-{uuid.uuid4().hex[:8]}"
    extra = ["--identity", f"identity--{uuid.uuid4()}"] if identity else []
    added = run(env, "partner", "add", slug, "--name", "Peer CERT", "--country", "IN", *extra)
    assert added.returncode == 0, added.stderr
    return slug


def _add(env: dict[str, str], slug: str, *args: str):  # type: ignore[no-untyped-def]
    return run(env, "peer", "add", slug, "--url", COLLECTION_URL, *args)


def test_peer_add_list_keys_remove(env: dict[str, str], tmp_path: Path) -> None:
    slug = _partner(env)
    jwks = _jwks_file(tmp_path)
    added = _add(env, slug, "--jwks-file", str(jwks), "--our-name", "cert-bd", "--json")
    assert added.returncode == 0, added.stderr
    feeds = json.loads(added.stdout)["feeds"]
    assert len(feeds) == 1

    listed = {p["slug"]: p for p in json.loads(run(env, "peer", "list", "--json").stdout)}
    assert listed[slug]["our_name"] == "cert-bd"
    assert listed[slug]["kids"] == [json.loads(jwks.read_text())["keys"][0]["kid"]]
    assert [f["name"] for f in listed[slug]["feeds"]] == feeds
    feed = {f["name"]: f for f in json.loads(run(env, "feed", "list", "--json").stdout)}[feeds[0]]
    assert feed["kind"] == "taxii21" and feed["options"] == {"peer": slug}

    again = _add(env, slug, "--jwks-file", str(jwks), "--our-name", "cert-bd")
    assert again.returncode == 1 and "already a peer" in again.stderr

    # Verification cannot be switched off by editing the feed's options.
    dropped = run(env, "feed", "set", feeds[0], "--option", "page_size=10")
    assert dropped.returncode == 1 and "verifies every page" in dropped.stderr
    kept = run(env, "feed", "set", feeds[0], "--options-json", json.dumps({"peer": slug, "page_size": 10}))
    assert kept.returncode == 0, kept.stderr

    refresh = run(env, "peer", "keys", slug, "--refresh")
    assert refresh.returncode == 1 and "no URL to refresh from" in refresh.stderr

    removed = run(env, "peer", "remove", slug)
    assert removed.returncode == 0, removed.stderr
    assert slug not in {p["slug"] for p in json.loads(run(env, "peer", "list", "--json").stdout)}
    assert feeds[0] not in {f["name"] for f in json.loads(run(env, "feed", "list", "--json").stdout)}


def test_peer_add_refuses_what_would_leave_pages_unchecked(env: dict[str, str], tmp_path: Path) -> None:
    slug = _partner(env)
    jwks = str(_jwks_file(tmp_path))
    cases = {
        "no audience": (["--jwks-file", jwks], "--our-name"),
        "no key set": (["--our-name", "cert-bd"], "exactly one of --jwks-url or --jwks-file"),
        "both key sets": (
            ["--our-name", "cert-bd", "--jwks-file", jwks, "--jwks-url", "https://in.example/jwks"],
            "exactly one",
        ),
        "plain http key set": (["--our-name", "cert-bd", "--jwks-url", "http://in.example/jwks"], "over TLS"),
        "rsa key": (
            ["--our-name", "cert-bd", "--jwks-file", str(_jwks_file(tmp_path, [{"kty": "RSA", "kid": "r"}]))],
            "not an Ed25519 key",
        ),
        "bad audience": (["--our-name", "Cert BD", "--jwks-file", jwks], "our name"),
    }
    for name, (args, words) in cases.items():
        result = _add(env, slug, *args)
        assert result.returncode != 0, name
        assert words in result.stderr, (name, result.stderr)
    no_identity = _partner(env, identity=False)
    result = _add(env, no_identity, "--our-name", "cert-bd", "--jwks-file", jwks)
    assert result.returncode == 1 and "--issuer" in result.stderr
    unknown = _add(env, "cert-nobody", "--our-name", "cert-bd", "--jwks-file", jwks)
    assert unknown.returncode == 1 and "no partner" in unknown.stderr
    assert slug not in {p["slug"] for p in json.loads(run(env, "peer", "list", "--json").stdout)}
