"""Retries without double counting: an ``Idempotency-Key`` makes a send happen at most once.

A key (the ``Idempotency-Key`` header of ``POST /events`` and ``/events/purchase``, or a batch
item's ``idempotency_key``) is claimed for the key's site by inserting a row into
``IdempotencyKey`` in the transaction that stores the event; the unique (site, key) constraint
lets exactly one of any number of concurrent duplicates, in any process, commit. The others
store nothing and answer the first one's event id (``Replayed``), or, when their body differs
from the first one's, ``KEY_REUSED``. A key claimed more than ``KEY_LIFETIME`` ago no longer
counts: a new claim takes its row over, and ``forget_expired_keys`` deletes such rows by their
time index.

- Single events (the group writer's rows): on PostgreSQL one statement claims the keys, each
  taking an event id, and inserts the events of the keys it won under those ids
  (``storage.insert_claimed``); on SQLite one transaction inserts the events, claims their keys
  and deletes the events whose key was held.
- A batch stores its items, claims their keys with the new ids and deletes the items whose key
  was held, in its one transaction: nobody ever sees those.
"""

import hashlib
import json
import re
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from . import storage
from .models import Event, IdempotencyKey

HEADER = "Idempotency-Key"
BATCH_FIELD = "idempotency_key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
KEY_REUSED_MESSAGE = "This Idempotency-Key was already used with a different request body"
KEY_LIFETIME = timedelta(hours=24)
MAX_KEY = 200
_KEY = re.compile(rf"[\x20-\x7e]{{1,{MAX_KEY}}}")
# Where a row carries its claim through the group writer; taken off before the row is stored.
CLAIM = "idempotency"


def parse_key(raw, *, name: str = HEADER) -> str | None:
    """The key as sent (1-200 printable ASCII characters, not only spaces), None when absent;
    ValueError naming ``name`` otherwise."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not _KEY.fullmatch(raw) or not raw.strip():
        raise ValueError(f"{name} must be 1 to {MAX_KEY} printable ASCII characters")
    return raw


@lru_cache(maxsize=4)
def _digest_key(secret: str) -> bytes:
    return hashlib.sha256(b"infinity-idempotency:" + secret.encode()).digest()


def body_hash(kind: str, data: dict) -> str:
    """A keyed digest of a validated body: equal for the same request sent again, whatever its
    key order or spacing, and nothing a reader of the table can reverse (it holds visitor ids)."""
    text = json.dumps([kind, data], sort_keys=True, default=str, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16, key=_digest_key(settings.SECRET_KEY)).hexdigest()


@dataclass(frozen=True, slots=True)
class Claim:
    site_id: int
    key: str
    body_hash: str

    @property
    def ident(self) -> tuple[int, str]:
        return (self.site_id, self.key)


@dataclass(frozen=True, slots=True)
class Replayed:
    """The outcome of a send whose key had stored ``event_id`` with the same body."""

    event_id: int


class KeyReused(Exception):
    """The key was claimed within the last day by a request with a different body."""


def _outcome(claim: Claim, held: tuple[str, int]):
    body, event_id = held
    return Replayed(event_id) if body == claim.body_hash else KeyReused(KEY_REUSED_MESSAGE)


def _held(idents) -> dict[tuple[int, str], tuple[str, int]]:
    """The committed claims of (site id, key) pairs: {(site, key): (body hash, event id)}."""
    match = Q()
    for site_id, key in idents:
        match |= Q(site_id=site_id, key=key)
    rows = IdempotencyKey.objects.filter(match).values_list("site_id", "key", "body_hash", "event_id")
    found = {(site_id, key): (body, event_id) for site_id, key, body, event_id in rows}
    if len(found) != len(set(idents)):  # a row deleted as expired between our claim and this read
        raise RuntimeError("an idempotency key expired while it was being claimed; try again")
    return found


def _first_claims(claims: list[Claim | None]) -> tuple[list[int], dict[int, int]]:
    """(indexes of the rows to store: unkeyed, or the first with their key; {index of a later
    row with the same key: index of that first row})."""
    first: dict[tuple[int, str], int] = {}
    leaders, followers = [], {}
    for index, claim in enumerate(claims):
        if claim is not None and claim.ident in first:
            followers[index] = first[claim.ident]
            continue
        if claim is not None:
            first[claim.ident] = index
        leaders.append(index)
    return leaders, followers


def _resolve(claims, leaders, followers, stored: dict[int, int], held: dict) -> list:
    """Each row's outcome: its new event id, ``Replayed`` or ``KeyReused``."""
    out: list = [None] * len(claims)
    for index in leaders:
        out[index] = stored[index] if index in stored else _outcome(claims[index], held[claims[index].ident])
    for index, leader in followers.items():
        if leader in stored:
            out[index] = _outcome(claims[index], (claims[leader].body_hash, stored[leader]))
        else:
            out[index] = _outcome(claims[index], held[claims[index].ident])
    return out


def store_claimed_rows(rows: list[dict], insert) -> list:
    """The group writer's store for rows some of which carry a ``CLAIM``: the unkeyed ones with
    ``insert``, the others only if their key is free (``storage.insert_claimed``), all in one
    transaction; each row's outcome."""
    claims = [row.get(CLAIM) for row in rows]
    leaders, followers = _first_claims(claims)
    plain = [i for i in leaders if claims[i] is None]
    keyed = sorted((i for i in leaders if claims[i] is not None), key=lambda i: claims[i].ident)
    now = timezone.now()
    # One statement needs no transaction of its own; two must commit together, or the group
    # writer's retry of a failed group would store the first part again.
    with transaction.atomic() if plain else nullcontext():
        stored = dict(zip(plain, insert([_without_claim(rows[i]) for i in plain]) if plain else [], strict=True))
        won = storage.insert_claimed([_without_claim(rows[i]) for i in keyed],
                                     [(*claims[i].ident, claims[i].body_hash) for i in keyed],
                                     now=now, expired_before=now - KEY_LIFETIME)  # fmt: skip
    stored.update((i, won[claims[i].ident]) for i in keyed if claims[i].ident in won)
    lost = [claims[i].ident for i in keyed if claims[i].ident not in won]
    return _resolve(claims, leaders, followers, stored, _held(lost) if lost else {})


def _without_claim(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != CLAIM}


def store_batch_rows(rows: list[dict], claims: list[Claim | None], store) -> list:
    """Inside the batch's transaction: ``store(rows)`` the items that are unkeyed or the first
    with their key (→ their event ids), claim those keys with those ids, and delete again the
    events whose key was held; each item's outcome."""
    leaders, followers = _first_claims(claims)
    stored = dict(zip(leaders, store([rows[i] for i in leaders]), strict=True))
    keyed = sorted((i for i in leaders if claims[i] is not None), key=lambda i: claims[i].ident)
    now = timezone.now()
    won = storage.claim_keys([(*claims[i].ident, claims[i].body_hash, stored[i]) for i in keyed],
                             now=now, expired_before=now - KEY_LIFETIME) if keyed else set()  # fmt: skip
    lost = [i for i in keyed if claims[i].ident not in won]
    if lost:
        Event.objects.filter(pk__in=[stored.pop(i) for i in lost]).delete()
    held = _held([claims[i].ident for i in lost]) if lost else {}
    return _resolve(claims, leaders, followers, stored, held)


def forget_expired_keys(*, now=None) -> int:
    """Delete the keys claimed more than ``KEY_LIFETIME`` ago (by their time index); how many."""
    cutoff = (now or timezone.now()) - KEY_LIFETIME
    return IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()[0]
