"""What each ``webhooks.v1`` method needs: its scope, its largest request, and
whether its response carries a secret.

The one table :data:`METHOD_SCOPES` names every protected method; a
``webhooks.v1`` method missing from it is refused (``api/auth.py``), so a new
RPC cannot ship unprotected by accident.
"""

from __future__ import annotations

from webhooks_service.core import keys

__all__ = [
    "ADMIN_MAX_BYTES",
    "METHOD_MAX_BYTES",
    "METHOD_SCOPES",
    "NO_STORE_METHODS",
    "PUBLIC_MAX_BYTES",
    "PUBLIC_METHODS",
    "PUBLIC_SERVICES",
    "PUBLISH_MAX_BYTES",
]

METHOD_SCOPES: dict[str, str] = {
    "/webhooks.v1.WebhookAdmin/ListWebhookConfigs": keys.SCOPE_WEBHOOKS_READ,
    "/webhooks.v1.WebhookAdmin/ListDeliveryLogs": keys.SCOPE_WEBHOOKS_READ,
    "/webhooks.v1.WebhookAdmin/ListEventTypes": keys.SCOPE_WEBHOOKS_READ,
    "/webhooks.v1.WebhookAdmin/TestWebhookFilter": keys.SCOPE_WEBHOOKS_READ,
    "/webhooks.v1.WebhookAdmin/GetEvent": keys.SCOPE_WEBHOOKS_READ,
    "/webhooks.v1.WebhookAdmin/GetEndpointStats": keys.SCOPE_WEBHOOKS_READ,
    "/webhooks.v1.WebhookAdmin/PutWebhookConfig": keys.SCOPE_WEBHOOKS_WRITE,
    "/webhooks.v1.WebhookAdmin/DeleteWebhookConfig": keys.SCOPE_WEBHOOKS_WRITE,
    "/webhooks.v1.WebhookAdmin/RetryDelivery": keys.SCOPE_WEBHOOKS_WRITE,
    "/webhooks.v1.WebhookAdmin/ReplayDeliveries": keys.SCOPE_WEBHOOKS_WRITE,
    "/webhooks.v1.WebhookAdmin/SendTestEvent": keys.SCOPE_WEBHOOKS_WRITE,
    "/webhooks.v1.WebhookAdmin/RotateWebhookSecret": keys.SCOPE_WEBHOOKS_WRITE,
    "/webhooks.v1.WebhookAdmin/CreatePortalSession": keys.SCOPE_WEBHOOKS_WRITE,
    "/webhooks.v1.WebhookAdmin/RevokePortalSession": keys.SCOPE_WEBHOOKS_WRITE,
    "/webhooks.v1.WebhookAdmin/VerifyWebhookEndpoint": keys.SCOPE_WEBHOOKS_WRITE,
    "/webhooks.v1.EventPublisher/PublishEvent": keys.SCOPE_EVENTS_PUBLISH,
    "/webhooks.v1.EventPublisher/PublishEvents": keys.SCOPE_EVENTS_PUBLISH,
}
"""Every protected method and the scope it needs (one scope per method)."""

NO_STORE_METHODS: frozenset[str] = frozenset(
    {
        "/webhooks.v1.WebhookAdmin/PutWebhookConfig",  # the new config's signing secret
        "/webhooks.v1.WebhookAdmin/RotateWebhookSecret",  # the new secret
        "/webhooks.v1.WebhookAdmin/CreatePortalSession",  # the session token
    }
)
"""Methods whose responses may carry a secret or a token: they are answered with
``cache-control: no-store`` (initial metadata; an HTTP header through the gateway)."""

PUBLIC_SERVICES: tuple[str, ...] = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
"""Method prefixes callable without a key."""

PUBLIC_METHODS: frozenset[str] = frozenset({"/webhooks.v1.WebhookAdmin/GetSigningKeys"})
"""The WebhookAdmin methods callable without a key: only the published key set
(public keys, cached and rate limited, ``api/signing.py``). Their request
messages are capped at :data:`PUBLIC_MAX_BYTES`."""
PUBLIC_MAX_BYTES = 4096

ADMIN_MAX_BYTES = 1024 * 1024
PUBLISH_MAX_BYTES = 16 * 1024 * 1024  # the server's grpc.max_receive_message_length
METHOD_MAX_BYTES: dict[str, int] = {
    method: PUBLISH_MAX_BYTES if scope == keys.SCOPE_EVENTS_PUBLISH else ADMIN_MAX_BYTES
    for method, scope in METHOD_SCOPES.items()
}
"""Largest request message per method, enforced once the caller is authenticated."""
