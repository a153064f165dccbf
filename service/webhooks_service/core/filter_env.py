"""The CEL environment of payload filters: one envelope message and one cel.Env per type.

A filter is compiled by cel-cpp (``cel-expr-python``, see docs/decisions.md,
issue 21) against one *envelope* message per catalog type
(``webhooks.filters.RewardClaimedEvent {id, type, occurred_at, data:
webhooks.v1.RewardClaimed}``, built here at import time in a descriptor pool
of its own), so the type checker knows every field: ``event.data.points >
100`` is an int64 comparison, ``event.data.pointz`` or ``points > 'a'`` is
a compile error. Checking (core/filter_check.py), the program caches
(core/filter_cache.py) and evaluation (core/filters.py) all compile here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import cel_expr_python.cel as cel
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from webhooks.v1 import payloads_pb2
from webhooks_service.core import catalog

__all__ = ["TypeEnv", "compile_program", "type_env"]

_PACKAGE = "webhooks.filters"


def _build_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(fd: Any) -> None:
        if fd.name in added:
            return
        for dep in fd.dependencies:
            add(dep)
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        pool.Add(proto)
        added.add(fd.name)

    add(payloads_pb2.DESCRIPTOR)
    envelopes = descriptor_pb2.FileDescriptorProto(
        name="webhooks_service/filters.proto",
        package=_PACKAGE,
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto", payloads_pb2.DESCRIPTOR.name],
    )
    fdp = descriptor_pb2.FieldDescriptorProto
    for payload in sorted({t.payload for t in catalog.TYPES}):
        message = envelopes.message_type.add(name=_envelope_name(payload).rsplit(".", 1)[1])
        for number, (name, kind, type_name) in enumerate(
            (
                ("id", fdp.TYPE_STRING, ""),
                ("type", fdp.TYPE_STRING, ""),
                ("occurred_at", fdp.TYPE_MESSAGE, ".google.protobuf.Timestamp"),
                ("data", fdp.TYPE_MESSAGE, "." + payload),
            ),
            start=1,
        ):
            field = message.field.add(name=name, number=number, type=kind, label=fdp.LABEL_OPTIONAL)
            if type_name:
                field.type_name = type_name
    pool.Add(envelopes)
    return pool


def _envelope_name(payload: str) -> str:
    return f"{_PACKAGE}.{payload.rsplit('.', 1)[1]}Event"


_POOL = _build_pool()


@dataclass(frozen=True, slots=True)
class TypeEnv:
    env: Any  # cel.Env
    envelope: type[Message]
    payload: type[Message]


@cache
def type_env(event_type: str) -> TypeEnv | None:
    info = catalog.info(event_type)
    if info is None:
        return None
    name = _envelope_name(info.payload)
    env = cel.NewEnv(_POOL, variables={"event": cel.Type(name)})
    return TypeEnv(
        env,
        message_factory.GetMessageClass(_POOL.FindMessageTypeByName(name)),
        message_factory.GetMessageClass(_POOL.FindMessageTypeByName(info.payload)),
    )


def compile_program(expression: str, event_type: str) -> Any:
    """The program for one type; raises RuntimeError (cel-cpp's message) or TypeError."""
    te = type_env(event_type)
    if te is None:
        raise RuntimeError(f"unknown event type {event_type}")
    program = te.env.compile(expression)
    returns = program.return_type()
    if returns != cel.Type.BOOL and returns != cel.Type.DYN:
        raise TypeError(f"must be a boolean expression; this one is of type {returns.name()}")
    return program
