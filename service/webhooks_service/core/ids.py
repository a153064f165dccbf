"""Random public ids: ``org_…``, ``key_…``, ``whc_…``.

Twenty lowercase hex characters (80 random bits) after the prefix: short
enough for the 32-character id columns, long enough never to collide, and
without ``_`` so that an API key ``whk_<id part>_<secret>`` splits cleanly.
"""

from __future__ import annotations

import re
import secrets

from webhooks_service.errors import FieldViolation, InvalidArgument


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


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
