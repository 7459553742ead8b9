"""Schemathesis over the REST API's own OpenAPI document, as an administrator, on a live server.

Every operation gets a bounded number of generated requests (derandomized, so CI runs the same
ones every time): none may answer a 5xx (a 503 must carry Retry-After: the database was busy),
and every 4xx must be a problem+json body. The exchange is one of its own (fresh database and
data directory with the demo data), so operations that revoke, suspend or rotate touch nothing
the rest of the suite uses.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from exchange import demo
from exchange.audit import anchor as audit_anchor
from exchange.auth import service as auth_service
from exchange.bootstrap import initialise, migrate
from exchange.config import Settings
from exchange.database.core import make_engine, make_session_factory, session_scope
from exchange.main import create_app
from exchange.partner import service as partner_service
from exchange.signing import KeyRing, default_directory
from feeds.launcher import Launcher
from tests.support.databases import throwaway_postgres
from tests.support.taxii import free_port, start_uvicorn

pytestmark = pytest.mark.live
# Examples per operation: about 40 s on SQLite; PostgreSQL answers each request more slowly.
EXAMPLES = {"sqlite": 3, "postgresql": 2}
# Longer, new runs by hand: EXCHANGE_FUZZ_EXAMPLES=200 EXCHANGE_FUZZ_RANDOM=1.
MORE = int(os.environ.get("EXCHANGE_FUZZ_EXAMPLES", "0"))
RANDOM = bool(os.environ.get("EXCHANGE_FUZZ_RANDOM"))


@pytest.fixture(scope="module")
def fuzzed(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, dict[str, str], str]]:
    """(base URL, admin key, path parameters that exist) of an exchange of its own, demo data in."""
    with _database(backend) as url:
        data_dir: Path = tmp_path_factory.mktemp("openapi-fuzz")
        own = Settings(
            data_dir=data_dir,
            database_url=url,
            secret_key="fuzz-secret-" + "x" * 40,
            max_content_length=256 * 1024,
            login_failures_per_minute=1_000_000,
        )
        own.ensure_data_dir()
        engine = make_engine(own.sqlalchemy_url)
        audit_anchor.attach(engine, KeyRing(default_directory(own)))
        migrate(engine)
        with session_scope(make_session_factory(engine), write=True) as db:
            root = initialise(db, own).api_root
            demo.load(db, root)
            demo.load_partner(db)
            _, admin_key = auth_service.create_credential(db, name="fuzzer", role="admin")
            partner = partner_service.get_by_slug(db, demo.DEMO_PARTNER)
            spare, _ = partner_service.create_credential(db, partner=partner, actor="fuzz")
        indicator = next(o["id"] for o in demo.sample_objects()["indicators"] if o["type"] == "indicator")
        known = {
            "slug": demo.DEMO_PARTNER,
            "partner": demo.DEMO_PARTNER,
            "collection": "indicators",
            "stix_id": indicator,
            "credential_id": spare.id,
        }
        engine.dispose()
        port = free_port()
        server, thread = start_uvicorn(create_app(own, feeds=Launcher), port)
        yield f"http://127.0.0.1:{port}", admin_key, known, backend
        server.should_exit = True
        thread.join(timeout=10)


def _database(backend: str):  # type: ignore[no-untyped-def]
    import contextlib

    if backend == "postgresql":
        return throwaway_postgres("openapi_fuzz")
    return contextlib.nullcontext(None)


@schemathesis.check
def no_server_error(ctx, response, case) -> None:  # type: ignore[no-untyped-def]
    """No 5xx, except a 503 that says when to come back."""
    status = response.status_code
    if status >= 500 and not (status == 503 and response.headers.get("retry-after")):
        raise AssertionError(f"{case.method} {case.formatted_path}: {status} {response.text[:300]}")


@schemathesis.check
def errors_are_problems(ctx, response, case) -> None:  # type: ignore[no-untyped-def]
    """Every refusal is an RFC 9457 problem."""
    if response.status_code >= 400:
        media = response.headers.get("content-type", [""])
        media = media[0] if isinstance(media, list) else media
        assert media.startswith("application/problem+json"), (case.method, case.formatted_path, media)


def test_no_operation_answers_a_server_error(fuzzed: tuple[str, str, dict[str, str], str]) -> None:
    url, key, known, backend = fuzzed
    schema = schemathesis.openapi.from_url(f"{url}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30, "the OpenAPI document lost its operations"
    failures: list[str] = []
    for operation in operations:
        # schemathesis' pytest plugin does not run under pytest 9 yet: one Hypothesis run per
        # operation, every failure collected, so one bad route does not hide the next.

        # Valid requests and ones that break the schema (each must be a 4xx problem).
        cases = st.one_of(operation.as_strategy(), operation.as_strategy(GenerationMode.NEGATIVE))

        @given(case=cases)
        @settings(
            max_examples=MORE or EXAMPLES[backend],
            derandomize=not RANDOM,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(
                headers={"Authorization": f"Bearer {key}"},
                checks=[no_server_error, errors_are_problems],
                timeout=30,
            )
            # Generated slugs and ids name nothing; the same case again with ones that exist
            # reaches the handlers behind the 404.
            params = case.path_parameters or {}
            if any(name in known for name in params):
                case.path_parameters = {**params, **{k: v for k, v in known.items() if k in params}}
                case.call_and_validate(
                    headers={"Authorization": f"Bearer {key}"},
                    checks=[no_server_error, errors_are_problems],
                    timeout=30,
                )

        try:
            run()
        except Exception as exc:
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)


def test_the_checks_catch_what_they_are_for() -> None:
    class Reply:
        def __init__(self, status: int, headers: dict[str, str]) -> None:
            self.status_code, self.headers, self.text = status, headers, ""

    class Case:
        method, formatted_path = "GET", "/x"

    with pytest.raises(AssertionError):
        no_server_error(None, Reply(500, {}), Case())
    with pytest.raises(AssertionError):
        no_server_error(None, Reply(503, {}), Case())
    no_server_error(None, Reply(503, {"retry-after": "5"}), Case())
    with pytest.raises(AssertionError):
        errors_are_problems(None, Reply(404, {"content-type": "text/html"}), Case())
