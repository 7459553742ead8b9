"""SqlBackend: answers medallion's TAXII 2.1 views from our store, under our access rules."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from flask import request
from medallion import auth
from medallion.backends.base import Backend
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from exchange.audit import service as audit
from exchange.auth.service import Principal
from exchange.config import Settings
from exchange.database.core import session_scope
from exchange.errors import (
    BadRequestError,
    ForbiddenError,
    InvalidCursorError,
    NotFoundError,
    UnauthorizedError,
)
from exchange.intel import ingest as ingest_service
from exchange.intel import query, service
from exchange.intel.models import ApiRoot, Collection, ObjectVersion, TaxiiStatus
from exchange.intel.strictjson import canonical_text
from exchange.intel.timestamps import us_to_text
from exchange.partner import service as partner_service
from exchange.partner.models import Partner
from exchange.peer import service as peer_service
from exchange.sharing import access, outbound
from exchange.signing import (
    CTY_TAXII,
    SIGNATURE_MEMBER,
    KeyRing,
    SignatureError,
    canonical_bytes,
    verify_detached,
)
from policies.engine import WriteGrant, decide_write
from taxii_server import context
from taxii_server.cursor import Cursor, CursorCodec
from taxii_server.filters import FILTER_KEYS, normalised_filters, to_object_filter

TAXII_MEDIA = "application/taxii+json;version=2.1"
ROOT_CACHE_SECONDS = 5.0
STIX_MEDIA = "application/stix+json;version=2.1"
VERSIONS_FILTERS = ("added_after", "match[spec_version]")
DELETE_FILTERS = ("match[version]", "match[spec_version]")
# Section 3.4.1: "last" is the default when no version parameter is given, DELETE included.
DEFAULT_VERSIONS = ("last",)


class SqlBackend(Backend):  # type: ignore[misc]  # medallion is untyped
    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        settings: Settings,
        read_factory: Callable[[], Session] | None = None,
        codec: CursorCodec,
        keyring: KeyRing,
    ):
        self._keyring = keyring
        self._factory = session_factory
        self._read_factory = read_factory
        self._settings = settings
        self._codec = codec
        self._roots: dict[str, tuple[float, ApiRoot | None]] = {}

    # --- request plumbing ---------------------------------------------------------------

    def request_session(self) -> Session:
        """The one read session of the current request (closed at teardown)."""
        ctx = context.current()
        if ctx.db is None:
            ctx.db = self._factory()
        return ctx.db

    _db = request_session

    def _reads(self) -> Session:
        """Where pages are read: the replica's session when there is one, else the request's.

        A streaming replica replays the primary's commits in order, and a collection's
        date_added is handed out in commit order, so a lagging replica shows a prefix of each
        stream: a page from it may stop short, never skip. Every resume point (`next`, the
        X-TAXII-Date-Added headers) comes from what that page served, or, for staff, from the
        high-water mark read on the same replica before the page.
        """
        if self._read_factory is None:
            return self.request_session()
        ctx = context.current()
        if ctx.replica_db is None:
            ctx.replica_db = self._read_factory()
        return ctx.replica_db

    def _high_water(self, coll: Collection) -> int:
        if self._read_factory is None:
            return coll.last_date_added_us
        mark = self._reads().scalar(select(Collection.last_date_added_us).where(Collection.pk == coll.pk))
        return int(mark or 0)

    def _end_read(self) -> None:
        """Close the request's read transaction before writing in another session.

        On SQLite an open reader pins the WAL: a write committed beside it can never be
        checkpointed, and the log grows without bound while partners pull (the ledger).
        The read session holds no changes, and expire_on_commit is off, so loaded rows stay.
        """
        ctx = context.current()
        for db in (ctx.db, ctx.replica_db):
            if db is not None:
                db.commit()

    @staticmethod
    def _principal() -> Principal:
        principal = auth.current_user()
        if not isinstance(principal, Principal):  # the auth decorator guarantees it
            raise UnauthorizedError("Authentication required")
        return principal

    def _root(self, name: str) -> ApiRoot | None:
        # API roots change only through init; a few seconds of staleness is harmless and
        # saves a query on every request.
        now = time.monotonic()
        cached = self._roots.get(name)
        if cached is None or cached[0] < now:
            root = service.get_api_root(self._db(), name)
            if root is not None:
                self._db().expunge(root)
            cached = (now + ROOT_CACHE_SECONDS, root)
            self._roots[name] = cached
        return cached[1]

    def _resolve(self, api_root: str, ref: str) -> tuple[ApiRoot, Collection, access.CollectionAccess] | None:
        cache = context.current().collections
        key = (api_root, ref)
        if key not in cache:
            found = None
            root = self._root(api_root)
            if root is not None:
                coll = service.get_collection(self._db(), api_root_pk=root.pk, ref=ref, missing_ok=True)
                if coll is not None:
                    grant = access.collection_access(
                        self._db(), self._principal(), coll, cache=self._policy_cache()
                    )
                    if grant is not None:
                        found = (root, coll, grant)
            cache[key] = found
        entry: tuple[ApiRoot, Collection, access.CollectionAccess] | None = cache[key]
        return entry

    @staticmethod
    def _policy_cache() -> dict[str, Any]:
        return context.current().policy

    def _require(self, api_root: str, ref: str, *, read: bool = True):  # type: ignore[no-untyped-def]
        found = self._resolve(api_root, ref)
        if found is None:
            raise NotFoundError(f"Collection '{ref}' not found")
        if read and not found[2].can_read:
            raise ForbiddenError(f"Forbidden to read collection '{ref}'")
        return found

    def _base_url(self) -> str:
        # Section 4.1.1: API root URLs MUST be HTTPS absolute URLs or relative URLs. Without a
        # configured public URL we cannot know the scheme partners see, so stay relative.
        if self._settings.public_url:
            return self._settings.public_url.rstrip("/") + "/taxii2/"
        if request.scheme == "https":
            return request.url_root
        return request.script_root + "/"

    @staticmethod
    def _collection_resource(coll: Collection, grant: access.CollectionAccess) -> dict[str, Any]:
        return {
            "id": coll.id,
            "title": coll.title,
            "description": coll.description,
            "alias": coll.alias,
            "can_read": grant.can_read,
            "can_write": grant.can_write,
            "media_types": [STIX_MEDIA],
        }

    def _visible_roots(self) -> list[ApiRoot]:
        db, principal = self._db(), self._principal()
        roots = []
        for root in service.list_api_roots(db):
            if principal.is_internal or any(
                access.collection_access(db, principal, c, cache=self._policy_cache())
                for c in service.list_collections(db, api_root_pk=root.pk)
            ):
                roots.append(root)
        return roots

    # --- cursors ------------------------------------------------------------------------

    def _filters_and_position(
        self, coll: Collection, endpoint: str, filter_args: dict[str, str], allowed: tuple[str, ...]
    ) -> tuple[dict[str, Any], Any]:
        """Validated filters, and the keyset position carried by `next` (None on page one)."""
        given = normalised_filters(request.args, allowed=allowed)
        token = request.args.get("next")
        if token is None:
            return given, None
        cursor = self._codec.decode(token)
        if (
            cursor.caller != self._principal().credential_id
            or cursor.collection != coll.id
            or cursor.endpoint != endpoint
        ):
            raise InvalidCursorError("this 'next' cursor was issued for another request")
        for key, value in given.items():
            if cursor.filters.get(key) != value:
                raise InvalidCursorError(
                    f"'{key}' differs from the request that issued this 'next' cursor; "
                    "repeat the original filters or leave them out"
                )
        return cursor.filters, cursor.position

    def _next_token(self, coll: Collection, endpoint: str, filters: dict[str, Any], position: Any) -> str:
        return self._codec.encode(
            Cursor(self._principal().credential_id, coll.id, endpoint, filters, position)
        )

    @staticmethod
    def _date_headers(first_us: int, last_us: int) -> dict[str, str]:
        return {
            "X-TAXII-Date-Added-First": us_to_text(first_us),
            "X-TAXII-Date-Added-Last": us_to_text(last_us),
        }

    def _empty_headers(
        self, coll: Collection, grant: access.CollectionAccess, filters: dict[str, Any], position: Any
    ) -> dict[str, str]:
        """Where a poller may resume after an empty page, from nothing it may not see.

        A `next` position is already in the recipient's stream (a partner's includes its
        embargo: exchange.sharing.outbound), as `added_after` is: adding the embargo again put the
        resume point one embargo ahead, past objects that became visible meanwhile."""
        floor = max(filters.get("added_after") or 0, position if isinstance(position, int) else 0)
        if grant.read_grant is None:
            # Staff see everything: nothing matched up to the collection's high-water mark read
            # before the page query, so that mark is a safe point to resume from.
            floor = max(floor, context.current().high_water)
        return self._date_headers(floor, floor)

    def _recipient(self) -> outbound.Recipient:
        return outbound.Recipient.for_principal(self._principal(), channel="taxii")

    def _page(
        self,
        coll: Collection,
        grant: access.CollectionAccess,
        endpoint: str,
        filter_args: dict[str, str],
        limit: int,
        columns: tuple[Any, ...],
        extra_filter: dict[str, Any] | None = None,
    ) -> tuple[outbound.Page, dict[str, Any], dict[str, str]]:
        filters, position = self._filters_and_position(coll, endpoint, filter_args, FILTER_KEYS)
        flt = to_object_filter(filters | (extra_filter or {}), default_versions=DEFAULT_VERSIONS)
        context.current().high_water = self._high_water(coll)
        page = outbound.next_page(
            self._reads(),
            grant=grant,
            collection=coll,
            flt=flt,
            after_us=position,
            limit=limit,
            columns=columns,
            recipient=self._recipient(),
        )
        if self._read_factory is not None:
            # Read on the replica: whether a release was already received is the primary's word.
            page = outbound.drop_received_releases(self._db(), self._recipient(), page)
        body: dict[str, Any] = {"more": page.more}
        if page.more:
            body["next"] = self._next_token(coll, endpoint, filters, page.next_after)
        first_us, last_us = page.first_us, page.last_us
        if first_us is not None and last_us is not None:  # the page has rows
            headers = self._date_headers(first_us, last_us)
        else:
            headers = self._empty_headers(coll, grant, filters, position)
        return page, body, headers

    def _signed(self, envelope: dict[str, Any], list_key: str, texts: list[str] | None) -> Any:
        """Partners get every page signed: a detached JWS over the RFC 8785 bytes they receive."""
        recipient = self._recipient()
        if recipient.is_internal:
            return envelope
        members = {k: v for k, v in envelope.items() if k != list_key} if list_key == "objects" else envelope
        signed = outbound.signed_envelope(
            members,
            texts if list_key == "objects" else None,
            recipient=recipient,
            keyring=self._keyring,
            cty=CTY_TAXII,
            issuer=self._settings.identity_id,
        )
        return orjson.Fragment(signed)

    # --- TAXII 2.1 endpoints ------------------------------------------------------------

    def server_discovery(self) -> dict[str, Any]:
        """Section 4.1: discovery, listing only API roots the caller may use."""
        base = self._base_url()
        roots = [base + r.name + "/" for r in self._visible_roots()]
        resource: dict[str, Any] = {
            "title": "National CERT cyber incident information exchange",
            "description": "STIX 2.1 incidents and indicators shared under bilateral agreements",
        }
        if roots:  # section 2: an empty list must not stand in for an omitted property
            resource["api_roots"] = roots
        default = base + self._settings.api_root + "/"
        if default in roots:
            resource["default"] = default
        return resource

    def get_api_root_information(self, api_root: str) -> dict[str, Any] | None:
        """Section 4.2: API root information."""
        root = self._root(api_root)
        if root is None:
            return None
        if not self._principal().is_internal and not self._root_visible(root):
            return None
        return {
            "title": root.title,
            "description": root.description,
            "versions": [TAXII_MEDIA],
            "max_content_length": root.max_content_length,
        }

    def _root_visible(self, root: ApiRoot) -> bool:
        """Whether a partner may know of `root`: it may when it may know any of its collections.

        medallion asks before every collection view; when the request names a collection the
        caller may know, that collection answers the question (and is resolved once for the
        view that follows), without working out the caller's access to every other collection.
        """
        ref = (request.view_args or {}).get("collection_id")
        if isinstance(ref, str) and self._resolve(root.name, ref) is not None:
            return True
        return root.pk in {r.pk for r in self._visible_roots_cached()}

    def _visible_roots_cached(self) -> list[ApiRoot]:
        ctx = context.current()
        if ctx.visible_roots is None:
            ctx.visible_roots = self._visible_roots()
        return ctx.visible_roots

    def get_status(self, api_root: str, status_id: str) -> dict[str, Any] | None:
        """Section 4.3: a status resource, shown only to the caller that made it (or an admin)."""
        root = self._root(api_root)
        if root is None:
            return None
        row = self._db().get(TaxiiStatus, status_id)
        principal = self._principal()
        if row is None or row.api_root_pk != root.pk:
            return None
        if row.owner != principal.credential_id and principal.role != "admin":
            return None
        return self._status_resource(row)

    @staticmethod
    def _status_resource(row: TaxiiStatus) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "id": row.id,
            "status": row.status,
            "request_timestamp": row.request_timestamp,
            "total_count": row.total_count,
            "success_count": row.success_count,
            "failure_count": row.failure_count,
            "pending_count": row.pending_count,
        }
        for name, text in (
            ("successes", row.successes),
            ("failures", row.failures),
            ("pendings", row.pendings),
        ):
            if text != "[]":
                resource[name] = orjson.Fragment(text)
        return resource

    def get_collections(self, api_root: str) -> dict[str, Any]:
        """Section 5.1: the collections the caller may know of."""
        root = self._root(api_root)
        db, principal = self._db(), self._principal()
        listed = []
        for coll in service.list_collections(db, api_root_pk=root.pk) if root else []:
            grant = access.collection_access(db, principal, coll, cache=self._policy_cache())
            if grant is not None:
                listed.append(self._collection_resource(coll, grant))
        return {"collections": listed} if listed else {}

    def get_collection(self, api_root: str, collection_id: str) -> dict[str, Any] | None:
        """Section 5.2: one collection; None (404) when the caller may not know it."""
        found = self._resolve(api_root, collection_id)
        if found is None:
            return None
        return self._collection_resource(found[1], found[2])

    def get_object_manifest(self, api_root, collection_id, filter_args, allowed_filters, limit):  # type: ignore[no-untyped-def]
        """Section 5.3: manifest entries, paged like objects."""
        _, coll, grant = self._require(api_root, collection_id)
        page, body, headers = self._page(
            coll,
            grant,
            "manifest",
            filter_args,
            limit,
            (ObjectVersion.stix_id, ObjectVersion.date_added_us, ObjectVersion.version_text),
        )
        texts = [
            canonical_text(
                {
                    "id": r.stix_id,
                    "date_added": us_to_text(position),
                    "version": r.version_text,
                    "media_type": STIX_MEDIA,
                }
            )
            for r, position in zip(page.rows, page.positions, strict=True)
        ]
        if texts:
            body["objects"] = [orjson.Fragment(t) for t in texts]
        return self._signed(body, "objects", texts or None), headers

    def get_objects(self, api_root, collection_id, filter_args, allowed_filters, limit):  # type: ignore[no-untyped-def]
        """Section 5.4: an envelope of objects, stored canonical text spliced in as is."""
        _, coll, grant = self._require(api_root, collection_id)
        page, body, headers = self._page(
            coll, grant, "objects", filter_args, limit, (ObjectVersion.date_added_us, ObjectVersion.body)
        )
        rows = page.rows
        texts, ledger = self._serve(coll, grant, rows) if rows else ([], None)
        return self._answer(body, texts, ledger, headers)

    def _serve(
        self,
        coll: Collection,
        grant: access.CollectionAccess,
        rows: list,  # type: ignore[type-arg]
    ) -> tuple[list[str], _Ledger | None]:
        """Object texts for the caller; for a partner also its ledger rows, being written.

        The rows are written and committed in a thread of their own while the caller signs the
        page (the database works while Python signs); the caller answers only after `wait()`.
        """
        recipient = self._recipient()
        ledger = None
        # HEAD is answered as GET without its body: nothing is delivered, so nothing is recorded
        # (a ledger row would say a partner holds, say, a revocation it never received).
        if not recipient.is_internal and not context.current().head:
            sqlite = self._db().get_bind().dialect.name == "sqlite"
            if sqlite:
                # SQLite only: an open reader pins the WAL the ledger writes into (see _end_read);
                # on PostgreSQL the read transaction may stay open beside the ledger's.
                self._end_read()

            def write(under_way: Callable[[], None]) -> None:
                outbound.record_committed(
                    self._factory, recipient, collection_pk=coll.pk, rows=rows, under_way=under_way
                )

            # SQLite's ledger (about 1.5 ms) is done well within the signature (which leaves the
            # interpreter free): waiting for the writer to hold the write lock first only delayed
            # the page. PostgreSQL's takes longer than the signature, so it starts first.
            ledger = _Ledger(write, hand_over=not sqlite)
        try:
            texts = outbound.bodies(rows, grant, exchange_identity=self._settings.identity_id)
        except BaseException:
            if ledger is not None:
                ledger.wait()
            raise
        return texts, ledger

    def _answer(
        self, body: dict[str, Any], texts: list[str], ledger: _Ledger | None, headers: dict[str, str]
    ) -> tuple[Any, dict[str, str]]:
        """The signed page, once its ledger rows are committed: the ledger is evidence, written
        before anything is answered (a failed write fails the request)."""
        if texts:
            body["objects"] = [orjson.Fragment(t) for t in texts]
        try:
            signed = self._signed(body, "objects", texts or None)
        finally:
            if ledger is not None:
                ledger.wait()
        return signed, headers

    def add_objects(self, api_root, collection_id, objs, request_time):  # type: ignore[no-untyped-def]
        """Section 5.5: validate and store an envelope; one transaction; a status resource."""
        root, coll, grant = self._require(api_root, collection_id, read=False)
        if not grant.can_write:
            raise ForbiddenError(f"Forbidden to write collection '{collection_id}'")
        if not isinstance(objs, dict) or not isinstance(objs.get("objects"), list):
            raise BadRequestError(
                "the request body must be a TAXII envelope: a JSON object with an 'objects' list"
            )
        if not objs["objects"]:
            raise BadRequestError("the envelope holds no objects; there is nothing to add")
        ingest_service.check_batch_size(len(objs["objects"]), self._settings.max_envelope_objects)
        principal = self._principal()
        # isoformat, not strftime("%Y"), which writes year 1 as "1" on Linux
        timestamp = request_time.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
        signature_problem = None
        if grant.write_grant is not None and grant.write_grant.require_signature:
            signature_problem = self._submission_signature_problem(objs)
        accepted, refused = _write_policy(objs["objects"], grant.write_grant, signature_problem)
        writer = None
        if not principal.is_internal:
            partner = self._db().get(Partner, principal.partner_pk)
            writer = partner_service.writer(self._db(), partner) if partner is not None else None
        # Validation is the slow part: do it before taking the write lock other writers wait on.
        prepared = ingest_service.prepare(accepted)
        self._end_read()
        with session_scope(self._factory, write=True) as db:
            target = db.get(Collection, coll.pk)
            if target is None:  # deleted while the request was read
                raise NotFoundError(f"no collection {coll.id!r}")
            result = ingest_service.ingest(
                db,
                collection=target,
                objects=prepared,
                origin="analyst" if principal.is_internal else "partner",
                added_by=principal.credential_id,
                writer=writer,
                exchange_identity=self._settings.identity_id,
            )
            result.failures.extend(refused)
            audit.record(
                db,
                actor=principal.credential_id,
                action="taxii.add_objects",
                target=coll.alias,
                details={
                    "new": result.created,
                    "duplicates": result.duplicates,
                    "failures": len(result.failures),
                    "partner": principal.partner_slug,
                },
            )
            status = TaxiiStatus(
                id=str(uuid.uuid4()),
                api_root_pk=root.pk,
                owner=principal.credential_id,
                status="complete",
                request_timestamp=timestamp,
                total_count=len(objs["objects"]),
                success_count=len(result.successes),
                failure_count=len(result.failures),
                pending_count=0,
                successes=orjson.dumps(result.successes).decode(),
                failures=orjson.dumps(result.failures).decode(),
                pendings="[]",
            )
            db.add(status)
        return self._status_resource(status)

    def _submission_signature_problem(self, envelope: dict[str, Any]) -> str | None:
        """None when the envelope carries a valid JWS by one of the partner's registered keys, or,
        for a peer, by a key in its cached published key set, signed for us (`aud`) by it (`iss`)."""
        token = envelope.get(SIGNATURE_MEMBER)
        if token is None:
            return "the envelope carries no x_exchange_jws signature"
        db = self._db()
        partner = db.get(Partner, self._principal().partner_pk)
        keys = partner_service.jwks(partner) if partner is not None else {"keys": []}
        peer = peer_service.find_by_slug(db, partner.slug) if partner is not None else None
        if not keys["keys"] and peer is None:
            return "no valid public key is registered for this partner"
        reason = ""
        if keys["keys"]:
            try:
                verify_detached(token, envelope, jwks=keys)
                return None
            except SignatureError as exc:
                reason = exc.reason
        if peer is not None:
            try:
                # The cached set only: a request never waits on the peer's server.
                peer_service.cached_trust(db, peer).verify_token(
                    token, canonical_bytes(envelope), cty=CTY_TAXII
                )
                return None
            except SignatureError as exc:
                reason = exc.reason
        return f"the envelope signature does not verify: {reason}"

    def get_object(self, api_root, collection_id, object_id, filter_args, allowed_filters, limit):  # type: ignore[no-untyped-def]
        """Section 5.6: the versions of one object (latest by default) in an envelope."""
        _, coll, grant = self._require(api_root, collection_id)
        if not query.object_exists(
            self._reads(), collection_pk=coll.pk, stix_id=object_id, extra=grant.predicates
        ):
            raise NotFoundError(f"Object '{object_id}' not found")
        page, body, headers = self._page(
            coll,
            grant,
            f"object:{object_id}",
            filter_args,
            limit,
            (ObjectVersion.date_added_us, ObjectVersion.body),
            extra_filter={"match[id]": [object_id]},
        )
        rows = page.rows
        if not rows and "match[version]" in request.args and "next" not in request.args:
            # Section 5.7: a deleted (or never stored) version MUST be a 404.
            raise NotFoundError(f"Object '{object_id}' has no version matching the request")
        texts, ledger = self._serve(coll, grant, rows) if rows else ([], None)
        return self._answer(body, texts, ledger, headers)

    def delete_object(self, api_root, collection_id, object_id, filter_args, allowed_filters):  # type: ignore[no-untyped-def]
        """Section 5.7: delete the matching versions of one object (all by default)."""
        _, coll, grant = self._require(api_root, collection_id)
        if not (grant.can_write and access.may_delete(self._principal())):
            raise ForbiddenError(f"Forbidden to delete from collection '{collection_id}'")
        filters = normalised_filters(request.args, allowed=DELETE_FILTERS)
        flt = to_object_filter(filters, default_versions=DEFAULT_VERSIONS)
        self._end_read()
        with session_scope(self._factory, write=True) as db:
            deleted = query.delete_versions(db, collection_pk=coll.pk, stix_id=object_id, flt=flt)
            if not deleted:
                raise NotFoundError(f"Object '{object_id}' not found")
            audit.record(
                db,
                actor=self._principal().credential_id,
                action="taxii.delete_object",
                target=object_id,
                details={"collection": coll.alias, "versions": deleted, "filters": dict(request.args)},
            )
            ingest_service.refresh_version_flags(db, coll.pk, object_id)

    def get_object_versions(self, api_root, collection_id, object_id, filter_args, allowed_filters, limit):  # type: ignore[no-untyped-def]
        """Section 5.8: the versions of one object, oldest first."""
        _, coll, grant = self._require(api_root, collection_id)
        db = self._reads()
        if not query.object_exists(db, collection_pk=coll.pk, stix_id=object_id, extra=grant.predicates):
            raise NotFoundError(f"Object '{object_id}' not found")
        endpoint = f"versions:{object_id}"
        filters, position = self._filters_and_position(coll, endpoint, filter_args, VERSIONS_FILTERS)
        flt = to_object_filter(filters, default_versions=("all",))
        shift = outbound.stream_shift(grant)
        if shift and flt.added_after_us is not None:
            flt = dataclasses.replace(flt, added_after_us=flt.added_after_us - shift)
        context.current().high_water = self._high_water(coll)
        rows, more = query.page_versions(
            db,
            collection_pk=coll.pk,
            stix_id=object_id,
            flt=flt,
            after_version=position,
            limit=limit,
            extra=grant.predicates,
        )
        body: dict[str, Any] = {"more": more}
        if more:
            body["next"] = self._next_token(coll, endpoint, filters, rows[-1].version)
        if rows:
            body["versions"] = [r.version_text for r in rows]
            added = [r.date_added_us + shift for r in rows]
            headers = self._date_headers(min(added), max(added))
        else:
            headers = self._empty_headers(coll, grant, filters, None)
        return self._signed(body, "versions", None), headers


class _Ledger:
    """One page's ledger rows, written and committed by a thread of `_LEDGER_WRITERS` while the
    page is signed; `wait()` returns once they are committed, or raises what stopped them.

    With `hand_over` the request waits until the writer's rows are on their way to the database
    before it goes on: both threads need the interpreter for their Python steps, and a writer
    waiting behind the request's own got it only at the switch interval (5 ms). PostgreSQL's
    ledger takes longer than the signature, so it goes first. Without (SQLite, whose ledger is
    shorter than the signature), the writer runs while the page is signed: Ed25519 leaves the
    interpreter free (cryptography releases it while it signs).
    """

    def __init__(self, write: Callable[[Callable[[], None]], None], *, hand_over: bool = True) -> None:
        under_way = threading.Event()

        def run() -> None:
            try:
                write(under_way.set)
            finally:
                under_way.set()

        self._done = _LEDGER_WRITERS.submit(run)
        if hand_over:
            under_way.wait()

    def wait(self) -> None:
        self._done.result()


# Ledger writers kept between pages: starting a thread per page cost about a millisecond of the
# request's own interpreter time. Sized past the request threads (and the database pool) that
# can wait on them, so a page never queues behind another's ledger for want of a writer.
_LEDGER_WRITERS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="ledger")


def _write_policy(
    objects: list[Any], grant: WriteGrant | None, signature_problem: str | None
) -> tuple[list[Any], list[dict[str, str]]]:
    """Split a partner's envelope into what its agreement lets it write and what it does not."""
    if grant is None:  # internal staff
        return objects, []
    accepted, refused = [], []
    for obj in objects:
        decision = decide_write(grant, obj, signature_problem)
        if decision.allowed:
            accepted.append(obj)
        else:
            refused.append(ingest_service.status_detail(obj) | {"message": decision.reason})
    return accepted, refused
