"""`exchange partner|credential|agreement` as an administrator runs them, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import yaml
from sqlalchemy.orm import Session

from exchange.agreement import service as agreement_service
from exchange.audit import anchor as audit_anchor
from exchange.auth import service as auth_service
from exchange.auth.keys import VerifiedKeyCache
from exchange.bootstrap import initialise, migrate
from exchange.config import Settings
from exchange.database.core import make_engine, make_session_factory, session_scope
from exchange.errors import NotFoundError
from exchange.intel import service as intel_service
from exchange.intel.ingest import ingest
from exchange.partner import service as partner_service
from exchange.signing import KeyRing, default_directory
from tests.support.cli import Result, environment, run
from tests.support.stix import AMBER, GREEN, RED

TS = "2026-01-01T00:00:00.000Z"


class Cli:
    """The `exchange` command on one data dir (and database), plus a session on that database."""

    def __init__(self, env: dict[str, str], url: str, keyring: KeyRing | None = None) -> None:
        self.env = env
        self.engine = make_engine(url)
        if keyring is not None:  # audit events it writes are signed, as the exchange's are
            audit_anchor.attach(self.engine, keyring)
        self.keys: dict[str, tuple[str, str]] = {}

    def run(self, *args: str) -> Result:
        return run(self.env, *args)

    def run_together(self, *commands: tuple[str, ...]) -> list[Result]:
        """Independent commands, one after the other (in this process, each costs milliseconds)."""
        return [self.run(*args) for args in commands]

    @contextmanager
    def db(self) -> Iterator[Session]:
        with session_scope(make_session_factory(self.engine), write=True) as session:
            yield session

    def partner(self) -> str:
        """A partner made directly in the database (the CLI's own `partner add` has its test)."""
        slug = f"p-{uuid.uuid4().hex[:8]}"
        with self.db() as db:
            _, credential, key = partner_service.create(
                db, slug=slug, name=slug.upper(), country="IN", actor="test"
            )
        self.keys[slug] = (credential.id, key)
        return slug

    def versions(self, slug: str) -> list[tuple[int, str]]:
        with self.db() as db:
            try:
                return [(v.version, v.created_by) for v in agreement_service.history(db, slug)]
            except NotFoundError:
                return []

    def authenticates(self, credential_id: str, key: str) -> str | None:
        with self.db() as db:
            principal = auth_service.authenticate(db, credential_id, key, cache=VerifiedKeyCache(0))
        return None if principal is None else principal.partner_slug


@pytest.fixture(scope="module")
def cli(settings, engine, tmp_path_factory) -> Iterator[Cli]:  # type: ignore[no-untyped-def]
    data_dir = tmp_path_factory.mktemp("cli-data")
    env = environment(data_dir, settings.database_url)
    cli_settings = Settings(data_dir=data_dir, database_url=settings.database_url)
    tool = Cli(env, cli_settings.sqlalchemy_url, KeyRing(default_directory(settings)))
    migrate(tool.engine)  # what `exchange init` does (tests/exchange/test_cli.py runs init itself)
    with tool.db() as db:
        initialise(db, cli_settings)
    yield tool
    tool.engine.dispose()


def agreement_yaml(slug: str, **changes: Any) -> str:
    """An agreement shaped like the example in DESIGN.md, on the default collections."""
    doc = f"""\
partner: {slug}
title: Bangladesh-India MoU on cyber security cooperation
valid_from: 2024-03-05
valid_until: 2029-03-04
status: active
read:
  collections: [indicators, incidents]
  max_tlp: amber            # clear < green < amber < amber+strict < red
  types: [indicator, malware, vulnerability, attack-pattern, incident, sighting,
          relationship, identity, marking-definition, report, course-of-action]
  min_confidence: 50
  embargo: 24h
  redact: [x_bd_internal_notes]
  anonymize_source: true
write:
  collections: [partner-submissions]
  types: [indicator, sighting, observed-data, relationship, note]
  require_signature: false
"""
    if not changes:
        return doc
    data = yaml.safe_load(doc)
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = data
        for part in parents:
            node = node[part]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    return yaml.safe_dump(data, sort_keys=False)


def test_partner_add_prints_its_key_once_and_list_shows_it(cli):
    slug = f"p-{uuid.uuid4().hex[:8]}"
    added = cli.run("partner", "add", slug, "--name", "CERT-In", "--country", "IN", "--json")
    assert added.returncode == 0, added.stderr
    shown = json.loads(added.stdout)
    assert set(shown) == {"partner", "credential_id", "key"} and shown["partner"] == slug
    assert shown["key"].startswith(shown["credential_id"] + ".")
    assert cli.authenticates(shown["credential_id"], shown["key"]) == slug

    listed, again = cli.run_together(
        ("partner", "list", "--json"), ("partner", "add", slug, "--name", "CERT-In", "--country", "IN")
    )
    assert listed.returncode == 0, listed.stderr
    mine = [p for p in json.loads(listed.stdout) if p["slug"] == slug]
    assert mine == [{"slug": slug, "name": "CERT-In", "country": "IN", "status": "active", "contact": ""}]
    assert shown["key"] not in listed.stdout
    assert again.returncode == 1 and "already exists" in again.stderr


def test_agreement_apply_export_and_reapply(cli, tmp_path):
    one, two = cli.partner(), cli.partner()
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(agreement_yaml(one))
    b.write_text(agreement_yaml(two, **{"read.max_tlp": "green", "read.collections": ["indicators"]}))

    applied = cli.run("agreement", "apply", str(a), str(b))
    assert applied.returncode == 0, applied.stderr
    assert f"{a}: agreement with {one}: version 1" in applied.stdout
    assert f"{b}: agreement with {two}: version 1" in applied.stdout
    assert cli.versions(one) == [(1, "cli")] and cli.versions(two) == [(1, "cli")]

    out = tmp_path / "exported"
    exported = cli.run("agreement", "export", str(out))
    assert exported.returncode == 0, exported.stderr
    with cli.db() as db:
        everyone = {doc["partner"] for doc in agreement_service.export_all(db)}
    assert {p.stem for p in out.glob("*.yaml")} == everyone  # one file per partner with an agreement
    assert yaml.safe_load((out / f"{one}.yaml").read_text())["read"]["max_tlp"] == "amber"

    # The exported files apply back unchanged; an edited one makes a new version.
    b.write_text(agreement_yaml(two, **{"read.max_tlp": "amber", "read.collections": ["indicators"]}))
    reapplied = cli.run("agreement", "apply", str(out / f"{one}.yaml"), str(b))
    assert reapplied.returncode == 0, reapplied.stderr
    assert f"agreement with {one}: unchanged (version 1)" in reapplied.stdout
    assert f"agreement with {two}: version 2" in reapplied.stdout
    assert "read.max_tlp: 'green' -> 'amber'" in reapplied.stdout
    assert cli.versions(one) == [(1, "cli")] and cli.versions(two) == [(1, "cli"), (2, "cli")]


BAD_FILES = {
    "unknown field": (
        lambda s: agreement_yaml(s, **{"read.sharing": "everything"}),
        ["read.sharing", "unknown field 'sharing'"],
    ),
    "unknown collection": (
        lambda s: agreement_yaml(s, **{"read.collections": ["indicators", "secret-stuff"]}),
        ["read.collections[1]", "unknown collection 'secret-stuff'"],
    ),
    "end before start": (
        lambda s: agreement_yaml(s, valid_until="2024-03-04"),
        ["valid_until", "before valid_from"],
    ),
    "bad YAML": (
        lambda s: agreement_yaml(s).replace("max_tlp: amber", "max_tlp: [amber"),
        ["not valid YAML", "line"],
    ),
    "impossible date, unquoted": (
        lambda s: agreement_yaml(s).replace("valid_from: 2024-03-05", "valid_from: 2024-13-45"),
        ["valid_from", "month"],
    ),
    "impossible day, unquoted": (
        lambda s: agreement_yaml(s).replace("valid_until: 2029-03-04", "valid_until: 2029-02-30"),
        ["valid_until", "day"],
    ),
    "a time where a date goes": (
        lambda s: agreement_yaml(s).replace("valid_from: 2024-03-05", "valid_from: 2024-03-05 10:00:00"),
        ["valid_from", "YYYY-MM-DD"],
    ),
}


def test_one_bad_file_applies_nothing_from_any_file(cli, tmp_path):
    runs = {}
    for case, (make, _) in BAD_FILES.items():
        good_partner, bad_partner = cli.partner(), cli.partner()
        folder = tmp_path / case.replace(" ", "-")
        folder.mkdir()
        good, bad = folder / "a.yaml", folder / "b.yaml"
        good.write_text(agreement_yaml(good_partner))
        bad.write_text(make(bad_partner))
        runs[case] = (cli.run("agreement", "apply", str(good), str(bad)), bad, good_partner, bad_partner)
    for case, (done, bad, good_partner, bad_partner) in runs.items():
        stdout, stderr = done.stdout, done.stderr
        assert done.returncode == 1, (case, stdout, stderr)
        assert str(bad) in stderr, (case, stderr)
        for words in BAD_FILES[case][1]:
            assert words in stderr, (case, words, stderr)
        assert "Traceback" not in stderr
        # All or nothing: the good file that came first is not stored either.
        assert cli.versions(good_partner) == [] and cli.versions(bad_partner) == [], case


def test_preview_suspend_and_credentials(cli, tmp_path):
    slug = cli.partner()
    alias = f"cli-{uuid.uuid4().hex[:8]}"
    with cli.db() as db:
        root = intel_service.get_api_root(db, "root")
        coll = intel_service.create_collection(db, api_root=root, alias=alias, title="t", default_tlp="green")
        objects = [
            {
                "type": "malware",
                "spec_version": "2.1",
                "id": f"malware--{uuid.uuid4()}",
                "created": TS,
                "modified": TS,
                "name": "m",
                "is_family": False,
                **marking,
            }
            for marking in (
                {"object_marking_refs": [GREEN]},
                {},
                {"object_marking_refs": [AMBER]},
                {"object_marking_refs": [RED]},
            )
        ]
        objects.append(
            {
                "type": "identity",
                "spec_version": "2.1",
                "id": f"identity--{uuid.uuid4()}",
                "created": TS,
                "modified": TS,
                "name": "x",
                "object_marking_refs": [GREEN],
            }
        )
        assert ingest(db, collection=coll, objects=objects, origin="analyst").failures == []
    with cli.db() as db:
        agreement_service.apply(
            db,
            yaml.safe_load(
                agreement_yaml(
                    slug,
                    **{
                        "read.collections": [alias, "incidents"],
                        "read.embargo": None,
                        "read.types": ["malware"],
                        "read.min_confidence": None,
                    },
                )
            ),
            actor="test",
        )

    shown, created = cli.run_together(
        ("agreement", "preview", slug, "--json"), ("credential", "create", slug, "--json")
    )
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["partner"] == slug and report["partner_status"] == "active"
    mine = next(c for c in report["collections"] if c["collection"] == alias)
    assert mine["granted"] is True and mine["total"] == 3
    assert mine["by_type"] == {"malware": 3}
    assert mine["by_tlp"] == {"green": 2, "amber": 1}
    assert {o["id"] for o in mine["sample"]} == {o["id"] for o in objects[:3]}
    assert [c["collection"] for c in report["collections"]] == [alias, "incidents"]

    assert created.returncode == 0, created.stderr
    credential = json.loads(created.stdout)
    assert credential["partner"] == slug and credential["key"].startswith(credential["credential_id"] + ".")
    assert cli.authenticates(credential["credential_id"], credential["key"]) == slug
    assert cli.authenticates(*cli.keys[slug]) == slug

    revoked, suspended = cli.run_together(
        ("credential", "revoke", credential["credential_id"]), ("partner", "suspend", slug)
    )
    assert revoked.returncode == 0 and f"credential {credential['credential_id']} revoked" in revoked.stdout
    assert cli.authenticates(credential["credential_id"], credential["key"]) is None
    assert suspended.returncode == 0 and f"partner {slug} is suspended" in suspended.stdout
    with cli.db() as db:
        assert partner_service.get_by_slug(db, slug).status == "suspended"
        assert [
            c.id
            for c in partner_service.credentials(db, partner_service.get_by_slug(db, slug))
            if c.revoked_at is not None
        ] == [credential["credential_id"]]
    assert cli.authenticates(*cli.keys[slug]) is None  # its other credentials stop working too


def test_a_type_name_stix_does_not_define_is_applied_with_a_warning_naming_the_nearest(cli, tmp_path):
    slug = cli.partner()
    path = tmp_path / "typo.yaml"
    path.write_text(agreement_yaml(slug).replace("types: [indicator, malware,", "types: [indicator, malwre,"))
    applied = cli.run("agreement", "apply", str(path))
    assert applied.returncode == 0, applied.stderr
    assert (
        "warning: read.types[1]: 'malwre' is not a type STIX 2.1 defines; did you mean 'malware'?"
        in applied.stdout
    )
    assert cli.versions(slug) == [(1, "cli")]
    custom = tmp_path / "custom.yaml"
    custom.write_text(
        agreement_yaml(slug).replace("types: [indicator, malware,", "types: [indicator, x-acme-widget,")
    )
    applied = cli.run("agreement", "apply", str(custom))
    assert (
        applied.returncode == 0 and "x-acme-widget" in applied.stdout and "did you mean" not in applied.stdout
    )
