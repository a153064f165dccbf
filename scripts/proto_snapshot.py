"""Schema evolution of the webhooks.v1 protos, checked against a committed snapshot.

Usage: python scripts/proto_snapshot.py [--check]   (``make proto-snapshot``)

``protos/webhooks/v1.snapshot.binpb`` is the descriptor set of the contract as
last recorded (no source info). tests/test_payload_evolution.py checks the
current protos (``gateway/descriptor.pb``, kept fresh by ``make check-gen``)
against it with :func:`breaking_changes`; this script records the current
protos as the new snapshot, and refuses to when that would break it.

The rules (what receivers and publishers built against an older version may
rely on):

- a message, enum, service or RPC is never removed;
- a field is never removed, renumbered, renamed or retyped (type, message or
  enum type, repeated or not), never loses ``optional`` (gaining it is wire-
  and JSON-compatible) and never becomes REQUIRED; a new field of an
  existing message is never REQUIRED;
- an enum value is never removed or renamed;
- an event type keeps its wire name and payload message.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = ROOT / "protos" / "webhooks" / "v1.snapshot.binpb"
CURRENT = ROOT / "gateway" / "descriptor.pb"
PACKAGE = "webhooks.v1"

FDP = descriptor_pb2.FieldDescriptorProto
_FIELD_BEHAVIOR: Any = field_behavior_pb2.field_behavior
FDS = descriptor_pb2.FileDescriptorSet


def _ours(fds: FDS) -> list[descriptor_pb2.FileDescriptorProto]:
    return [f for f in fds.file if f.package == PACKAGE]


def load(path: Path) -> FDS:
    return FDS.FromString(path.read_bytes())


def normalised(fds: FDS) -> FDS:
    """Only our files, without comments: what the snapshot stores."""
    out = FDS()
    for f in _ours(fds):
        copy = out.file.add()
        copy.CopyFrom(f)
        copy.ClearField("source_code_info")
    return out


def _messages(fds: FDS) -> dict[str, descriptor_pb2.DescriptorProto]:
    found: dict[str, descriptor_pb2.DescriptorProto] = {}

    def walk(m: descriptor_pb2.DescriptorProto, scope: str) -> None:
        name = f"{scope}.{m.name}"
        found[name] = m
        for nested in m.nested_type:
            walk(nested, name)

    for f in _ours(fds):
        for m in f.message_type:
            walk(m, f.package)
    return found


def _enums(fds: FDS) -> dict[str, descriptor_pb2.EnumDescriptorProto]:
    found: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
    for f in _ours(fds):
        for e in f.enum_type:
            found[f"{f.package}.{e.name}"] = e
    for name, m in _messages(fds).items():
        for e in m.enum_type:
            found[f"{name}.{e.name}"] = e
    return found


def _required(field: descriptor_pb2.FieldDescriptorProto) -> bool:
    behaviors: Any = field.options.Extensions[_FIELD_BEHAVIOR]
    return field_behavior_pb2.REQUIRED in behaviors


def _shape(field: descriptor_pb2.FieldDescriptorProto) -> tuple[object, ...]:
    return (field.name, field.type, field.type_name, field.label)


def breaking_changes(old: FDS, new: FDS) -> list[str]:
    """What ``new`` breaks of ``old``, one line each (empty: compatible)."""
    problems: list[str] = []
    old_msgs, new_msgs = _messages(old), _messages(new)
    for name, before in old_msgs.items():
        after = new_msgs.get(name)
        if after is None:
            problems.append(f"message {name} removed")
            continue
        now = {f.number: f for f in after.field}
        for field in before.field:
            current = now.pop(field.number, None)
            where = f"{name}.{field.name} (= {field.number})"
            if current is None:
                problems.append(f"field {where} removed (reserve it instead)")
            elif _shape(current) != _shape(field):
                problems.append(f"field {where} renamed or retyped")
            elif field.proto3_optional and not current.proto3_optional:
                problems.append(f"field {where} lost `optional` (its presence)")
            elif _required(current) and not _required(field):
                problems.append(f"field {where} became REQUIRED")
        for field in now.values():
            if _required(field):
                problems.append(f"new field {name}.{field.name} is REQUIRED (add optional fields)")
    old_enums, new_enums = _enums(old), _enums(new)
    for name, before_enum in old_enums.items():
        after_enum = new_enums.get(name)
        if after_enum is None:
            problems.append(f"enum {name} removed")
            continue
        values = {v.number: v for v in after_enum.value}
        for value in before_enum.value:
            current_value = values.get(value.number)
            if current_value is None:
                problems.append(f"enum value {name}.{value.name} removed")
            elif current_value.name != value.name:
                problems.append(f"enum value {name}.{value.name} renamed")
            elif current_value.options.SerializeToString(
                deterministic=True
            ) != value.options.SerializeToString(deterministic=True):
                problems.append(
                    f"enum value {name}.{value.name} changed its options "
                    "(an event type's wire name and payload are fixed)"
                )
    old_rpcs = {
        (s.name, m.name): (m.input_type, m.output_type)
        for f in _ours(old)
        for s in f.service
        for m in s.method
    }
    new_rpcs = {
        (s.name, m.name): (m.input_type, m.output_type)
        for f in _ours(new)
        for s in f.service
        for m in s.method
    }
    for key, types in old_rpcs.items():
        if key not in new_rpcs:
            problems.append(f"rpc {key[0]}.{key[1]} removed")
        elif new_rpcs[key] != types:
            problems.append(f"rpc {key[0]}.{key[1]} changed its request or response type")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report breaking changes")
    args = parser.parse_args()
    current = normalised(load(CURRENT))
    problems = breaking_changes(load(SNAPSHOT), current) if SNAPSHOT.exists() else []
    for problem in problems:
        print(f"breaking: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    if args.check:
        print("the protos are compatible with the snapshot")
        return
    SNAPSHOT.write_bytes(current.SerializeToString(deterministic=True))
    print(f"wrote {SNAPSHOT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
