"""The agreement editor's back end over REST and the CLI: check, preview with reasons, version
history and the unified diff between any two versions."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.support.cli import run
from tests.support.partners import agreement_doc
from tests.support.stix import AMBER, GREEN, indicator, publish

pytestmark = pytest.mark.live


@pytest.fixture
def editor(live_server, http, partners):  # type: ignore[no-untyped-def]
    """A partner whose agreement in force reads one collection up to amber (version 1)."""
    coll = live_server.collection(default_tlp="green")
    objs = [indicator(marking=GREEN, confidence=90) for _ in range(3)] + [
        indicator(marking=AMBER, confidence=90) for _ in range(2)
    ]
    publish(http, live_server.collection_url(coll), objs)
    slug, cred = partners.add(
        lambda s: agreement_doc(s, read={"collections": [coll.alias], "max_tlp": "amber"})
    )
    return slug, coll, cred


def test_check_puts_problems_by_field_and_warns_of_typos(live_server, http, editor):
    slug, coll, _ = editor
    base = f"{live_server.url}/api/v1/agreements"
    bad = agreement_doc(slug, read={"collections": [coll.alias], "max_tlp": "ambre", "types": ["malwre"]})
    answer = http.post(f"{base}/check", json=bad)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["valid"] is False and body["document"] is None
    assert any(p["field"] == "read.max_tlp" for p in body["problems"]), body
    good = agreement_doc(
        slug, read={"collections": [coll.alias], "max_tlp": "amber", "types": ["malwre", "x-acme"]}
    )
    body = http.post(f"{base}/check", json=good).json()
    assert body["valid"] is True and body["problems"] == []
    assert any("did you mean 'malware'" in w for w in body["warnings"]), body
    assert any("'x-acme' is a custom type" in w and "did you mean" not in w for w in body["warnings"])
    for junk in ([], "text", 12, None):
        answer = http.post(f"{base}/check", json=junk)
        assert answer.status_code in (200, 422), answer.text
        if answer.status_code == 200:
            assert answer.json()["valid"] is False


def test_rest_preview_of_a_draft_counts_the_change_and_its_reasons(live_server, http, editor):
    slug, coll, _ = editor
    draft = agreement_doc(slug, read={"collections": [coll.alias], "max_tlp": "green", "types": ["indicatr"]})
    answer = http.post(f"{live_server.url}/api/v1/agreements/preview", json=draft)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    mine = next(c for c in report["collections"] if c["collection"] == coll.alias)
    assert mine["total"] == 0 and mine["withheld"] == 5
    assert mine["withheld_by"] == {"type": 5, "tlp": 2}
    assert report["change"] == {
        "becomes_visible": 0,
        "becomes_withheld": 5,
        "withheld_by": {"type": 5, "tlp": 2},
    }
    assert any("'indicatr'" in w and "did you mean 'indicator'" in w for w in report["warnings"])
    # Nothing was stored: the agreement in force still shows all five.
    now = http.get(f"{live_server.url}/api/v1/agreements/{slug}/preview").json()
    assert now["unchanged"] is True and now["total"] == 5 and now["change"]["becomes_withheld"] == 0
    assert len(http.get(f"{live_server.url}/api/v1/agreements/{slug}/versions").json()) == 1

    # Saved, the draft serves exactly what its preview said (TAXII, as the partner).
    from tests.support.taxii import pull

    green = agreement_doc(slug, read={"collections": [coll.alias], "max_tlp": "green", "min_confidence": 95})
    told = http.post(f"{live_server.url}/api/v1/agreements/preview", json=green).json()
    assert told["change"]["becomes_withheld"] == 5 and told["change"]["withheld_by"] == {
        "tlp": 2,
        "confidence": 5,
    }
    assert http.put(f"{live_server.url}/api/v1/agreements", json=green).status_code == 200
    assert pull(live_server, editor[2], coll) == []
    assert http.get(f"{live_server.url}/api/v1/agreements/{slug}/preview").json()["total"] == 0


def test_versions_and_a_unified_diff_of_their_yaml(live_server, http, editor):
    slug, coll, _ = editor
    base = f"{live_server.url}/api/v1/agreements"
    second = agreement_doc(slug, read={"collections": [coll.alias], "max_tlp": "green", "min_confidence": 60})
    assert http.put(base, json=second).json()["version"] == 2
    third = agreement_doc(slug, read={"collections": [coll.alias], "max_tlp": "green"}, status="suspended")
    assert http.put(base, json=third).json()["version"] == 3
    versions = http.get(f"{base}/{slug}/versions").json()
    assert [v["version"] for v in versions] == [1, 2, 3]
    one = http.get(f"{base}/{slug}/versions/1").json()
    assert (
        one["version"] == 1
        and "max_tlp: amber" in one["yaml"]
        and one["document"]["read"]["max_tlp"] == "amber"
    )
    diff = http.get(f"{base}/{slug}/versions/diff", params={"from": 1, "to": 3}).json()
    assert diff["from_version"] == 1 and diff["to_version"] == 3
    lines = diff["unified"].splitlines()
    assert lines[0] == f"--- {slug} version 1" and lines[1] == f"+++ {slug} version 3"
    assert "-  max_tlp: amber" in lines and "+  max_tlp: green" in lines
    assert "-status: active" in lines and "+status: suspended" in lines
    assert {c["path"] for c in diff["changes"]} == {"read.max_tlp", "status"}
    backwards = http.get(f"{base}/{slug}/versions/diff", params={"from": 3, "to": 1}).json()
    assert "+  max_tlp: amber" in backwards["unified"].splitlines()
    same = http.get(f"{base}/{slug}/versions/diff", params={"from": 2, "to": 2}).json()
    assert same["unified"] == "" and same["changes"] == []


BAD_VERSION_REQUESTS = [
    ("/versions/diff?from=1&to=9", 404),
    ("/versions/diff?from=0&to=1", 422),
    ("/versions/diff?from=x&to=1", 422),
    ("/versions/diff?from=1", 422),
    ("/versions/diff?from=1&to=99999999999999999999", 422),
    ("/versions/7", 404),
    ("/versions/-1", 404),
    ("/versions/abc", 422),
]


def test_bad_version_requests_are_4xx_problems(live_server, http, editor):
    slug = editor[0]
    for path, status in BAD_VERSION_REQUESTS:
        answer = http.get(f"{live_server.url}/api/v1/agreements/{slug}{path}")
        assert answer.status_code == status, (path, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json") or status == 422
    missing = http.get(
        f"{live_server.url}/api/v1/agreements/no-such-{uuid.uuid4().hex[:6]}/versions/diff?from=1&to=1"
    )
    assert missing.status_code == 404


def test_only_administrators_edit_preview_or_read_agreement_history(live_server, editor):
    slug, _, partner_cred = editor
    analyst = live_server.credential("analyst")
    base = f"{live_server.url}/api/v1/agreements"
    for method, path in (
        ("GET", f"/{slug}/versions"),
        ("GET", f"/{slug}/versions/1"),
        ("GET", f"/{slug}/versions/diff?from=1&to=1"),
        ("POST", "/preview"),
        ("POST", "/check"),
    ):
        for who, expected in ((analyst, 403), (partner_cred, 403), (("x", "y"), 401)):
            answer = httpx.request(method, base + path, auth=who, json=agreement_doc(slug))
            assert answer.status_code == expected, (method, path, answer.text)


def test_cli_preview_history_and_diff(live_server, http, editor, cli_env, tmp_path):
    slug, coll, _ = editor
    http.put(
        f"{live_server.url}/api/v1/agreements",
        json=agreement_doc(slug, read={"collections": [coll.alias], "max_tlp": "green"}),
    )
    draft = tmp_path / "draft.yaml"
    draft.write_text(
        json.dumps(
            agreement_doc(slug, read={"collections": [coll.alias], "max_tlp": "amber", "types": ["indicatr"]})
        )
    )
    shown = run(cli_env, "agreement", "preview", slug, "--file", str(draft))
    assert shown.returncode == 0, shown.stderr
    assert "warning: read.types[0]: 'indicatr'" in shown.stdout and "did you mean 'indicator'" in shown.stdout
    assert "0 become visible, 3 become withheld (type 3)" in shown.stdout
    assert "withheld: 5 (type 5)" in shown.stdout
    as_json = json.loads(run(cli_env, "agreement", "preview", slug, "--file", str(draft), "--json").stdout)
    assert as_json["change"]["withheld_by"] == {"type": 3}
    history = run(cli_env, "agreement", "history", slug)
    assert history.returncode == 0 and "version   1" in history.stdout and "version   2" in history.stdout
    diff = run(cli_env, "agreement", "diff", slug, "1", "2")
    assert diff.returncode == 0, diff.stderr
    assert "-  max_tlp: amber\n+  max_tlp: green\n" in diff.stdout
    missing = run(cli_env, "agreement", "diff", slug, "1", "5")
    assert missing.returncode == 1 and "no version 5" in missing.stderr
