"""Python client for the webhooks service.

The clients return :mod:`webhooks_client.models`: frozen dataclasses with
Python enums (:class:`DeliveryOutcome`, :class:`DeliveryStatus`) and aware
``datetime`` values, never raw protobuf messages.
"""

from webhooks_client._aio import AsyncAdminClient, AsyncPublisherClient
from webhooks_client._client import AdminClient, PublisherClient, make_publish_request
from webhooks_client._errors import (
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    UnauthenticatedError,
    UnavailableError,
    WebhooksClientError,
    from_rpc_error,
)
from webhooks_client.dedupe import (
    DedupeStore,
    Deduplicator,
    InMemoryStore,
    Outcome,
    RedisStore,
    Reply,
)
from webhooks_client.events import (
    EventParseError,
    event_type_of,
    event_types,
    parse_event,
    payload_class,
)
from webhooks_client.models import (
    DeleteWebhookConfigResult,
    Delivery,
    DeliveryLog,
    DeliveryLogPage,
    DeliveryOutcome,
    DeliveryStatus,
    EndpointHealth,
    EventTypeDefinition,
    PortalSession,
    PublishResult,
    PutWebhookConfigResult,
    RetryDeliveryResult,
    RotateWebhookSecretResult,
    WebhookConfig,
)
from webhooks_client.receiver import (
    KeySet,
    WebhookVerificationError,
    sign,
    signed_headers,
    verify,
)

__all__ = [
    "AdminClient",
    "AlreadyExistsError",
    "AsyncAdminClient",
    "AsyncPublisherClient",
    "DeadlineExceededError",
    "DedupeStore",
    "Deduplicator",
    "DeleteWebhookConfigResult",
    "Delivery",
    "DeliveryLog",
    "DeliveryLogPage",
    "DeliveryOutcome",
    "DeliveryStatus",
    "EndpointHealth",
    "EventParseError",
    "EventTypeDefinition",
    "FailedPreconditionError",
    "FieldViolation",
    "InMemoryStore",
    "InternalError",
    "InvalidArgumentError",
    "KeySet",
    "NotFoundError",
    "Outcome",
    "PermissionDeniedError",
    "PortalSession",
    "PublishResult",
    "PublisherClient",
    "PutWebhookConfigResult",
    "RateLimitedError",
    "RedisStore",
    "Reply",
    "RetryDeliveryResult",
    "RotateWebhookSecretResult",
    "UnauthenticatedError",
    "UnavailableError",
    "WebhookConfig",
    "WebhookVerificationError",
    "WebhooksClientError",
    "event_type_of",
    "event_types",
    "from_rpc_error",
    "make_publish_request",
    "parse_event",
    "payload_class",
    "sign",
    "signed_headers",
    "verify",
]
