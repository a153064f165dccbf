"""The one page-size rule of every list RPC (ListWebhookConfigs, ListDeliveryLogs).

``page_size`` is 0 to :data:`MAX_PAGE_SIZE`; 0 (or absent) means the list's
default. Anything else is INVALID_ARGUMENT with a field violation on
``page_size`` saying the range: never silently clamped, so a client asking
for 1,000 learns that it gets at most 500. The OpenAPI description
(scripts/protoc_gen_openapi.py) reads its ``maximum`` from here.
"""

from __future__ import annotations

from webhooks_service.errors import FieldViolation, InvalidArgument

MAX_PAGE_SIZE = 500


def page_size_problem(requested: int, default: int) -> FieldViolation | None:
    if 0 <= requested <= MAX_PAGE_SIZE:
        return None
    return FieldViolation(
        "page_size",
        f"must be between 0 and {MAX_PAGE_SIZE} (0 or absent: the default, {default}); "
        f"got {requested}",
    )


def page_size(requested: int, default: int) -> int:
    """The page size to use; INVALID_ARGUMENT outside 0..MAX_PAGE_SIZE."""
    problem = page_size_problem(requested, default)
    if problem is not None:
        raise InvalidArgument(f"invalid page_size: {problem.description}", [problem])
    return requested or default
