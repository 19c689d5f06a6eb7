"""The fake Metabase pinned to the REST contract and the recorded responses: health, setup, sessions,
API keys, users, databases and metadata (real PostgreSQL)."""

from __future__ import annotations

import json
import uuid

import psycopg
import psycopg.conninfo
import pytest
import requests

from tests.fake_metabase import FakeMetabase
from tests.fake_metabase.fixtures import admin_http
from tests.paths import RECORDED

STRONG_PASSWORD = "Fake-Admin-Pass-1"


def recorded(name: str) -> object:
    return json.loads((RECORDED / name).read_text())


def setup_body(fake: FakeMetabase, **overrides: object) -> dict:
    token = requests.get(f"{fake.url}/api/session/properties").json()["setup-token"]
    body: dict = {
        "token": token,
        "user": {
            "first_name": "Ada",
            "last_name": "Admin",
            "email": "admin@example.com",
            "password": STRONG_PASSWORD,
        },
        "prefs": {"site_name": "ACME", "allow_tracking": False},
    }
    body.update(overrides)
    return body


def admin(fake: FakeMetabase) -> requests.Session:
    return admin_http(fake)


def details_for(dsn: str, **overrides: object) -> dict:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    details = {
        "host": info["host"],
        "port": int(info["port"]),
        "dbname": info["dbname"],
        "user": info["user"],
        "password": info["password"],
        "ssl": False,
    }
    details.update(overrides)
    return details


def is_plain(response: requests.Response, text: str) -> bool:
    return response.text == text and response.headers["Content-Type"] == "text/plain"


# ----------------------------------------------------------------- health and setup


def test_health_is_503_while_initializing_and_other_routes_answer_plain_text() -> None:
    with FakeMetabase(init_polls=2) as fake:
        first = requests.get(f"{fake.url}/api/health")
        assert first.status_code == 503 and first.json()["status"] == "initializing"
        blocked = requests.get(f"{fake.url}/api/session/properties")
        assert blocked.status_code == 503
        assert is_plain(blocked, "Metabase is still initializing. Please sit tight...")
        assert requests.get(f"{fake.url}/api/health").status_code == 503
        assert requests.get(f"{fake.url}/api/health").json() == {"status": "ok"}
        assert requests.get(f"{fake.url}/api/session/properties").status_code == 200


def test_fresh_instance_is_not_set_up_and_exposes_a_uuid_setup_token(fake_metabase: FakeMetabase) -> None:
    props = requests.get(f"{fake_metabase.url}/api/session/properties").json()
    assert props["has-user-setup"] is False
    assert uuid.UUID(props["setup-token"])
    assert props["version"]["tag"] == "v0.65.4"
    assert "postgres" in props["engines"] and props["available-locales"]


def test_set_version_changes_the_reported_tag(fake_metabase: FakeMetabase) -> None:
    fake_metabase.set_version("v0.61.9")
    assert requests.get(f"{fake_metabase.url}/api/session/properties").json()["version"]["tag"] == "v0.61.9"


def test_rewrite_answers_changes_only_matching_answers_never_what_is_stored(
    fake_metabase: FakeMetabase,
) -> None:
    http = admin(fake_metabase)

    def renamed(body: dict) -> None:
        body["name"] = "Rewritten"

    fake_metabase.rewrite_answers("GET", r"/api/collection/\d+", renamed)
    made = http.post(f"{fake_metabase.url}/api/collection", json={"name": "Kept"}).json()
    assert made["name"] == "Kept"  # a POST answer is not a GET's
    assert http.get(f"{fake_metabase.url}/api/collection/{made['id']}").json()["name"] == "Rewritten"
    assert http.get(f"{fake_metabase.url}/api/collection/{made['id']}/items").json()["data"] == []
    assert next(c for c in fake_metabase.collections() if c["id"] == made["id"])["name"] == "Kept"
    missing = http.get(f"{fake_metabase.url}/api/collection/999999")
    assert missing.status_code == 404 and missing.text == "Not found."  # errors pass untouched


def test_setup_rejects_a_wrong_token(fake_metabase: FakeMetabase) -> None:
    response = requests.post(f"{fake_metabase.url}/api/setup", json=setup_body(fake_metabase, token="nope"))
    assert response.status_code == 400
    assert response.json()["errors"]["token"] == "Token does not match the setup token."
    assert requests.get(f"{fake_metabase.url}/api/session/properties").json()["has-user-setup"] is False


@pytest.mark.parametrize("password", ["abc1", "password1", "onlyletters", "12345678901"])
def test_setup_rejects_weak_passwords(fake_metabase: FakeMetabase, password: str) -> None:
    body = setup_body(fake_metabase)
    body["user"]["password"] = password
    response = requests.post(f"{fake_metabase.url}/api/setup", json=body)
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"user"} and "password" in response.json()["errors"]["user"]


def test_setup_requires_site_name_and_a_valid_email(fake_metabase: FakeMetabase) -> None:
    # setup/api.clj declares nested maps, so api/macros.clj `invalid-params-errors` nests errors by path.
    body = setup_body(fake_metabase, prefs={})
    body["user"]["email"] = "not-an-email"
    response = requests.post(f"{fake_metabase.url}/api/setup", json=body)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert errors == {
        "user": {"email": "value must be a valid email address."},
        "prefs": {"site_name": "value must be a non-blank string."},
    }
    assert set(response.json()["specific-errors"]) == {"user", "prefs"}


def test_setup_without_user_or_prefs_maps_is_a_400_naming_them(fake_metabase: FakeMetabase) -> None:
    body = setup_body(fake_metabase)
    del body["user"]
    body["prefs"] = "ACME"
    response = requests.post(f"{fake_metabase.url}/api/setup", json=body)
    assert response.status_code == 400 and set(response.json()["errors"]) == {"user", "prefs"}
    assert requests.get(f"{fake_metabase.url}/api/session/properties").json()["has-user-setup"] is False


def test_setup_creates_the_admin_logs_in_and_cannot_run_twice(fake_metabase: FakeMetabase) -> None:
    url = fake_metabase.url
    body = setup_body(fake_metabase)
    response = requests.post(f"{url}/api/setup", json=body)
    assert response.status_code == 200
    session_id = response.json()["id"]
    assert f"metabase.SESSION={session_id}" in response.headers["Set-Cookie"]
    me = requests.get(f"{url}/api/user/current", headers={"X-Metabase-Session": session_id}).json()
    assert me["email"] == "admin@example.com" and me["is_superuser"] is True
    assert me["user_group_memberships"] == [{"id": 1}, {"id": 2}]
    assert requests.get(f"{url}/api/session/properties").json()["has-user-setup"] is True
    again = requests.post(f"{url}/api/setup", json=body)
    assert again.status_code == 403
    assert is_plain(
        again,
        "The /api/setup route can only be used to create the first user, however a user currently exists.",
    )


def test_setup_makes_the_admin_a_personal_collection(fake_metabase: FakeMetabase) -> None:
    session = admin(fake_metabase)
    me = session.get(f"{fake_metabase.url}/api/user/current").json()
    listed = session.get(f"{fake_metabase.url}/api/collection").json()
    personal = [c for c in listed if c.get("personal_owner_id") == me["id"]]
    assert [c["id"] for c in personal] == [me["personal_collection_id"]]
    assert personal[0]["is_personal"] is True


# ----------------------------------------------------------------- sessions and auth


def test_routes_need_auth_and_answer_plain_unauthenticated(fake_metabase: FakeMetabase) -> None:
    fake_metabase.admin_session()
    for method, path in [
        ("GET", "/api/user/current"),
        ("GET", "/api/database"),
        ("POST", "/api/card"),
        ("GET", "/api/collection/root/items"),
        ("PUT", "/api/dashboard/1"),
    ]:
        response = requests.request(method, f"{fake_metabase.url}{path}", json={})
        assert response.status_code == 401, path
        assert is_plain(response, "Unauthenticated")
    bogus = requests.get(f"{fake_metabase.url}/api/user/current", headers={"X-Metabase-Session": "nope"})
    assert bogus.status_code == 401


def test_login_with_wrong_password_or_unknown_user_gives_the_same_401(fake_metabase: FakeMetabase) -> None:
    fake_metabase.admin_session()
    url = f"{fake_metabase.url}/api/session"
    wrong = requests.post(url, json={"username": "admin@example.com", "password": "Wrong-pass-1"})
    unknown = requests.post(url, json={"username": "who@example.com", "password": "Wrong-pass-1"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"errors": {"password": "did not match stored password"}}


def test_login_validates_the_body(fake_metabase: FakeMetabase) -> None:
    response = requests.post(f"{fake_metabase.url}/api/session", json={"username": ""})
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"username", "password"}
    assert "specific-errors" in response.json()


def test_login_is_throttled_after_repeated_failures(fake_metabase: FakeMetabase) -> None:
    fake_metabase.admin_session()
    url = f"{fake_metabase.url}/api/session"
    for _ in range(10):
        requests.post(url, json={"username": "admin@example.com", "password": "Wrong-pass-1"})
    throttled = requests.post(url, json={"username": "admin@example.com", "password": STRONG_PASSWORD})
    assert throttled.status_code == 401
    assert throttled.json()["errors"]["username"].startswith("Too many attempts!")


def test_login_session_works_by_header_and_cookie_until_logout(fake_metabase: FakeMetabase) -> None:
    fake_metabase.admin_session()
    url = fake_metabase.url
    login = requests.post(
        f"{url}/api/session", json={"username": "admin@example.com", "password": STRONG_PASSWORD}
    )
    assert login.status_code == 200
    session_id = login.json()["id"]
    by_cookie = requests.get(f"{url}/api/user/current", cookies={"metabase.SESSION": session_id})
    assert by_cookie.status_code == 200
    headers = {"X-Metabase-Session": session_id}
    assert requests.delete(f"{url}/api/session", headers=headers).status_code == 204
    assert requests.get(f"{url}/api/user/current", headers=headers).status_code == 401


def test_current_user_has_the_recorded_key_set(fake_metabase: FakeMetabase) -> None:
    me = admin(fake_metabase).get(f"{fake_metabase.url}/api/user/current").json()
    assert set(recorded("user/1.json")) <= set(me)
    assert isinstance(me["id"], int) and isinstance(me["common_name"], str)


def test_permission_groups_are_all_users_and_administrators(fake_metabase: FakeMetabase) -> None:
    groups = admin(fake_metabase).get(f"{fake_metabase.url}/api/permissions/group").json()
    assert [(g["id"], g["name"]) for g in groups] == [(1, "All Users"), (2, "Administrators")]


# ----------------------------------------------------------------- API keys


def test_api_key_is_shown_once_and_authenticates(fake_metabase: FakeMetabase) -> None:
    session = admin(fake_metabase)
    url = fake_metabase.url
    created = session.post(f"{url}/api/api-key", json={"name": "provisioner", "group_id": 2})
    assert created.status_code == 200
    body = created.json()
    key = body["unmasked_key"]
    assert key.startswith("mb_") and body["masked_key"].startswith(key[:7]) and key not in body["masked_key"]
    assert body["group"] == {"id": 2, "name": "Administrators"}
    listed = session.get(f"{url}/api/api-key").json()
    assert [k["name"] for k in listed] == ["provisioner"] and "unmasked_key" not in listed[0]
    assert session.get(f"{url}/api/api-key/count").json() == 1
    me = requests.get(f"{url}/api/user/current", headers={"X-API-Key": key})
    assert me.status_code == 200 and me.json()["is_superuser"] is True
    bad = requests.get(f"{url}/api/user/current", headers={"X-API-Key": "mb_invalid"})
    assert is_plain(bad, "Unauthenticated") and bad.status_code == 401


def test_api_key_names_are_unique_and_non_blank(fake_metabase: FakeMetabase) -> None:
    session = admin(fake_metabase)
    url = f"{fake_metabase.url}/api/api-key"
    assert session.post(url, json={"name": "k", "group_id": 2}).status_code == 200
    duplicate = session.post(url, json={"name": "k", "group_id": 1})
    assert duplicate.status_code == 400
    assert duplicate.json() == {"errors": {"name": "An API key with this name already exists."}}
    blank = session.post(url, json={"name": "", "group_id": 2})
    assert blank.status_code == 400 and "specific-errors" in blank.json()


def test_regenerated_api_key_replaces_the_old_one_and_delete_revokes(fake_metabase: FakeMetabase) -> None:
    session = admin(fake_metabase)
    url = fake_metabase.url
    created = session.post(f"{url}/api/api-key", json={"name": "k", "group_id": 2}).json()
    regenerated = session.put(f"{url}/api/api-key/{created['id']}/regenerate").json()
    assert regenerated["unmasked_key"] != created["unmasked_key"]
    old = requests.get(f"{url}/api/user/current", headers={"X-API-Key": created["unmasked_key"]})
    assert old.status_code == 401
    renamed = session.put(f"{url}/api/api-key/{created['id']}", json={"name": "renamed"}).json()
    assert renamed["name"] == "renamed" and "unmasked_key" not in renamed
    assert session.delete(f"{url}/api/api-key/{created['id']}").status_code == 204
    gone = requests.get(f"{url}/api/user/current", headers={"X-API-Key": regenerated["unmasked_key"]})
    assert gone.status_code == 401


def test_regenerate_answers_only_id_and_key_like_newest_metabase(fake_metabase: FakeMetabase) -> None:
    # api_keys/api.clj `PUT /:id/regenerate` :- [:map id unmasked_key masked_key prefix]: no name, no group.
    session = admin(fake_metabase)
    url = fake_metabase.url
    created = session.post(f"{url}/api/api-key", json={"name": "k", "group_id": 2}).json()
    answer = session.put(f"{url}/api/api-key/{created['id']}/regenerate")
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"id", "unmasked_key", "masked_key", "prefix"}
    key = body["unmasked_key"]
    # generate-key: "mb_" + base64 of 32 bytes (47 characters); mask keeps the 7-character prefix.
    assert body["id"] == created["id"] and key.startswith("mb_") and len(key) == 47
    assert body["prefix"] == key[:7] and body["masked_key"] == key[:7] + "*" * 40
    assert created["masked_key"] == created["unmasked_key"][:7] + "*" * 40


# ----------------------------------------------------------------- routing errors


def test_unknown_routes_and_missing_objects_are_plain_404s(fake_metabase: FakeMetabase) -> None:
    session = admin(fake_metabase)
    assert is_plain(session.get(f"{fake_metabase.url}/api/nope"), "API endpoint does not exist.")
    missing = session.get(f"{fake_metabase.url}/api/database/999")
    assert missing.status_code == 404 and is_plain(missing, "Not found.")
    assert session.get(f"{fake_metabase.url}/api/database/abc").status_code == 404


# ----------------------------------------------------------------- databases


@pytest.fixture
def warehouse(fake_warehouse_dsn: str) -> str:
    return fake_warehouse_dsn


def test_database_create_rejects_an_unknown_engine(fake_metabase: FakeMetabase, warehouse: str) -> None:
    session = admin(fake_metabase)
    response = session.post(
        f"{fake_metabase.url}/api/database",
        json={"engine": "oracle", "name": "W", "details": details_for(warehouse)},
    )
    assert response.status_code == 400
    assert response.json()["errors"]["engine"] == "value must be a valid database engine."


def test_database_create_with_wrong_password_creates_nothing(
    fake_metabase: FakeMetabase, warehouse: str
) -> None:
    session = admin(fake_metabase)
    url = f"{fake_metabase.url}/api/database"
    response = session.post(
        url, json={"engine": "postgres", "name": "W", "details": details_for(warehouse, password="wrong")}
    )
    assert response.status_code == 400
    assert response.json()["message"] == "Looks like the username or password is incorrect."
    assert "specific-errors" not in response.json()
    assert session.get(url).json()["total"] == 1  # only the Sample Database


def test_database_create_with_unreachable_port_creates_nothing(
    fake_metabase: FakeMetabase, warehouse: str
) -> None:
    from provisioner.runtime.postgres import free_port

    session = admin(fake_metabase)
    url = f"{fake_metabase.url}/api/database"
    response = session.post(
        url, json={"engine": "postgres", "name": "W", "details": details_for(warehouse, port=free_port())}
    )
    assert response.status_code == 400 and "port" in response.json()["errors"]
    assert [d["name"] for d in session.get(url).json()["data"]] == ["Sample Database"]


def test_database_is_listed_wrapped_with_masked_password_and_syncs(
    fake_metabase: FakeMetabase, warehouse: str
) -> None:
    session = admin(fake_metabase)
    url = f"{fake_metabase.url}/api/database"
    details = details_for(warehouse)
    created = session.post(url, json={"engine": "postgres", "name": "Warehouse", "details": details})
    assert created.status_code == 200
    db_id = created.json()["id"]
    assert db_id == 2  # the Sample Database is 1
    listed = session.get(url).json()
    assert set(listed) == {"data", "total"} and listed["total"] == 2
    mine = next(d for d in listed["data"] if d["id"] == db_id)
    assert set(recorded("database.json")[0]) <= set(mine)
    assert mine["details"]["password"] == "**MetabasePass**"
    assert details["password"] not in json.dumps(listed)
    assert session.get(f"{url}/{db_id}").json()["initial_sync_status"] == "incomplete"
    assert session.get(f"{url}/{db_id}").json()["initial_sync_status"] == "complete"
    sample = next(d for d in listed["data"] if d["id"] == 1)
    assert sample["is_sample"] is True and sample["engine"] == "h2"


def test_database_metadata_is_introspected_from_postgres(fake_metabase: FakeMetabase, warehouse: str) -> None:
    session = admin(fake_metabase)
    db_id = fake_metabase.add_database(warehouse)
    metadata = session.get(f"{fake_metabase.url}/api/database/{db_id}/metadata").json()
    fixture = recorded("database/2/metadata.json")
    assert set(metadata) == set(fixture)
    tables = {t["name"]: t for t in metadata["tables"]}
    assert set(tables) == {"customers", "orders", "order_totals"}
    assert set(tables["orders"]) == set(fixture["tables"][0])
    assert set(tables["orders"]["fields"][0]) == set(fixture["tables"][0]["fields"][0])
    assert tables["orders"]["entity_type"] == "entity/TransactionTable"
    assert tables["customers"]["description"] == "People who buy"
    fields = {(t["name"], f["name"]): f for t in metadata["tables"] for f in t["fields"]}
    assert fields[("orders", "id")]["semantic_type"] == "type/PK"
    assert fields[("orders", "customer_id")]["semantic_type"] == "type/FK"
    assert fields[("orders", "customer_id")]["fk_target_field_id"] == fields[("customers", "id")]["id"]
    assert fields[("customers", "latitude")]["semantic_type"] == "type/Latitude"
    assert fields[("orders", "amount")]["base_type"] == "type/Decimal"
    assert fields[("orders", "amount")]["database_type"] == "numeric"
    assert fields[("orders", "created_at")]["base_type"] == "type/DateTimeWithLocalTZ"
    assert fields[("orders", "ordered_on")]["base_type"] == "type/Date"
    assert fields[("customers", "name")]["base_type"] == "type/Text"
    assert fields[("order_totals", "total")]["table_id"] == tables["order_totals"]["id"]
    assert len({f["id"] for f in fields.values()}) == len(fields)


def test_new_tables_appear_only_after_sync_and_ids_stay_stable(
    fake_metabase: FakeMetabase, warehouse: str
) -> None:
    session = admin(fake_metabase)
    url = fake_metabase.url
    db_id = fake_metabase.add_database(warehouse)

    def field_ids() -> dict[tuple[str, str], int]:
        metadata = session.get(f"{url}/api/database/{db_id}/metadata").json()
        return {(t["name"], f["name"]): f["id"] for t in metadata["tables"] for f in t["fields"]}

    before = field_ids()
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute("create table refunds (id serial primary key, order_id int references orders(id))")
    assert ("refunds", "id") not in field_ids()
    assert session.post(f"{url}/api/database/{db_id}/sync_schema").json() == {"status": "ok"}
    after = field_ids()
    assert ("refunds", "order_id") in after
    assert {k: after[k] for k in before} == before


def test_database_put_keeps_the_stored_password_when_sent_masked(
    fake_metabase: FakeMetabase, warehouse: str
) -> None:
    session = admin(fake_metabase)
    url = fake_metabase.url
    db_id = fake_metabase.add_database(warehouse)
    current = session.get(f"{url}/api/database/{db_id}").json()
    updated = session.put(
        f"{url}/api/database/{db_id}", json={"name": "Renamed", "details": current["details"]}
    )
    assert updated.status_code == 200 and updated.json()["name"] == "Renamed"
    assert session.post(f"{url}/api/database/{db_id}/sync_schema").status_code == 200
    wrong = dict(current["details"], password="wrong")
    rejected = session.put(f"{url}/api/database/{db_id}", json={"details": wrong})
    assert rejected.status_code == 400
    assert session.post(f"{url}/api/database/{db_id}/sync_schema").status_code == 200


def test_database_put_merges_details_over_the_stored_ones(
    fake_metabase: FakeMetabase, warehouse: str
) -> None:
    # warehouses/api.clj `upsert-sensitive-fields`: (merge (:details database) details); a PUT without the
    # password keeps the stored one, so the connection still works; `engine: null` means "unchanged".
    session = admin(fake_metabase)
    url = fake_metabase.url
    db_id = fake_metabase.add_database(warehouse)
    stored = fake_metabase.state.databases[db_id]["details"]
    partial = {k: v for k, v in stored.items() if k != "password"}
    updated = session.put(f"{url}/api/database/{db_id}", json={"engine": None, "details": partial})
    assert updated.status_code == 200 and updated.json()["engine"] == "postgres"
    assert fake_metabase.state.databases[db_id]["details"]["password"] == stored["password"]
    assert session.post(f"{url}/api/database/{db_id}/sync_schema").status_code == 200
    bogus = session.put(f"{url}/api/database/{db_id}", json={"engine": "oracle"})
    assert bogus.status_code == 400 and "engine" in bogus.json()["errors"]


def test_database_delete_answers_204(fake_metabase: FakeMetabase, warehouse: str) -> None:
    session = admin(fake_metabase)
    db_id = fake_metabase.add_database(warehouse)
    response = session.delete(f"{fake_metabase.url}/api/database/{db_id}")
    assert response.status_code == 204 and response.content == b""
    # server/middleware/misc.clj add-content-type*: a nil body is not a string, so it is labelled JSON.
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert session.get(f"{fake_metabase.url}/api/database/{db_id}").status_code == 404


def test_metadata_lists_no_tables_until_the_initial_sync_completes(
    fake_metabase: FakeMetabase, warehouse: str
) -> None:
    session = admin(fake_metabase)
    url = f"{fake_metabase.url}/api/database"
    db_id = session.post(
        url, json={"engine": "postgres", "name": "W", "details": details_for(warehouse)}
    ).json()["id"]
    assert session.get(f"{url}/{db_id}/metadata").json()["tables"] == []
    assert session.get(f"{url}/{db_id}").json()["initial_sync_status"] == "incomplete"
    assert session.get(f"{url}/{db_id}").json()["initial_sync_status"] == "complete"
    assert len(session.get(f"{url}/{db_id}/metadata").json()["tables"]) == 3


def test_database_create_with_unknown_host_names_the_host(
    fake_metabase: FakeMetabase, warehouse: str
) -> None:
    session = admin(fake_metabase)
    details = details_for(warehouse, host="no-such-host.invalid")
    response = session.post(
        f"{fake_metabase.url}/api/database", json={"engine": "postgres", "name": "W", "details": details}
    )
    assert response.status_code == 400
    assert response.json() == {
        "message": "Host 'no-such-host.invalid' is not reachable",
        "errors": {"host": "check your host settings"},
    }


def test_non_admin_api_key_cannot_add_databases(fake_metabase: FakeMetabase, warehouse: str) -> None:
    session = admin(fake_metabase)
    key = session.post(f"{fake_metabase.url}/api/api-key", json={"name": "viewer", "group_id": 1}).json()
    response = requests.post(
        f"{fake_metabase.url}/api/database",
        json={"engine": "postgres", "name": "W", "details": details_for(warehouse)},
        headers={"X-API-Key": key["unmasked_key"]},
    )
    assert response.status_code == 403 and is_plain(response, "You don't have permissions to do that.")


def test_table_list_has_the_recorded_shape(fake_metabase: FakeMetabase, warehouse: str) -> None:
    session = admin(fake_metabase)
    db_id = fake_metabase.add_database(warehouse)
    tables = session.get(f"{fake_metabase.url}/api/table").json()
    fixture = recorded("table.json")[0]
    mine = [t for t in tables if t["db_id"] == db_id]
    assert sorted(t["name"] for t in mine) == ["customers", "order_totals", "orders"]
    assert all(set(t) == set(fixture) and set(t["db"]) == set(fixture["db"]) for t in mine)
    detail = session.get(f"{fake_metabase.url}/api/table/{mine[0]['id']}/query_metadata").json()
    assert detail["fields"] and detail["db"]["id"] == db_id


def test_database_with_ssl_on_a_server_without_ssl_is_rejected(
    fake_metabase: FakeMetabase, warehouse: str
) -> None:
    session = admin(fake_metabase)
    details = details_for(warehouse, ssl=True)
    response = session.post(
        f"{fake_metabase.url}/api/database", json={"engine": "postgres", "name": "W", "details": details}
    )
    assert response.status_code == 400 and "SSL" in response.json()["message"]
