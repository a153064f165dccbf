"""The event catalog comes from the proto descriptor and matches the brief."""

from __future__ import annotations

import pytest

from webhooks.v1 import events_pb2
from webhooks_service.core import catalog

BRIEF = {
    "user": ["profile_created", "authenticated", "community_joined", "opted_in", "opted_out"],
    "action": ["completed", "hint_revealed", "repeatable_milestone"],
    "challenge": ["started", "completed", "recap_generated"],
    "reward": ["distributed", "claimed", "redeemed", "expired"],
    "achievement": ["unlocked", "tier_progressed", "streak_milestone"],
    "referral": ["clicked", "converted", "referrer_rewarded", "referee_rewarded"],
    # brief §2a: the service's own operational events
    "webhook": ["endpoint_disabled", "delivery_failed"],
}


def test_catalog_is_the_briefs_six_categories_and_the_operational_one() -> None:
    assert catalog.categories() == tuple(BRIEF)
    assert catalog.all_types() == tuple(f"{c}.{n}" for c, names in BRIEF.items() for n in names)
    operational = {"webhook.endpoint_disabled", "webhook.delivery_failed"}
    assert set(catalog.OPERATIONAL_TYPES) == operational
    assert tuple(t for t in catalog.all_types() if t not in operational) == catalog.PUBLISHABLE


def test_operational_types_are_not_publishable_and_not_in_the_wildcard() -> None:
    for t in catalog.OPERATIONAL_TYPES:
        assert catalog.is_known_type(t) and not catalog.is_publishable(t)
        assert not catalog.matches("*", t)
        assert catalog.matches("webhook.*", t) and catalog.matches(t, t)
        assert catalog.is_valid_pattern(t)
    assert catalog.is_publishable("reward.claimed")
    assert catalog.is_valid_pattern("webhook.*")
    assert not catalog.is_valid_pattern("webhook.ping")  # reserved, not subscribable


def test_catalog_is_read_from_the_enum() -> None:
    enum = events_pb2.DESCRIPTOR.enum_types_by_name["EventType"]
    assert len(catalog.TYPES) == len(enum.values) - 1  # minus UNSPECIFIED
    # webhook.ping has a payload but is no subscribable type
    assert catalog.info("webhook.ping") is not None
    assert not catalog.is_known_type("webhook.ping")
    assert not catalog.is_valid_pattern("webhook.ping")


def test_every_type_has_its_own_payload_message_named_after_it() -> None:
    """The naming rule that goes with the `payload` option: reward.claimed ->
    webhooks.v1.RewardClaimed, one message per type."""
    for t in catalog.TYPES:
        camel = "".join(part.capitalize() for part in t.name.replace(".", "_").split("_"))
        assert t.payload == f"webhooks.v1.{camel}", t
        assert catalog.for_payload(t.payload) is t


def test_known_types() -> None:
    assert catalog.is_known_type("reward.claimed")
    assert not catalog.is_known_type("reward.*")
    assert not catalog.is_known_type("*")
    assert not catalog.is_known_type("reward.claimed ")
    assert not catalog.is_known_type("EVENT_TYPE_REWARD_CLAIMED")


@pytest.mark.parametrize(
    ("pattern", "valid"),
    [
        ("*", True),
        ("reward.*", True),
        ("referral.referee_rewarded", True),
        ("nosuch.*", False),
        ("reward", False),
        ("reward.", False),
        ("*.claimed", False),
        ("reward.**", False),
        ("", False),
    ],
)
def test_patterns(pattern: str, valid: bool) -> None:
    assert catalog.is_valid_pattern(pattern) is valid


@pytest.mark.parametrize(
    ("pattern", "event_type", "expected"),
    [
        ("*", "user.opted_in", True),
        ("reward.*", "reward.claimed", True),
        ("reward.*", "referral.clicked", False),
        ("user.*", "user.opted_out", True),
        ("user.*", "users.x", False),
        ("reward.claimed", "reward.claimed", True),
        ("reward.claimed", "reward.redeemed", False),
    ],
)
def test_matches(pattern: str, event_type: str, expected: bool) -> None:
    assert catalog.matches(pattern, event_type) is expected


def test_matches_any() -> None:
    assert catalog.matches_any(["user.authenticated", "reward.*"], "reward.expired")
    assert not catalog.matches_any(["user.authenticated"], "reward.expired")
    assert not catalog.matches_any([], "reward.expired")
