"""What the attempt log keeps of a response's headers, from curl's header lines."""

from __future__ import annotations

from webhooks_service.delivery.http import (
    MAX_RESPONSE_HEADERS,
    response_headers,
)


def test_the_final_response_after_an_interim_one_in_order() -> None:
    lines = [
        b"HTTP/1.1 100 Continue\r\n",
        b"X-Interim: 1\r\n",
        b"\r\n",
        b"HTTP/1.1 429 Too Many Requests\r\n",
        b"Retry-After: 7\r\n",
        b"X-Folded: a\r\n",
        b"  b\r\n",
        b"X-Nul: a\x00b\r\n",
        b"\r\n",
    ]
    kept, left_out, retry_after = response_headers(lines)
    assert kept == (("Retry-After", "7"), ("X-Folded", "a b"), ("X-Nul", "a\ufffdb"))
    assert (left_out, retry_after) == (False, "7")


def test_capped_in_count_and_retry_after_found_past_the_cap() -> None:
    many = [f"X-{i}: {i}\r\n".encode() for i in range(MAX_RESPONSE_HEADERS + 5)]
    lines = [b"HTTP/1.1 503 Service Unavailable\r\n", *many, b"retry-after: 30\r\n", b"\r\n"]
    kept, left_out, retry_after = response_headers(lines)
    assert len(kept) == MAX_RESPONSE_HEADERS and kept[0] == ("X-0", "0")
    assert (left_out, retry_after) == (True, "30")


def test_capped_in_bytes() -> None:
    lines = [b"HTTP/1.1 200 OK\r\n", b"X-A: " + b"a" * 5000 + b"\r\n", b"X-B: " + b"b" * 5000]
    kept, left_out, _ = response_headers(lines)
    assert [name for name, _ in kept] == ["X-A"] and left_out
