"""The webhook app: checks the secret first, handles each update once, answers fast."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.testclient import TestClient

from bot.handlers import BotDeps
from bot.limits import RateLimiter
from bot.webhook import SECRET_HEADER, create_app, first_sighting
from infra.config import Settings, get_settings
from infra.readers import Reader, get_reader, save_reader
from tests.bot_factories import make_digest
from tests.fakes.telegram_api import TOKEN, FakeTelegram

SECRET = "s3cret_Token-123"


@pytest.fixture
def settings(fake_tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", fake_tg.api_root)
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", SECRET)
    get_settings.cache_clear()
    return get_settings()


def deps_for(settings: Settings, store) -> BotDeps:
    return BotDeps(
        store=store,
        settings=settings,
        build_digest_for=lambda reader: make_digest(reader_id=reader.id),
        list_sources=list,
        limiter=RateLimiter(rate=25, chat_interval=0.09),
    )


@pytest.fixture
def client(settings: Settings, store) -> Iterator[TestClient]:
    with TestClient(create_app(settings, deps_for(settings, store))) as test_client:
        yield test_client


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({SECRET_HEADER: "wrong"}, id="wrong"),
        pytest.param({SECRET_HEADER: SECRET[:-1]}, id="prefix"),
        pytest.param({SECRET_HEADER: ""}, id="empty"),
    ],
)
def test_requests_without_the_secret_are_refused(
    client: TestClient, fake_tg: FakeTelegram, store, headers: dict[str, str]
) -> None:
    update = fake_tg.message_update(401, "/start")

    response = client.post("/telegram", json=update, headers=headers)

    assert response.status_code == 403
    assert fake_tg.calls("sendMessage") == []
    assert get_reader(store, chat_id=401) is None


def test_no_configured_secret_refuses_everything(
    settings: Settings, store, fake_tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TELEGRAM_WEBHOOK_SECRET")
    get_settings.cache_clear()
    bare = get_settings()

    with TestClient(create_app(bare, deps_for(bare, store))) as test_client:
        response = test_client.post(
            "/telegram",
            json=fake_tg.message_update(402, "/start"),
            headers={SECRET_HEADER: ""},
        )

    assert response.status_code == 403
    assert fake_tg.calls("sendMessage") == []


def test_update_with_the_secret_is_handled(
    client: TestClient, fake_tg: FakeTelegram, store
) -> None:
    update = fake_tg.message_update(403, "/start")

    response = client.post("/telegram", json=update, headers={SECRET_HEADER: SECRET})

    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert "Welcome" in fake_tg.messages_to(403)[0].visible
    assert get_reader(store, chat_id=403).active


def test_a_resent_update_is_handled_once(
    client: TestClient, fake_tg: FakeTelegram
) -> None:
    update = fake_tg.message_update(404, "/help")
    headers = {SECRET_HEADER: SECRET}

    first = client.post("/telegram", json=update, headers=headers)
    second = client.post("/telegram", json=update, headers=headers)

    assert first.json() == {"ok": True}
    assert second.json() == {"ok": True, "duplicate": True}
    assert len(fake_tg.messages_to(404)) == 1


def test_update_ids_are_shared_between_containers(
    settings: Settings, store, fake_tg: FakeTelegram
) -> None:
    update = fake_tg.message_update(405, "/help")
    headers = {SECRET_HEADER: SECRET}

    for _ in range(2):
        app = create_app(settings, deps_for(settings, store))
        with TestClient(app) as test_client:
            test_client.post("/telegram", json=update, headers=headers)

    assert len(fake_tg.messages_to(405)) == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"{}", id="no-update-id"),
        pytest.param(b'{"update_id": "x"}', id="bad-update-id"),
        pytest.param(b"[1, 2]", id="array"),
        pytest.param(b'{"update_id": 5, "message": "x"}', id="message-not-object"),
        pytest.param(b'{"update_id": 6, "message": {"chat": 1}}', id="message-no-date"),
    ],
)
def test_malformed_bodies_are_rejected(client: TestClient, body: bytes) -> None:
    response = client.post(
        "/telegram",
        content=body,
        headers={SECRET_HEADER: SECRET, "content-type": "application/json"},
    )

    assert response.status_code == 400


def test_health_check_needs_no_secret(client: TestClient) -> None:
    assert client.get("/healthz").text == "ok"


def test_first_sighting_is_true_once(store) -> None:
    assert first_sighting(store, 77) is True
    assert first_sighting(store, 77) is False
    assert first_sighting(store, 78) is True


@pytest.fixture
def serve() -> Iterator[Callable[[Starlette], str]]:
    """Serve ASGI apps with uvicorn on 127.0.0.1; `serve(app)` returns the URL."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: Starlette) -> str:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", ws="none", http="h11"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("webhook server did not start")
            threading.Event().wait(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def test_webhook_answers_before_the_digest_is_built(
    settings: Settings, store, fake_tg: FakeTelegram, serve
) -> None:
    building, release = threading.Event(), threading.Event()

    def slow_digest(reader):
        building.set()
        release.wait(10)
        return make_digest(reader_id=reader.id)

    deps = deps_for(settings, store)
    deps.build_digest_for = slow_digest
    save_reader(store, Reader(id="", chat_id="406"))
    url = serve(create_app(settings, deps))
    update = fake_tg.message_update(406, "/digest")

    response = httpx.post(
        f"{url}/telegram", json=update, headers={SECRET_HEADER: SECRET}, timeout=5
    )
    answered_while_building = building.wait(5) and not release.is_set()
    sent_before_release = len(fake_tg.messages_to(406))
    release.set()
    for _ in range(250):
        if fake_tg.messages_to(406):
            break
        threading.Event().wait(0.02)

    assert response.status_code == 200
    assert answered_while_building and sent_before_release == 0
    assert "1. Story 1" in fake_tg.messages_to(406)[0].visible
