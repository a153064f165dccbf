"""Envoy's own replies in the API's voice: the local-reply mappers.

Every error the gateway answers itself (transcoder 400s, 404, 413, 503 …) gets
the API's envelope ``{"code": <google.rpc.Code>, "message": …, "details": []}``
with the HTTP status that fits. Three kinds of replies that would otherwise
speak Envoy's or protobuf's language come first: the request check's own 400s
(already the full envelope, passed through), native gRPC sent to the REST port
(a gRPC status naming where gRPC is served), and requests Envoy's HTTP codec
refuses (e.g. a placeholder "whc_…" pasted raw into a URL).
"""

from __future__ import annotations

from typing import Any

__all__ = ["GRPC_CODE_FOR_HTTP_STATUS", "local_reply_config"]

# google.rpc.Code for Envoy's own error replies, so that they read like the
# API's errors.
GRPC_CODE_FOR_HTTP_STATUS: dict[int, int] = {
    400: 3,  # INVALID_ARGUMENT: malformed JSON, wrong field type, unknown query parameter
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    404: 5,  # NOT_FOUND: no REST endpoint at this path/method
    405: 12,  # UNIMPLEMENTED
    408: 4,  # DEADLINE_EXCEEDED: the client was too slow sending the request
    409: 10,  # ABORTED
    413: 8,  # RESOURCE_EXHAUSTED: request body over the gateway's limit
    429: 8,  # RESOURCE_EXHAUSTED
    431: 8,  # RESOURCE_EXHAUSTED: request headers too large
    500: 13,  # INTERNAL
    501: 12,  # UNIMPLEMENTED
    502: 14,  # UNAVAILABLE
    503: 14,  # UNAVAILABLE: no healthy upstream, connection refused
    504: 4,  # DEADLINE_EXCEEDED: upstream timeout
}
_UNKNOWN = 2  # google.rpc.Code.UNKNOWN, for any other error status

# The dynamic metadata where the request check marks its own replies
# (refuse() in gateway/request_check.lua sets webhooks.gateway.api_error = "1");
# the OpenAPI route keeps its server address in the same namespace (routes.py).
METADATA_NAMESPACE = "webhooks.gateway"
API_ERROR_KEY = "api_error"

_NOT_HTTP = (
    "the request is not valid HTTP (%RESPONSE_CODE_DETAILS%); a URL may hold only "
    "ASCII, so percent-encode other characters; an id such as whc_… or dlv_… "
    "copied from the documentation is a placeholder to replace with a real one"
)
_AS_IS = {"text_format_source": {"inline_string": "%LOCAL_REPLY_BODY%"}}


def _envelope(code: int, message: str = "%LOCAL_REPLY_BODY%") -> dict[str, Any]:
    return {"json_format": {"code": code, "message": message, "details": []}}


def _status(op: str, value: int) -> dict[str, Any]:
    return {
        "status_code_filter": {
            "comparison": {
                "op": op,
                "value": {"default_value": value, "runtime_key": "gateway.local_reply.unused"},
            }
        }
    }


def _mapper(filter_: dict[str, Any], body_format: dict[str, Any]) -> dict[str, Any]:
    return {"filter": filter_, "body_format_override": body_format}


def _api_voice_mappers() -> list[dict[str, Any]]:
    """The mappers that come before the per-status envelope mappers."""
    # The request check's replies: the body is the finished envelope.
    request_check = _mapper(
        {
            "metadata_filter": {
                "matcher": {
                    "filter": METADATA_NAMESPACE,
                    "path": [{"key": API_ERROR_KEY}],
                    "value": {"string_match": {"exact": "1"}},
                },
                "match_if_key_not_found": False,
            }
        },
        {**_AS_IS, "content_type": "application/json"},
    )
    # Native gRPC (not transcoded): keep the text, Envoy makes it grpc-message.
    native_grpc = _mapper(
        {
            "and_filter": {
                "filters": [
                    {
                        "header_filter": {
                            "header": {
                                "name": "content-type",
                                "string_match": {"prefix": "application/grpc"},
                            }
                        }
                    },
                    {
                        "header_filter": {
                            "header": {
                                "name": "x-envoy-original-method",
                                "present_match": True,
                                "invert_match": True,
                            }
                        }
                    },
                ]
            }
        },
        dict(_AS_IS),
    )
    # Refused by Envoy's HTTP codec before any header was read: not valid HTTP.
    not_http = _mapper(
        {
            "header_filter": {
                "header": {"name": ":method", "present_match": True, "invert_match": True}
            }
        },
        _envelope(3, _NOT_HTTP),
    )
    return [request_check, native_grpc, not_http]


def local_reply_config() -> dict[str, Any]:
    """One mapper per error status, then a catch-all for any other status >= 400.

    Local replies include those to requests the transcoder has already turned
    into gRPC (e.g. 503 when no upstream answers): Envoy sends them as plain
    HTTP local replies, so the same mappers give them the envelope. Oversized
    headers are refused by the codec before the method is read, so 431 comes
    before the "not valid HTTP" mapper (it is in the table again, unreached).
    """
    mappers = [_mapper(_status("EQ", 431), _envelope(GRPC_CODE_FOR_HTTP_STATUS[431]))]
    mappers += _api_voice_mappers()
    mappers += [
        _mapper(_status("EQ", status), _envelope(code))
        for status, code in GRPC_CODE_FOR_HTTP_STATUS.items()
    ]
    mappers.append(_mapper(_status("GE", 400), _envelope(_UNKNOWN)))
    return {"mappers": mappers}
