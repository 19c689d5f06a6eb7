"""The fake's metadata as the MBQL compiler reads it: synced tables and fields, and saved cards."""

from __future__ import annotations

from tests.fake_metabase import sql
from tests.fake_metabase.mbql_sql import CardInfo, FieldInfo, TableInfo
from tests.fake_metabase.state import FakeState


class StateCatalog:
    """`mbql_sql.Catalog` over a FakeState (the Sample Database's H2 tables included, though never run)."""

    def __init__(self, state: FakeState) -> None:
        self.state = state

    def _tables(self) -> list[tuple[dict, dict]]:
        return [
            (database, table) for database in self.state.databases.values() for table in database["tables"]
        ]

    def table(self, table_id: int) -> TableInfo | None:
        """Return the synced table `table_id`, or None."""
        for database, table in self._tables():
            if table["id"] == table_id:
                return TableInfo(
                    id=table["id"],
                    db_id=database["id"],
                    schema=table["schema"],
                    name=table["name"],
                    display_name=sql.humanize(table["name"]),
                )
        return None

    def fields_of(self, table_id: int) -> list[FieldInfo]:
        """Return the fields of table `table_id` in database order (none for an unknown table)."""
        for _database, table in self._tables():
            if table["id"] == table_id:
                return [_field_info(table, column) for column in table["columns"]]
        return []

    def field(self, field_id: int) -> FieldInfo | None:
        """Return the synced field `field_id`, or None."""
        for _database, table in self._tables():
            for column in table["columns"]:
                if column["id"] == field_id:
                    return _field_info(table, column)
        return None

    def card(self, card_id: int) -> CardInfo | None:
        """Return the saved card `card_id` (archived ones too: Metabase runs questions on them), or None."""
        card = self.state.cards.get(card_id)
        if card is None:
            return None
        return CardInfo(
            id=card["id"],
            database_id=card["database_id"],
            type=card["type"],
            query=card["dataset_query"],
            result_metadata=card["result_metadata"],
        )


def _field_info(table: dict, column: dict) -> FieldInfo:
    return FieldInfo(
        id=column["id"],
        table_id=table["id"],
        name=column["name"],
        base_type=column["base_type"],
        effective_type=column.get("effective_type") or column["base_type"],
        semantic_type=sql.semantic_type_for(column),
        display_name=sql.humanize(column["name"]),
        database_type=column["database_type"],
        fk_target_field_id=column.get("fk_target_field_id"),
        fingerprint=column.get("fingerprint"),
    )
