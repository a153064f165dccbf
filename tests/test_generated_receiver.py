"""A receiver generated from the OpenAPI description by a real code generator
(datamodel-code-generator, Pydantic v2 models from the `webhooks` section's
schemas) parses real deliveries of every event type."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.delivery_env import delivery_env
from tests.support.payloads import example
from webhooks_service.core import catalog

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def generate_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    out = tmp_path / "receiver_models.py"
    subprocess.run(
        [
            str(Path(sys.executable).parent / "datamodel-codegen"),
            "--input",
            str(ROOT / "gateway" / "openapi.json"),
            "--input-file-type",
            "openapi",
            "--output-model-type",
            "pydantic_v2.BaseModel",
            "--target-python-version",
            "3.11",
            "--output",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    spec = importlib.util.spec_from_file_location("receiver_models", out)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # pydantic resolves the annotations through sys.modules
    monkeypatch.setitem(sys.modules, "receiver_models", module)
    spec.loader.exec_module(module)
    return module


def test_generated_models_parse_real_deliveries(
    tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = generate_models(tmp_path, monkeypatch)
    db = tmp_path / "webhooks.db"
    shutil.copyfile(sqlite_template, db)
    with delivery_env(f"sqlite:///{db}", {}) as env:
        env.config("/gen", types=["*"])
        for event_type in catalog.PUBLISHABLE:
            env.publisher.publish_event(env.org_id, event_type, example(event_type), id=event_type)
        received = env.rx.wait_for(len(catalog.PUBLISHABLE), "/gen")
    for got in received:
        event_type = json.loads(got.body)["type"]
        name = catalog.info(event_type).payload.rsplit(".", 1)[-1]  # type: ignore[union-attr]
        model = getattr(models, f"{name}Event")
        parsed = model.model_validate_json(got.body)
        assert parsed.type == event_type
        assert parsed.data.model_dump(mode="json", exclude_none=True) == example(event_type)
    # and the generated models refuse a body that does not match
    claimed = models.RewardClaimedEvent
    bad = {
        "id": "e",
        "type": "reward.claimed",
        "timestamp": "2026-11-27T10:15:00Z",
        "data": example(points=12),
    }
    with pytest.raises(Exception, match="points"):
        claimed.model_validate(bad)
    # a field added later (the evolution rules allow optional additions) does not break it
    newer = {**bad, "data": example(added_later="x")}
    assert claimed.model_validate(newer).data.user_id == "usr_8f2kq1"
