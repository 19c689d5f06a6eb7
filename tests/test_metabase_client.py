"""The Metabase client against canned HTTP answers (`responses`): bodies sent, retries, error mapping."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
import responses
from responses import matchers

from provisioner.errors import MetabaseAuthError, MetabaseError, MetabaseNotFound, MetabaseUnreachable
from provisioner.metabase.client import MAX_RETRY_AFTER_S, MetabaseClient
from provisioner.metabase.models import (
    CardCreate,
    CollectionCreate,
    DashboardUpdate,
    DashCard,
    DatabaseCreate,
    NativeDatasetQuery,
    NativeQuery,
    ParameterMapping,
    PostgresDetails,
    SetupUser,
    TemplateTag,
)
from tests.paths import RECORDED

URL = "http://mb.test"

PLAIN = {"content_type": "text/plain"}


class Sleeps:
    """Records the waits the client asks for instead of sleeping."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(sleeps: Sleeps) -> Iterator[MetabaseClient]:
    with MetabaseClient(URL, timeout_s=5, retries=3, sleep=sleeps) as mb:
        yield mb


def recorded(name: str) -> object:
    return json.loads((RECORDED / name).read_text())


# --- bodies sent and headers -------------------------------------------------------------------


@responses.activate
def test_login_sends_username_and_password_and_returns_the_session_id(client: MetabaseClient) -> None:
    responses.post(
        f"{URL}/api/session",
        json={"id": "sess-1"},
        match=[matchers.json_params_matcher({"username": "a@b.c", "password": "pw-Secret-1"})],
    )
    assert client.login("a@b.c", "pw-Secret-1") == "sess-1"


@responses.activate
def test_session_cookies_are_not_kept_auth_is_by_header_only(client: MetabaseClient) -> None:
    responses.post(
        f"{URL}/api/session",
        json={"id": "sess-1"},
        headers={"Set-Cookie": "metabase.SESSION=sess-1; Path=/; HttpOnly"},
    )
    responses.get(f"{URL}/api/user/current", json={"id": 7})
    client.login("a@b.c", "pw-Secret-1")
    client.use_api_key("mb_key123456789")
    client.current_user()
    sent = responses.calls[1].request.headers
    assert "Cookie" not in sent and sent["X-API-Key"] == "mb_key123456789"


@responses.activate
def test_setup_sends_token_user_and_site_name_and_no_tracking_preference(client: MetabaseClient) -> None:
    # prefs.allow_tracking is not in the endpoint's schema: Metabase would drop it and leave tracking on.
    responses.post(
        f"{URL}/api/setup",
        json={"id": "sess-2"},
        match=[
            matchers.json_params_matcher(
                {
                    "token": "tok-1",
                    "user": {"first_name": "Ada", "email": "ada@x.io", "password": "Pa55word-xyz"},
                    "prefs": {"site_name": "Demo"},
                },
                strict_match=True,
            )
        ],
    )
    user = SetupUser(first_name="Ada", email="ada@x.io", password="Pa55word-xyz")
    assert client.setup("tok-1", user, "Demo") == "sess-2"


@responses.activate
def test_set_setting_puts_the_value_and_takes_the_empty_204(client: MetabaseClient) -> None:
    responses.put(
        f"{URL}/api/setting/anon-tracking-enabled",
        status=204,
        match=[matchers.json_params_matcher({"value": False}, strict_match=True)],
    )
    client.set_setting("anon-tracking-enabled", False)
    assert len(responses.calls) == 1


@responses.activate
def test_session_properties_carry_the_effective_tracking_setting(client: MetabaseClient) -> None:
    responses.get(
        f"{URL}/api/session/properties", json={"has-user-setup": True, "anon-tracking-enabled": True}
    )
    assert client.session_properties().anon_tracking_enabled is True


@responses.activate
def test_session_and_api_key_headers_are_sent_and_exclusive(client: MetabaseClient) -> None:
    responses.get(
        f"{URL}/api/user/current",
        json={"id": 1, "email": "a@b.c"},
        match=[matchers.header_matcher({"X-Metabase-Session": "sess-9"})],
    )
    client.use_session("sess-9")
    assert client.current_user().email == "a@b.c"

    responses.reset()
    responses.get(
        f"{URL}/api/user/current",
        json={"id": 7, "type": "api-key"},
        match=[matchers.header_matcher({"X-API-Key": "mb_key123456789"})],
    )
    client.use_api_key("mb_key123456789")
    assert client.current_user().id == 7
    assert "X-Metabase-Session" not in responses.calls[0].request.headers


@responses.activate
def test_create_card_sends_the_legacy_native_form_with_explicit_root_collection(
    client: MetabaseClient,
) -> None:
    expected = {
        "name": "Exposure",
        "display": "scalar",
        "type": "question",
        "visualization_settings": {},
        "collection_id": None,
        "dataset_query": {
            "type": "native",
            "database": 2,
            "native": {
                "query": "select 1 where {{status}}",
                "template-tags": {
                    "status": {
                        "id": "u-1",
                        "name": "status",
                        "display-name": "Status",
                        "type": "dimension",
                        "dimension": ["field", 78, None],
                        "widget-type": "string/=",
                    }
                },
            },
        },
    }
    card = recorded("card/29.json")
    responses.post(f"{URL}/api/card", json=card, match=[matchers.json_params_matcher(expected)])
    tag = TemplateTag(
        id="u-1",
        name="status",
        display_name="Status",
        type="dimension",
        dimension=["field", 78, None],
        widget_type="string/=",
    )
    body = CardCreate(
        name="Exposure",
        display="scalar",
        collection_id=None,
        dataset_query=NativeDatasetQuery(
            database=2, native=NativeQuery(query="select 1 where {{status}}", template_tags={"status": tag})
        ),
    )
    assert client.create_card(body).id == 29


@responses.activate
def test_update_dashboard_sends_the_full_dashcard_set_with_virtual_card_null(client: MetabaseClient) -> None:
    expected = {
        "dashcards": [
            {
                "id": -1,
                "card_id": None,
                "row": 0,
                "col": 0,
                "size_x": 24,
                "size_y": 1,
                "parameter_mappings": [],
                "visualization_settings": {"text": "# Portfolio"},
                "series": [],
            },
            {
                "id": 5,
                "card_id": 27,
                "row": 1,
                "col": 0,
                "size_x": 12,
                "size_y": 6,
                "parameter_mappings": [
                    {"parameter_id": "p1", "card_id": 27, "target": ["variable", ["template-tag", "status"]]}
                ],
                "visualization_settings": {},
                "series": [],
            },
        ],
        "tabs": [],
    }
    responses.put(
        f"{URL}/api/dashboard/2",
        json=recorded("dashboard/2.json"),
        match=[matchers.json_params_matcher(expected)],
    )
    update = DashboardUpdate(
        dashcards=[
            DashCard(
                id=-1,
                card_id=None,
                row=0,
                col=0,
                size_x=24,
                size_y=1,
                visualization_settings={"text": "# Portfolio"},
            ),
            DashCard(
                id=5,
                card_id=27,
                row=1,
                col=0,
                size_x=12,
                size_y=6,
                parameter_mappings=[
                    ParameterMapping(
                        parameter_id="p1", card_id=27, target=["variable", ["template-tag", "status"]]
                    )
                ],
            ),
        ],
        tabs=[],
    )
    assert client.update_dashboard(2, update).id == 2


@responses.activate
def test_create_database_sends_details_with_the_password(client: MetabaseClient) -> None:
    details = PostgresDetails(host="db", port=5432, dbname="demo", user="reader", password="r-Secret-9")
    expected = {
        "name": "Demo",
        "engine": "postgres",
        "is_full_sync": True,
        "details": {
            "host": "db",
            "port": 5432,
            "dbname": "demo",
            "user": "reader",
            "password": "r-Secret-9",
            "ssl": False,
            "schema-filters-type": "all",
            "tunnel-enabled": False,
            "advanced-options": False,
        },
    }
    responses.post(
        f"{URL}/api/database",
        json={"id": 2, "name": "Demo", "engine": "postgres", "details": {}},
        match=[matchers.json_params_matcher(expected)],
    )
    assert client.create_database(DatabaseCreate(name="Demo", details=details.as_details())).id == 2


@responses.activate
def test_collection_items_repeats_the_models_parameter(client: MetabaseClient) -> None:
    responses.get(
        f"{URL}/api/collection/root/items",
        json={"total": 1, "data": recorded("collection/root/items.json")[-1:], "models": ["dashboard"]},
        match=[matchers.query_param_matcher({"models": ["card", "dashboard"], "archived": "true"})],
    )
    items = client.collection_items("root", models=("card", "dashboard"), archived=True)
    assert [i.model for i in items] == ["dashboard"]


@responses.activate
def test_run_card_returns_a_failed_query_without_raising(client: MetabaseClient) -> None:
    failed = {
        "status": "failed",
        "error": 'ERROR: relation "nope" does not exist',
        "row_count": 0,
        "data": {},
    }
    responses.post(
        f"{URL}/api/card/29/query",
        json=failed,
        status=202,
        match=[
            matchers.json_params_matcher(
                {
                    "parameters": [
                        {"type": "category", "target": ["variable", ["template-tag", "s"]], "value": "x"}
                    ]
                }
            )
        ],
    )
    result = client.run_card(
        29, [{"type": "category", "target": ["variable", ["template-tag", "s"]], "value": "x"}]
    )
    assert result.status == "failed" and not result.ok
    assert "nope" in (result.error or "")


@responses.activate
def test_run_native_posts_a_native_dataset_query(client: MetabaseClient) -> None:
    responses.post(
        f"{URL}/api/dataset",
        status=202,
        json={
            "status": "completed",
            "row_count": 1,
            "data": {"rows": [[1]], "cols": [{"name": "one", "base_type": "type/Integer"}]},
        },
        match=[
            matchers.json_params_matcher(
                {"type": "native", "database": 3, "native": {"query": "select 1 as one", "template-tags": {}}}
            )
        ],
    )
    result = client.run_native(3, "select 1 as one")
    assert result.ok and result.data.rows == [[1]] and result.data.cols[0].base_type == "type/Integer"


# --- both list forms and every recording -------------------------------------------------------


@responses.activate
def test_lists_are_read_bare_or_wrapped(client: MetabaseClient) -> None:
    databases = recorded("database.json")
    responses.get(f"{URL}/api/database", json={"data": databases, "total": len(databases)})
    responses.get(f"{URL}/api/database", json=databases)
    assert [d.id for d in client.list_databases()] == [2]
    assert [d.id for d in client.list_databases()] == [2]


@responses.activate
def test_a_list_answer_of_the_wrong_shape_is_a_metabase_error(client: MetabaseClient) -> None:
    responses.get(f"{URL}/api/database", json={"rows": []})
    with pytest.raises(MetabaseError, match="unexpected answer"):
        client.list_databases()


@responses.activate
def test_every_recorded_answer_parses(client: MetabaseClient) -> None:
    cards = sorted(p.stem for p in (RECORDED / "card").glob("*.json"))
    assert len(cards) >= 7
    for card in cards:
        responses.get(f"{URL}/api/card/{card}", json=recorded(f"card/{card}.json"))
    responses.get(f"{URL}/api/dashboard/2", json=recorded("dashboard/2.json"))
    responses.get(f"{URL}/api/database", json=recorded("database.json"))
    responses.get(f"{URL}/api/database/2/metadata", json=recorded("database/2/metadata.json"))
    responses.get(f"{URL}/api/collection", json=recorded("collection.json"))
    responses.get(f"{URL}/api/collection/root/items", json=recorded("collection/root/items.json"))
    responses.get(f"{URL}/api/collection/3/items", json=recorded("collection/3/items.json"))
    responses.get(f"{URL}/api/user/current", json=recorded("user/1.json"))

    natives = {c: client.get_card(int(c)).native_sql for c in cards}
    assert natives["30"] == "select 1;" and natives["27"] is None
    dashboard = client.get_dashboard(2)
    assert [d.card_id for d in dashboard.dashcards] == [27, 28, 29]
    assert client.list_databases()[0].details["password"] == "**MetabasePass**"
    metadata = client.database_metadata(2)
    assert metadata.field_name(metadata.field_id("customers", "customer_id")) == ("customers", "customer_id")
    assert [c.id for c in client.list_collections()] == ["root", 2, 3]
    assert {i.model for i in client.collection_items("root")} == {"card", "dashboard"}
    assert [i.name for i in client.collection_items(3)] == ["Transactions"]
    assert client.current_user().is_superuser


# --- retries -----------------------------------------------------------------------------------


@responses.activate
def test_get_is_retried_on_503_with_backoff(client: MetabaseClient, sleeps: Sleeps) -> None:
    responses.get(
        f"{URL}/api/card/1", body="Metabase is still initializing. Please sit tight...", status=503, **PLAIN
    )
    responses.get(f"{URL}/api/card/1", status=502, body="bad gateway", **PLAIN)
    responses.get(f"{URL}/api/card/1", json=recorded("card/30.json"))
    assert client.get_card(1).name == "Dummy"
    assert client.request_count == 3 and client.request_counts["GET"] == 3
    assert sleeps.calls == [0.5, 1.0]


@responses.activate
def test_get_gives_up_after_the_retries_with_a_still_starting_hint(
    client: MetabaseClient, sleeps: Sleeps
) -> None:
    responses.get(
        f"{URL}/api/card/1", body="Metabase is still initializing. Please sit tight...", status=503, **PLAIN
    )
    with pytest.raises(MetabaseUnreachable) as caught:
        client.get_card(1)
    assert client.request_count == 4 and len(sleeps.calls) == 3
    assert "still initializing" in caught.value.message
    assert "still starting" in (caught.value.hint or "")
    assert caught.value.status == 503 and caught.value.method == "GET" and caught.value.path == "/api/card/1"


@responses.activate
def test_connection_errors_on_get_are_retried_then_reported_unreachable(
    client: MetabaseClient, sleeps: Sleeps
) -> None:
    responses.get(f"{URL}/api/card/1", body=requests.ConnectionError("Connection refused"))
    with pytest.raises(MetabaseUnreachable, match="could not connect") as caught:
        client.get_card(1)
    assert client.request_count == 4
    assert "Metabase running" in (caught.value.hint or "")


@responses.activate
def test_put_is_retried_on_504(client: MetabaseClient, sleeps: Sleeps) -> None:
    responses.put(f"{URL}/api/card/30", status=504, body="gateway timeout", **PLAIN)
    responses.put(f"{URL}/api/card/30", json=recorded("card/30.json"))
    from provisioner.metabase.models import CardUpdate

    assert client.update_card(30, CardUpdate(archived=True)).id == 30
    assert client.request_counts["PUT"] == 2


@responses.activate
def test_post_is_never_retried(client: MetabaseClient, sleeps: Sleeps) -> None:
    responses.post(
        f"{URL}/api/collection", status=503, body="Metabase is still initializing. Please sit tight..."
    )
    with pytest.raises(MetabaseUnreachable):
        client.create_collection(CollectionCreate(name="Demo"))
    responses.post(f"{URL}/api/card/1/query", body=requests.ConnectionError("reset by peer"))
    with pytest.raises(MetabaseUnreachable) as caught:
        client.run_card(1)
    assert client.request_counts["POST"] == 2 and sleeps.calls == []
    assert "may or may not have been applied" in (caught.value.hint or "")


@responses.activate
def test_retry_after_in_seconds_sets_the_wait(client: MetabaseClient, sleeps: Sleeps) -> None:
    responses.get(f"{URL}/api/card/1", status=503, headers={"Retry-After": "7"}, body="busy", **PLAIN)
    responses.get(f"{URL}/api/card/1", status=429, headers={"Retry-After": "2"}, body="slow down", **PLAIN)
    responses.get(f"{URL}/api/card/1", json=recorded("card/30.json"))
    assert client.get_card(1).name == "Dummy"
    assert sleeps.calls == [7.0, 2.0]


@responses.activate
def test_retry_after_as_an_http_date_waits_until_then(sleeps: Sleeps) -> None:
    now = 1_780_000_000.0  # 2026-05-28T20:26:40Z
    responses.get(
        f"{URL}/api/card/1",
        status=503,
        headers={"Retry-After": "Thu, 28 May 2026 20:26:52 GMT"},
        body="busy",
        **PLAIN,
    )
    responses.get(f"{URL}/api/card/1", json=recorded("card/30.json"))
    with MetabaseClient(URL, sleep=sleeps, wall_clock=lambda: now) as mb:
        mb.get_card(1)
    assert sleeps.calls == [12.0]


@responses.activate
def test_a_long_or_unreadable_retry_after_is_capped_or_falls_back_to_backoff(
    client: MetabaseClient, sleeps: Sleeps
) -> None:
    responses.get(f"{URL}/api/card/1", status=503, headers={"Retry-After": "3600"}, body="x", **PLAIN)
    responses.get(f"{URL}/api/card/1", status=503, headers={"Retry-After": "soon"}, body="x", **PLAIN)
    responses.get(f"{URL}/api/card/1", json=recorded("card/30.json"))
    client.get_card(1)
    assert sleeps.calls == [MAX_RETRY_AFTER_S, 1.0]  # the second attempt's backoff


@responses.activate
def test_a_rate_limited_post_is_retried_after_the_wait_asked(client: MetabaseClient, sleeps: Sleeps) -> None:
    # A 429 comes from a rate limiter before any handler ran: the collection was not made, so sending the
    # POST again cannot make it twice.
    responses.post(
        f"{URL}/api/collection", status=429, headers={"Retry-After": "3"}, body="Too many", **PLAIN
    )
    responses.post(f"{URL}/api/collection", json={"id": 5, "name": "Demo", "location": "/"})
    assert client.create_collection(CollectionCreate(name="Demo")).id == 5
    assert client.request_counts["POST"] == 2 and sleeps.calls == [3.0]


@responses.activate
def test_a_post_answered_503_is_not_retried_even_with_retry_after(
    client: MetabaseClient, sleeps: Sleeps
) -> None:
    # A proxy may answer 503 after Metabase made the collection: sending it again could make a second one.
    responses.post(
        f"{URL}/api/collection", status=503, headers={"Retry-After": "1"}, body="unavailable", **PLAIN
    )
    with pytest.raises(MetabaseUnreachable):
        client.create_collection(CollectionCreate(name="Demo"))
    assert client.request_counts["POST"] == 1 and sleeps.calls == []


@responses.activate
def test_rate_limiting_that_outlasts_the_retries_says_to_lower_the_concurrency(
    client: MetabaseClient, sleeps: Sleeps
) -> None:
    responses.get(f"{URL}/api/card/1", status=429, body="Too many requests", **PLAIN)
    with pytest.raises(MetabaseUnreachable) as caught:
        client.get_card(1)
    assert client.request_count == 4 and caught.value.status == 429
    assert "--concurrency" in (caught.value.hint or "")


@responses.activate
def test_the_client_counts_every_request_sent_from_many_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    responses.get(f"{URL}/api/card/1", json=recorded("card/30.json"))
    with MetabaseClient(URL, concurrency=16) as mb, ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda _i: mb.get_card(1), range(400)))
        assert mb.request_count == 400 and mb.request_counts["GET"] == 400
        assert mb._session.get_adapter(URL).poolmanager.connection_pool_kw["maxsize"] == 16


def test_a_concurrency_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        MetabaseClient(URL, concurrency=0)


@responses.activate
def test_health_reports_initializing_without_retrying(client: MetabaseClient, sleeps: Sleeps) -> None:
    responses.get(f"{URL}/api/health", status=503, json={"status": "initializing", "progress": 0.4})
    health = client.health()
    assert not health.ok and health.progress == 0.4
    assert client.request_count == 1 and sleeps.calls == []


# --- error mapping -----------------------------------------------------------------------------


@responses.activate
def test_plain_text_401_is_an_auth_error_about_the_session_or_key(client: MetabaseClient) -> None:
    responses.get(f"{URL}/api/user/current", status=401, body="Unauthenticated", **PLAIN)
    with pytest.raises(MetabaseAuthError) as caught:
        client.current_user()
    assert "Unauthenticated" in caught.value.message
    assert "expired or revoked" in (caught.value.hint or "")


@responses.activate
def test_wrong_login_says_wrong_admin_password(client: MetabaseClient) -> None:
    responses.post(
        f"{URL}/api/session", status=401, json={"errors": {"password": "did not match stored password"}}
    )
    with pytest.raises(MetabaseAuthError) as caught:
        client.login("admin@demo.local", "Wrong-pass-1")
    assert "did not match stored password" in caught.value.message
    assert "wrong admin email or password" in (caught.value.hint or "")
    assert caught.value.errors == {"password": "did not match stored password"}
    assert "Wrong-pass-1" not in caught.value.message + (caught.value.hint or "")


@responses.activate
def test_throttled_login_says_to_wait(client: MetabaseClient) -> None:
    too_many = {"errors": {"username": "Too many attempts! You must wait 15 seconds before trying again."}}
    responses.post(f"{URL}/api/session", status=401, json=too_many)
    with pytest.raises(MetabaseAuthError) as caught:
        client.login("admin@demo.local", "x-Pass-1")
    assert "throttles" in (caught.value.hint or "")


@responses.activate
def test_wrong_setup_token_is_named(client: MetabaseClient) -> None:
    responses.post(
        f"{URL}/api/setup",
        status=400,
        json={
            "errors": {"token": "Token does not match the setup token."},
            "specific-errors": {"token": ["x"]},
        },
    )
    with pytest.raises(MetabaseError) as caught:
        client.setup("stale-token", SetupUser(email="a@b.c", password="Pa55-word-ok"), "Demo")
    assert "Token does not match" in caught.value.message
    assert "wrong setup token" in (caught.value.hint or "")
    assert "stale-token" not in caught.value.message


@responses.activate
def test_plain_text_403_and_404_map_to_typed_errors(client: MetabaseClient) -> None:
    responses.get(f"{URL}/api/card/1", status=403, body="You don't have permissions to do that.", **PLAIN)
    responses.get(f"{URL}/api/card/2", status=404, body="Not found.", **PLAIN)
    responses.get(f"{URL}/api/card/3", status=404, body="API endpoint does not exist.", **PLAIN)
    with pytest.raises(MetabaseAuthError, match="permissions"):
        client.get_card(1)
    with pytest.raises(MetabaseNotFound, match="Not found") as missing:
        client.get_card(2)
    assert missing.value.status == 404 and missing.value.path == "/api/card/2"
    with pytest.raises(MetabaseNotFound) as endpoint:
        client.get_card(3)
    assert "lacks the endpoint" in (endpoint.value.hint or "")


@responses.activate
def test_setup_when_a_user_exists_says_to_log_in_instead(client: MetabaseClient) -> None:
    responses.post(
        f"{URL}/api/setup",
        status=403,
        body="The /api/setup route can only be used to create the first user, "
        "however a user currently exists.",
        **PLAIN,
    )
    with pytest.raises(MetabaseError) as caught:
        client.setup("t", SetupUser(email="a@b.c", password="Pa55-word-ok"), "Demo")
    assert caught.value.status == 403 and "set up already" in (caught.value.hint or "")


@responses.activate
def test_properties_404_means_the_url_is_not_a_metabase(client: MetabaseClient) -> None:
    responses.get(f"{URL}/api/session/properties", status=404, body="nothing here", **PLAIN)
    with pytest.raises(MetabaseUnreachable, match="not a Metabase"):
        client.session_properties()


@responses.activate
def test_html_answers_mean_the_url_is_not_a_metabase(client: MetabaseClient) -> None:
    page = "<!DOCTYPE html><html><body>Welcome to nginx</body></html>"
    responses.get(f"{URL}/api/session/properties", status=200, body=page, content_type="text/html")
    responses.get(f"{URL}/api/card/1", status=401, body=page, content_type="text/html")
    for call in (client.session_properties, lambda: client.get_card(1)):
        with pytest.raises(MetabaseUnreachable) as caught:
            call()
        assert "HTML" in caught.value.message and "--metabase-url" in (caught.value.hint or "")


@responses.activate
def test_non_json_success_is_an_unexpected_answer(client: MetabaseClient) -> None:
    responses.get(f"{URL}/api/card/1", status=200, body="ok", **PLAIN)
    with pytest.raises(MetabaseError, match="not JSON"):
        client.get_card(1)


@responses.activate
def test_database_connection_failure_shows_metabases_reason_without_the_password(
    client: MetabaseClient,
) -> None:
    secret = "r-Secret-9"
    responses.post(
        f"{URL}/api/database",
        status=400,
        json={
            "message": f"Looks like the username or password is incorrect. (password {secret})",
            "errors": {"password": f"check {secret}"},
        },
    )
    details = PostgresDetails(host="db", dbname="demo", user="reader", password=secret)
    with pytest.raises(MetabaseError) as caught:
        client.create_database(DatabaseCreate(name="Demo", details=details.as_details()))
    error = caught.value
    assert "username or password is incorrect" in error.message
    assert error.message.endswith("(password: check <redacted>)")
    assert "as seen from Metabase" in (error.hint or "")
    assert secret not in json.dumps(error.to_dict())


@responses.activate
def test_server_error_carries_metabases_message(client: MetabaseClient) -> None:
    responses.post(
        f"{URL}/api/card", status=500, json={"message": "boom in card", "via": [], "trace": ["a", "b"]}
    )
    card = CardCreate(
        name="x", display="table", dataset_query=NativeDatasetQuery(database=1, native=NativeQuery(query="s"))
    )
    with pytest.raises(MetabaseError) as caught:
        client.create_card(card)
    assert caught.value.status == 500 and "boom in card" in caught.value.message
    assert caught.value.to_dict()["method"] == "POST"


@responses.activate
def test_no_session_id_or_api_key_in_errors(client: MetabaseClient) -> None:
    client.use_session("sess-very-secret-123")
    responses.get(f"{URL}/api/card/1", status=400, json={"message": "bad session sess-very-secret-123"})
    with pytest.raises(MetabaseError) as caught:
        client.get_card(1)
    assert "sess-very-secret-123" not in caught.value.message
    client.use_api_key("mb_AbCdEfGh12345678")
    responses.get(f"{URL}/api/card/2", status=400, json={"errors": {"key": "mb_AbCdEfGh12345678 is bad"}})
    with pytest.raises(MetabaseError) as caught:
        client.get_card(2)
    assert "mb_AbCdEfGh12345678" not in json.dumps(caught.value.to_dict())


@responses.activate
def test_api_key_creation_returns_the_secret_once(client: MetabaseClient) -> None:
    created = {
        "id": 4,
        "name": "metabase-provisioner",
        "group": {"id": 2, "name": "Administrators"},
        "unmasked_key": "mb_FreshKey000111222",
        "masked_key": "mb_Fres****",
    }
    responses.post(
        f"{URL}/api/api-key",
        json=created,
        match=[matchers.json_params_matcher({"name": "metabase-provisioner", "group_id": 2})],
    )
    # Newest releases answer a regenerate with the key alone: no name, no group.
    regenerated = {
        "id": 4,
        "unmasked_key": "mb_Regenerated000111",
        "masked_key": "mb_Rege****",
        "prefix": "mb_Rege",
    }
    responses.put(f"{URL}/api/api-key/4/regenerate", json=regenerated)
    key = client.create_api_key("metabase-provisioner", 2)
    assert key.unmasked_key.get_secret_value() == "mb_FreshKey000111222"
    assert "mb_FreshKey" not in repr(key)
    assert client.regenerate_api_key(4).unmasked_key.get_secret_value() == "mb_Regenerated000111"


@responses.activate
@pytest.mark.parametrize("content_type", ["text/plain", "application/json"])
def test_a_secret_at_the_clipping_edge_of_a_long_answer_is_redacted_not_cut(
    client: MetabaseClient, content_type: str
) -> None:
    # Long answers are clipped to one line of 400 characters: a secret straddling the cut must not
    # leave its first characters behind (redaction has to run before clipping).
    secret = "Zq9SecretPassword1234"
    filler = "x" * 385 + " "
    client.use_session(secret)
    if content_type == "text/plain":
        responses.get(f"{URL}/api/card/1", status=200, body=filler + secret, content_type=content_type)
        responses.get(f"{URL}/api/card/2", status=500, body=filler + secret, content_type=content_type)
    else:
        responses.get(f"{URL}/api/card/1", status=200, body=json.dumps(filler + secret)[:-1])
        responses.get(f"{URL}/api/card/2", status=500, json={"detail": filler + secret})
    responses.get(f"{URL}/api/card/3", body=requests.ConnectionError(filler + secret))
    for card_id in (1, 2, 3):
        with pytest.raises(MetabaseError) as caught:
            client.get_card(card_id)
        shown = json.dumps(caught.value.to_dict())
        assert secret[:6] not in shown, shown[-80:]


@responses.activate
def test_a_schema_sync_metabase_cannot_run_says_the_database_is_unreachable(client: MetabaseClient) -> None:
    responses.post(
        f"{URL}/api/database/2/sync_schema",
        status=422,
        body="Connection to 127.0.0.1:5432 refused.",
        **PLAIN,
    )
    with pytest.raises(MetabaseError) as caught:
        client.sync_schema(2)
    assert "cannot reach the database" in caught.value.message and "refused" in caught.value.message
    assert caught.value.status == 422 and "reachable from Metabase" in (caught.value.hint or "")


@responses.activate
def test_nested_setup_errors_are_named_by_path_with_the_admin_password_hint(client: MetabaseClient) -> None:
    # The newest POST /api/setup nests validation errors under the body's `user` and `prefs` maps.
    responses.post(
        f"{URL}/api/setup",
        status=400,
        json={
            "errors": {
                "user": {"password": "password is too common."},
                "prefs": {"site_name": "value must be a non-blank string."},
            },
            "specific-errors": {"user": {"password": ["password is too common."]}},
        },
    )
    with pytest.raises(MetabaseError) as caught:
        client.setup("tok-1", SetupUser(email="a@b.c", password="Qwerty123"), "Demo")
    assert caught.value.errors == {
        "user.password": "password is too common.",
        "prefs.site_name": "value must be a non-blank string.",
    }
    assert "user.password: password is too common." in caught.value.message
    assert "METABASE_ADMIN_PASSWORD" in (caught.value.hint or "")
    assert "Qwerty123" not in json.dumps(caught.value.to_dict())


@responses.activate
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_redirect_is_reported_not_followed_and_the_key_never_leaves(
    client: MetabaseClient, method: str
) -> None:
    # An http:// address behind a proxy that redirects to https: following it would turn the POST
    # into a GET and send the API key header to whatever host the Location names.
    client.use_api_key("mb_redirectsecret")
    responses.add(
        method, f"{URL}/api/collection", status=301, headers={"Location": "https://other.test/api/collection"}
    )
    responses.add(responses.GET, "https://other.test/api/collection", json=[])

    with pytest.raises(MetabaseUnreachable) as caught:
        if method == "GET":
            client.list_collections()
        else:
            client.create_collection(CollectionCreate(name="Demo"))

    assert [c.request.url for c in responses.calls] == [f"{URL}/api/collection"]  # one call, not followed
    assert "redirected (HTTP 301) to https://other.test/api/collection" in caught.value.message
    assert "METABASE_URL" in (caught.value.hint or "") and caught.value.exit_code == 4


@responses.activate
def test_a_redirected_health_check_names_the_address_to_use(client: MetabaseClient) -> None:
    responses.get(f"{URL}/api/health", status=302, headers={"Location": "https://mb.test/api/health"})
    with pytest.raises(MetabaseUnreachable, match=r"redirected \(HTTP 302\) to https://mb\.test/api/health"):
        client.health()
    assert len(responses.calls) == 1
