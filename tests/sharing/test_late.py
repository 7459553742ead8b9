"""Objects that become visible after a partner's stream has passed them still reach it once:
a relationship whose target arrives later, and what an agreement change reveals."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from exchange.database.core import make_session_factory
from exchange.signing import KeyRing, default_directory
from feeds.delivery import push_partner
from tests.support.partners import agreement_doc
from tests.support.stix import AMBER, T0, indicator, publish, sdo
from tests.support.taxii import TAXII


class Poller:
    """A TAXII client that resumes from X-TAXII-Date-Added-Last, the way OpenCTI's feed does."""

    def __init__(self, url: str, cred: tuple[str, str], *, limit: int = 2) -> None:
        self.url, self.cred, self.limit = url, cred, limit
        self.resume: str | None = None
        self.received: list[str] = []

    def poll(self) -> list[str]:
        got: list[str] = []
        for _ in range(50):
            params: dict[str, Any] = {"limit": self.limit}
            if self.resume:
                params["added_after"] = self.resume
            response = httpx.get(
                self.url + "objects/", params=params, auth=self.cred, headers={"Accept": TAXII}, timeout=30
            )
            assert response.status_code == 200, response.text
            objs = response.json().get("objects", [])
            self.resume = response.headers.get("X-TAXII-Date-Added-Last", self.resume)
            got += [o["id"] for o in objs]
            if not response.json().get("more") and not objs:
                break
        self.received += got
        return got


def test_a_relationship_reaches_the_poller_once_its_target_arrives(live_server, http, partners):
    coll = live_server.collection(default_tlp="green")
    url = live_server.collection_url(coll)
    _, cred = partners.add(lambda s: agreement_doc(s, read={"collections": [coll.alias], "max_tlp": "green"}))
    source, target = indicator(), sdo("malware", name="late", is_family=False)
    link = sdo(
        "relationship", relationship_type="indicates", source_ref=source["id"], target_ref=target["id"]
    )
    publish(http, url, [source, link])
    poller = Poller(url, cred)
    assert poller.poll() == [source["id"]]
    publish(http, url, [indicator(), target])
    assert set(poller.poll()) >= {target["id"], link["id"]}
    assert poller.poll() == []
    assert sorted(poller.received) == sorted(set(poller.received))  # nothing twice

    # A fresh client of the same partner, from the start, gets each object once too.
    fresh = Poller(url, cred, limit=3)
    fresh.poll()
    assert sorted(fresh.received) == sorted(set(fresh.received))
    assert set(fresh.received) == set(poller.received)


def test_a_chain_resolving_late_is_released_at_every_level(live_server, http, partners):
    coll = live_server.collection(default_tlp="green")
    url = live_server.collection_url(coll)
    _, cred = partners.add(lambda s: agreement_doc(s, read={"collections": [coll.alias], "max_tlp": "green"}))
    a, b = indicator(), sdo("malware", name="b", is_family=False)
    link = sdo("relationship", relationship_type="indicates", source_ref=a["id"], target_ref=b["id"])
    report = sdo("report", name="r", published=T0, object_refs=[link["id"], a["id"]])
    publish(http, url, [a, link, report])
    poller = Poller(url, cred)
    assert poller.poll() == [a["id"]]
    publish(http, url, [b])
    assert set(poller.poll()) == {b["id"], link["id"], report["id"]}


def test_a_late_target_reaches_push_delivery(live_server, http, partners, inbox):
    coll = live_server.collection(default_tlp="green")
    url = live_server.collection_url(coll)
    inbox_url = f"http://127.0.0.1:{inbox.server_address[1]}/taxii2/root/collections/inbox/"
    read = {"collections": [coll.alias], "max_tlp": "green"}
    slug, _ = partners.add(
        lambda s: agreement_doc(s, read=read) | {"push": {"url": inbox_url, "every": "1h"}}
    )
    source, target = indicator(), sdo("malware", name="late", is_family=False)
    link = sdo(
        "relationship", relationship_type="indicates", source_ref=source["id"], target_ref=target["id"]
    )
    after = indicator()  # delivered after the withheld link: the push cursor passes it
    publish(http, url, [source, link, after])
    settings, factory = live_server.settings, make_session_factory(live_server.engine)
    keyring = KeyRing(default_directory(settings))

    def pushed() -> list[str]:
        before = len(inbox.bodies)
        summary = push_partner(factory, settings, keyring, slug)
        assert summary.status in ("ok", "nothing"), summary.line()
        return [o["id"] for body in inbox.bodies[before:] for o in orjson.loads(body)["objects"]]

    assert pushed() == [source["id"], after["id"]]
    publish(http, url, [target])
    assert set(pushed()) == {target["id"], link["id"]}
    assert pushed() == []


def test_what_an_agreement_change_reveals_reaches_the_poller(live_server, http, partners):
    coll = live_server.collection(default_tlp="green")
    url = live_server.collection_url(coll)
    green, amber = indicator(), indicator(marking=AMBER)
    link = sdo("relationship", relationship_type="related-to", source_ref=green["id"], target_ref=amber["id"])
    publish(http, url, [green, amber, link])
    slug, cred = partners.add(
        lambda s: agreement_doc(s, read={"collections": [coll.alias], "max_tlp": "green"})
    )
    poller = Poller(url, cred)
    assert poller.poll() == [green["id"]]
    later = indicator()
    publish(http, url, [later])
    assert poller.poll() == [later["id"]]
    partners.apply(agreement_doc(slug, read={"collections": [coll.alias], "max_tlp": "amber"}))
    assert set(poller.poll()) == {amber["id"], link["id"]}
    assert poller.poll() == []
    # Narrowing and widening again repeats nothing this client already has.
    partners.apply(agreement_doc(slug, read={"collections": [coll.alias], "max_tlp": "green"}))
    partners.apply(agreement_doc(slug, read={"collections": [coll.alias], "max_tlp": "amber"}))
    assert poller.poll() == []
