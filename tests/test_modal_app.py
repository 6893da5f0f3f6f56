"""`modal_app.py` imports without Modal and is what docs/deploy.md says it is."""

from __future__ import annotations

import importlib
import os
import re
import sys
import types
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import modal
import pytest
from starlette.testclient import TestClient

from functions import jobs
from infra.readers import Reader, save_reader
from infra.store import open_store

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_DOC = ROOT / "docs" / "deploy.md"


@pytest.fixture(scope="module")
def modal_app() -> ModuleType:
    os.environ["MODAL_AUTOMOUNT"] = "0"
    return importlib.import_module("modal_app")


def documented_functions() -> dict[str, dict[str, Any]]:
    """The rows of the "Modal functions" table in docs/deploy.md."""
    text = DEPLOY_DOC.read_text(encoding="utf-8")
    section = text.split("### Modal functions", 1)[1]
    table = section.split("| Function |", 1)[1].split("\n\n", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    functions = {}
    for row in rows:
        name, schedule, timeout, retries, endpoint = [
            cell.strip() for cell in row.strip("|").split("|")
        ]
        cron = re.fullmatch(r"`(.+)` \((.+)\)", schedule)
        amount, unit = timeout.split()
        functions[name.strip("`")] = {
            "schedule": f"Cron({cron[1]!r}, {cron[2]})" if cron else None,
            "timeout": int(float(amount) * (60 if unit == "min" else 1)),
            "retries": None if retries == "none" else int(retries),
            "endpoint": None if endpoint == "none" else endpoint,
        }
    return functions


def app_functions(module: ModuleType) -> dict[str, modal.Function]:
    return {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, modal.Function)
    }


def test_the_app_is_named_and_has_the_documented_functions(
    modal_app: ModuleType,
) -> None:
    assert modal_app.app.name == "china-to-watch"
    assert set(app_functions(modal_app)) == set(documented_functions())
    assert isinstance(modal_app.main, modal.app.LocalEntrypoint)


def test_schedules_timeouts_and_retries_match_the_docs(modal_app: ModuleType) -> None:
    functions = app_functions(modal_app)

    for name, documented in documented_functions().items():
        info = functions[name].info()
        assert info.schedule == documented["schedule"], name
        assert info.timeout == documented["timeout"], name
        assert info.max_retries == documented["retries"], name


def test_only_two_functions_are_scheduled_and_in_utc(modal_app: ModuleType) -> None:
    schedules = [f.info().schedule for f in app_functions(modal_app).values()]
    scheduled = [s for s in schedules if s]

    assert len(scheduled) == 2
    assert all(s.endswith(", UTC)") for s in scheduled)


def test_modal_and_sentry_use_the_same_schedules(modal_app: ModuleType) -> None:
    functions = app_functions(modal_app)

    for job, schedule in jobs.SCHEDULES.items():
        info = functions[job].info()
        assert info.schedule == f"Cron({schedule.cron!r}, {schedule.timezone})"
        assert info.timeout == schedule.timeout_s
        assert schedule.lease_ttl_s > info.timeout
    assert jobs.SCHEDULES["digest"].monitor_slug in DEPLOY_DOC.read_text()


def test_every_function_reads_the_one_documented_secret(modal_app: ModuleType) -> None:
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    paragraph = doc.split("Every function reads the one secret", 1)[1].split("\n\n")[0]

    assert f"**`{modal_app.SECRET_NAME}`**" in paragraph
    assert all(f"`{key}`" in paragraph for key in modal_app.REQUIRED_KEYS)
    for name, function in app_functions(modal_app).items():
        secrets = function.info().secrets
        assert f"modal.Secret.from_name({modal_app.SECRET_NAME!r})" in secrets, name


def test_the_webhook_is_public_and_the_health_check_is_not(
    modal_app: ModuleType,
) -> None:
    functions = app_functions(modal_app)

    for name, documented in documented_functions().items():
        web = functions[name].info().web_info
        if documented["endpoint"] is None:
            assert web is None, name
        elif "proxy auth" in documented["endpoint"]:
            assert web is not None and web.unauthenticated is False, name
        else:
            assert web is not None and web.unauthenticated is True, name
    assert functions["telegram"].info().concurrency_info.max_inputs == 50


def _mount_entries(image: Any) -> list[Any]:
    """What the image adds from this checkout, found through its dependencies."""
    from modal._utils.async_utils import synchronizer
    from modal.mount import _Mount

    entries: list[Any] = []
    todo = [synchronizer._translate_in(image)]
    while todo:
        obj = todo.pop()
        if isinstance(obj, _Mount):
            entries.extend(obj._entries)
        todo.extend(obj._deps() if obj._deps else [])
    return entries


def test_the_image_ships_the_code_prompts_and_config(modal_app: ModuleType) -> None:
    entries = _mount_entries(modal_app.image)

    files = {
        (Path(e.local_file).name, str(e.remote_path))
        for e in entries
        if hasattr(e, "local_file")
    }
    dirs = {
        (Path(e.local_dir).name, str(e.remote_path))
        for e in entries
        if hasattr(e, "local_dir")
    }
    packages = {e.module_name for e in entries if hasattr(e, "module_name")}
    assert files == {
        ("sources.toml", "/root/sources.toml"),
        ("prices.toml", "/root/prices.toml"),
    }
    assert dirs == {("prompts", "/root/prompts")}
    assert packages == {"functions", "bot", "infra"}
    assert modal_app.REQUIREMENTS == ROOT / "requirements.lock"
    assert modal_app.REQUIREMENTS.exists()


@pytest.fixture
def fake_pipeline(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """`functions.run` as the Modal bodies call it, recording each call."""
    calls: list[dict[str, Any]] = []
    run = types.ModuleType("functions.run")

    def collect_and_cluster(settings: Any) -> dict[str, Any]:
        calls.append({"stage": "collect"})
        return {"items_new": 5, "stories": 2}

    def build_and_deliver(
        settings: Any,
        *,
        now: datetime | None = None,
        reader_ids: list[str] | None = None,
    ) -> dict[str, Any]:
        calls.append({"stage": "deliver", "now": now, "reader_ids": reader_ids})
        return {"digests": len(reader_ids or []), "deliveries": {"sent": 1}}

    run.collect_and_cluster = collect_and_cluster  # type: ignore[attr-defined]
    run.build_and_deliver = build_and_deliver  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "functions.run", run)
    return calls


def test_the_scheduled_bodies_run_the_jobs_here(
    modal_app: ModuleType, fake_pipeline: list[dict[str, Any]]
) -> None:
    store = open_store()
    save_reader(store, Reader(id="r1", chat_id="1001", timezone="UTC", delivery_hour=0))
    store.close()

    collected = modal_app.collect.local()
    # Whether r1 is due depends on the clock: the report says either way.
    digested = modal_app.digest.local()

    assert collected["kind"] == "collect" and collected["items_new"] == 5
    assert digested["kind"] == "digest" and digested["status"] == "ok"
    delivered = [c for c in fake_pipeline if c["stage"] == "deliver"]
    assert len(delivered) == digested["readers_due"]


def test_a_batch_body_calls_the_pipeline_with_its_readers(
    modal_app: ModuleType, fake_pipeline: list[dict[str, Any]]
) -> None:
    now = datetime(2025, 11, 14, 0, 5, tzinfo=UTC)

    report = modal_app.deliver_batch.local(["r1", "r2"], now, "digest-x")

    assert report["digests"] == 2
    assert fake_pipeline == [
        {"stage": "deliver", "now": now, "reader_ids": ["r1", "r2"]}
    ]


def test_the_health_endpoint_answers_503_until_jobs_run(modal_app: ModuleType) -> None:
    client = TestClient(modal_app.health.local())

    before = client.get("/")
    store = open_store()
    now = datetime.now(UTC)
    store.save_run("c1", "collect", "ok", {}, now, now)
    store.save_run("d1", "digest", "ok", {}, now, now)
    store.close()
    after = client.get("/")

    assert before.status_code == 503 and before.json()["ok"] is False
    assert after.status_code == 200
    assert after.json()["jobs"]["digest"]["last_run"] == "d1"
