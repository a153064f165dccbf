"""Python client for the webhooks service."""

from webhooks_client.dedupe import (
    DedupeStore,
    Deduplicator,
    InMemoryStore,
    Outcome,
    RedisStore,
    Reply,
)
from webhooks_client.receiver import (
    WebhookVerificationError,
    sign,
    signed_headers,
    verify,
)

__all__ = [
    "DedupeStore",
    "Deduplicator",
    "InMemoryStore",
    "Outcome",
    "RedisStore",
    "Reply",
    "WebhookVerificationError",
    "sign",
    "signed_headers",
    "verify",
]
