"""The attempt log's header lists are json.dumps's bytes, without json.dumps per attempt."""

from __future__ import annotations

import json

from webhooks_service.core.endpoint_headers import shown_headers
from webhooks_service.delivery.attempt import json_pairs, logged_headers
from webhooks_service.delivery.http import SESSION_HEADERS

AWKWARD = {
    "webhook-id": 'evt_é"\\\x00',
    "webhook-signature": "v1,abcdefghijklmnopqrstuvwxyz0123 v1,ZYXWVUTSRQPONMLKJIHGFEDCBA9876",
    "X-Api-Key": "sekrit",
    "x-text": "😀\n\t\u2028\x7f",
}


def _dumps(pairs: object) -> str:
    return json.dumps(pairs, separators=(",", ":"), ensure_ascii=False)


def test_the_request_headers_as_json_dumps_shows_them() -> None:
    for headers in ({}, {"webhook-id": "evt_1"}, AWKWARD):
        assert logged_headers(headers) == _dumps([*SESSION_HEADERS, *shown_headers(headers)])


def test_pairs_as_json_dumps_writes_them() -> None:
    for pairs in ((), (("a", "b"),), tuple(AWKWARD.items())):
        assert json_pairs(pairs) == _dumps(pairs)
        assert json.loads(json_pairs(pairs)) == [list(p) for p in pairs]
