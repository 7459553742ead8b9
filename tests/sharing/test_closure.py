"""Referential closure: no object a partner receives names one it may not see, through any
reference property, and nothing the partner writes itself unlocks another party's object."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.partners import agreement_doc
from tests.support.stix import AMBER, GREEN, T0, sdo
from tests.support.taxii import ids, submit


def ipv4(value: str, marking: str) -> dict[str, Any]:
    return {
        "type": "ipv4-addr",
        "spec_version": "2.1",
        "id": f"ipv4-addr--{uuid.uuid5(uuid.NAMESPACE_URL, value)}",
        "value": value,
        "object_marking_refs": [marking],
    }


def test_observed_data_naming_a_hidden_sco_is_withheld(live_server, http, partners):
    coll = live_server.collection(default_tlp="green")
    url = live_server.collection_url(coll)
    hidden, shown = ipv4("203.0.113.77", AMBER), ipv4("198.51.100.7", GREEN)
    base = {"first_observed": T0, "last_observed": T0, "number_observed": 1}
    leaks = sdo("observed-data", GREEN, object_refs=[hidden["id"]], **base)
    fine = sdo("observed-data", GREEN, object_refs=[shown["id"]], **base)
    traffic = {
        "type": "network-traffic",
        "spec_version": "2.1",
        "id": f"network-traffic--{uuid.uuid4()}",
        "src_ref": shown["id"],
        "dst_ref": hidden["id"],
        "protocols": ["tcp"],
        "object_marking_refs": [GREEN],
    }
    note = sdo(
        "note",
        GREEN,
        content="see",
        object_refs=[shown["id"]],
        extensions={
            f"extension-definition--{uuid.uuid4()}": {
                "extension_type": "property-extension",
                "x_about_ref": hidden["id"],
            }
        },
    )
    assert submit(http, url, [hidden, shown, leaks, fine, traffic, note])["success_count"] == 6
    _, cred = partners.add(lambda s: agreement_doc(s, read={"collections": [coll.alias], "max_tlp": "green"}))
    assert ids(url, cred) == {shown["id"], fine["id"]}


def test_what_a_partner_writes_never_unlocks_a_hidden_reference(live_server, http, partners):
    shared = live_server.collection(default_tlp="green")
    inbox = live_server.collection(default_tlp="green")
    shared_url, inbox_url = live_server.collection_url(shared), live_server.collection_url(inbox)
    indicator = sdo(
        "indicator", GREEN, pattern="[ipv4-addr:value = '192.0.2.1']", pattern_type="stix", valid_from=T0
    )
    secret = sdo("malware", AMBER, name="not for partners", is_family=False)
    link = sdo(
        "relationship",
        GREEN,
        relationship_type="indicates",
        source_ref=indicator["id"],
        target_ref=secret["id"],
    )
    submit(http, shared_url, [indicator, secret, link])
    read = {"collections": [shared.alias, inbox.alias], "max_tlp": "green"}
    write = {"collections": [inbox.alias]}
    _slug, cred = partners.add(lambda s: agreement_doc(s, read=read, write=write))
    assert ids(shared_url, cred) == {indicator["id"]}

    # The partner stores, where it may read, an object carrying the hidden target's id ...
    forged = secret | {"object_marking_refs": [GREEN], "modified": "2026-02-01T00:00:00.000Z", "name": "mine"}
    submit(None, inbox_url, [forged], auth=cred)
    # ... and an object of its own naming the hidden target.
    mine = sdo("malware", GREEN, name="partner's", is_family=False)
    own_link = sdo(
        "relationship", GREEN, relationship_type="related-to", source_ref=mine["id"], target_ref=secret["id"]
    )
    submit(None, inbox_url, [mine, own_link], auth=cred)
    assert link["id"] not in ids(shared_url, cred)

    # What only the partner stored still counts: the CERT's link to the partner's own malware.
    about_mine = sdo(
        "relationship",
        GREEN,
        relationship_type="indicates",
        source_ref=indicator["id"],
        target_ref=mine["id"],
    )
    submit(http, shared_url, [about_mine])
    assert ids(shared_url, cred) == {indicator["id"], about_mine["id"]}
