"""Public ids.

Random ids ``org_…``, ``key_…``, ``whc_…``: twenty lowercase hex characters
(80 random bits) after the prefix: short enough for the 32-character id
columns, long enough never to collide, and without ``_`` so that an API key
``whk_<id part>_<secret part>`` splits cleanly.

Delivery and attempt ids ``dlv_…`` / ``att_…`` are the integer keys of those
rows under a keyed permutation (:class:`PublicIds`): a 4-round Feistel
network over 64 bits (BLAKE2b keyed per round as the round function), printed
as 16 hex characters. Sequential keys come out unrelated, so an id tells a
tenant nothing about how many deliveries other organisations made between two
of theirs, and without the key (``core/server_keys.py``) nobody can compute
the id of a neighbouring row. They are encoded and decoded at the API
boundary only; storage and the worker use the integers.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from webhooks_service.errors import FieldViolation, InvalidArgument

DELIVERY_PREFIX = "dlv"
ATTEMPT_PREFIX = "att"
_MASK32 = 0xFFFFFFFF
_MAX_KEY = 2**63 - 1  # BIGINT
_PUBLIC = re.compile(r"[0-9a-f]{16}")
_ROUNDS = 4


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


class _Permutation:
    """A keyed permutation of 64-bit integers (balanced Feistel network)."""

    def __init__(self, key: bytes) -> None:
        self._round_keys = [
            hashlib.blake2b(key + bytes([i]), digest_size=32).digest() for i in range(_ROUNDS)
        ]

    def _f(self, i: int, half: int) -> int:
        digest = hashlib.blake2b(
            half.to_bytes(4, "big"), key=self._round_keys[i], digest_size=4
        ).digest()
        return int.from_bytes(digest, "big")

    def forward(self, value: int) -> int:
        left, right = value >> 32, value & _MASK32
        for i in range(_ROUNDS):
            left, right = right, left ^ self._f(i, right)
        return (left << 32) | right

    def backward(self, value: int) -> int:
        left, right = value >> 32, value & _MASK32
        for i in reversed(range(_ROUNDS)):
            left, right = right ^ self._f(i, left), left
        return (left << 32) | right


class PublicIds:
    """Opaque ``dlv_…`` / ``att_…`` ids for integer keys, and back."""

    def __init__(self, key: bytes) -> None:
        self._delivery = _Permutation(key + b"delivery")
        self._attempt = _Permutation(key + b"attempt")

    def delivery(self, pk: int) -> str:
        return f"{DELIVERY_PREFIX}_{self._delivery.forward(pk):016x}"

    def attempt(self, pk: int) -> str:
        return f"{ATTEMPT_PREFIX}_{self._attempt.forward(pk):016x}"

    def parse_delivery(self, public: str) -> int | None:
        """The key behind ``dlv_…``; None when it is not one this service could issue."""
        return self._parse(public, DELIVERY_PREFIX, self._delivery)

    @staticmethod
    def _parse(public: str, prefix: str, perm: _Permutation) -> int | None:
        head, sep, body = public.partition("_")
        if head != prefix or not sep or not _PUBLIC.fullmatch(body):
            return None
        pk = perm.backward(int(body, 16))
        return pk if 1 <= pk <= _MAX_KEY else None


# --- what an id looks like, the one rule for ids in requests ---------------
#
# Every id a request carries, in a path (``/webhooks/configs/{config_id}:test``)
# or as a list filter (``?config_id=``), is checked for its shape first: a
# malformed one is INVALID_ARGUMENT naming the field and the expected shape.
# A well-formed id that matches nothing is NOT_FOUND where it names the
# resource acted on, and an empty page where it only filters a list.

CONFIG_ID = re.compile(r"whc_[A-Za-z0-9]{1,60}")
# Event ids are chosen by the publisher (webhooks.v1.Event.id).
EVENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_PLACEHOLDER = ("…", "...", "<", ">")


def id_problem(value: str, pattern: re.Pattern[str], shape: str) -> str | None:
    """Why ``value`` is not an id of ``shape`` (e.g. "whc_…"); None when it is."""
    if pattern.fullmatch(value):
        return None
    shown = repr(value[:64])
    if any(mark in value for mark in _PLACEHOLDER):
        return (
            f"{shown} is the documentation's placeholder, not an id: "
            f"put a real one ({shape}) in its place"
        )
    return f"{shown} is not a well-formed id: expected {shape}"


def check_config_id(value: str, field: str = "config_id", *, required: bool = True) -> None:
    """INVALID_ARGUMENT unless ``value`` looks like a configuration id (empty:
    allowed only when not ``required``)."""
    if not value:
        if required:
            raise InvalidArgument(
                f"invalid {field}", [FieldViolation(field, "required: the configuration id, whc_…")]
            )
        return
    problem = id_problem(value, CONFIG_ID, "whc_ followed by letters and digits, e.g. whc_3f2a…")
    if problem:
        raise InvalidArgument(f"invalid {field}", [FieldViolation(field, problem)])


def event_id_problem(value: str) -> str | None:
    return id_problem(value, EVENT_ID, "1 to 128 characters of A-Z a-z 0-9 _ . : -")
