"""Schema evolution: the protos stay compatible with the committed snapshot
(protos/webhooks/v1.snapshot.binpb, recorded by `make proto-snapshot`), and the
check catches each kind of breaking change."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import proto_snapshot  # noqa: E402

FDS = descriptor_pb2.FileDescriptorSet


def current() -> FDS:
    return proto_snapshot.normalised(proto_snapshot.load(proto_snapshot.CURRENT))


def message(fds: FDS, name: str) -> descriptor_pb2.DescriptorProto:
    for f in fds.file:
        for m in f.message_type:
            if m.name == name:
                return m
    raise KeyError(name)


def test_the_protos_are_compatible_with_the_snapshot() -> None:
    assert proto_snapshot.SNAPSHOT.exists(), "run `make proto-snapshot`"
    problems = proto_snapshot.breaking_changes(
        proto_snapshot.load(proto_snapshot.SNAPSHOT), current()
    )
    assert not problems, "\n".join(problems)


def _renumber(fds: FDS) -> None:
    message(fds, "RewardClaimed").field[2].number = 99


def _retype(fds: FDS) -> None:
    message(fds, "RewardClaimed").field[2].type = descriptor_pb2.FieldDescriptorProto.TYPE_INT32


def _rename(fds: FDS) -> None:
    message(fds, "RewardClaimed").field[2].name = "point_count"


def _remove(fds: FDS) -> None:
    del message(fds, "RewardClaimed").field[3]


def _make_required(fds: FDS) -> None:
    field = message(fds, "RewardClaimed").field[3]  # community_id
    field.options.Extensions[field_behavior_pb2.field_behavior].append(  # type: ignore[index]
        field_behavior_pb2.REQUIRED
    )


def _add_required(fds: FDS) -> None:
    field = message(fds, "RewardClaimed").field.add(
        name="tenant", number=40, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING
    )
    field.options.Extensions[field_behavior_pb2.field_behavior].append(  # type: ignore[index]
        field_behavior_pb2.REQUIRED
    )


def _change_wire_name(fds: FDS) -> None:
    for f in fds.file:
        for e in f.enum_type:
            if e.name == "EventType":
                e.value[1].options.Clear()


def _drop_optional(fds: FDS) -> None:
    for field in message(fds, "PutWebhookConfigRequest").field:
        if field.name == "secret":
            field.proto3_optional = False


def _drop_message(fds: FDS) -> None:
    for f in fds.file:
        for i, m in enumerate(f.message_type):
            if m.name == "RewardExpired":
                del f.message_type[i]
                return


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (_renumber, "removed"),
        (_retype, "retyped"),
        (_rename, "renamed or retyped"),
        (_remove, "removed"),
        (_make_required, "became REQUIRED"),
        (_add_required, "is REQUIRED"),
        (_change_wire_name, "options"),
        (_drop_optional, "lost `optional`"),
        (_drop_message, "message webhooks.v1.RewardExpired removed"),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_breaking_changes_are_caught(change: Callable[[FDS], None], says: str) -> None:
    before, after = current(), current()
    change(after)
    problems = proto_snapshot.breaking_changes(before, after)
    assert any(says in p for p in problems), problems


def test_adding_an_optional_field_or_a_type_is_fine() -> None:
    before, after = current(), current()
    message(after, "RewardClaimed").field.add(
        name="campaign_id", number=40, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING
    )
    after.file[0].message_type.add(name="SomethingNew")
    assert proto_snapshot.breaking_changes(before, after) == []
