"""A card's `result_metadata`: what the API accepts, and how a model's edits survive a new query.

Verified in Metabase's source:
- `POST`/`PUT /api/card` validate `result_metadata` against `analyze/ResultsMetadata`
  (`queries/card_write.clj` `CardCreateSchema`/`CardUpdateSchema`): null or a list of column maps, each with
  string `name` and `display_name` and a `base_type` (`legacy_mbql/schema.cljc` `::legacy-column-metadata`),
  optional keys typed (`description` string, `semantic_type`/`effective_type` types, `id` a positive int,
  ...), snake_case keys only and no `lib/type`. Anything else is a 400 whose error names `result_metadata`.
- Which metadata is saved (`queries/models/card/metadata.clj` `maybe-async-result-metadata`): valid metadata
  sent with a new card, with an unchanged query, or with no query is saved as sent; a changed query is run
  again and a model blends what was sent (else what it had) over the fresh columns (`query_processor/util.clj`
  `combine-metadata`: by column `name`, aggregation columns excluded, keeping `id`, `description`,
  `display_name`, `semantic_type`, `fk_target_field_id`, `settings` and `visibility_type`); any other card
  takes the fresh columns and drops what was sent.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.fake_metabase.handlers import received

MESSAGE = "nullable value must be an array of valid results column metadata maps."
PRESERVED_KEYS = (
    "id",
    "description",
    "display_name",
    "semantic_type",
    "fk_target_field_id",
    "settings",
    "visibility_type",
)
_TYPE_KEYS = ("base_type", "effective_type", "semantic_type")
_STRING_KEYS = ("description", "unit", "source", "visibility_type", "converted_timezone")


def _is_type(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("type/", "Semantic/", "Relation/"))


def _column_problem(index: int, column: Any) -> str | None:
    if not isinstance(column, dict):
        return f"[{index}] should be a map, received: {received(column)}"
    for key in ("name", "display_name"):
        if not isinstance(column.get(key), str):
            return f"[{index}].{key}: should be a string, received: {received(column.get(key))}"
    if not _is_type(column.get("base_type")):
        return f"[{index}].base_type: Not a valid base type: {received(column.get('base_type'))}"
    for key in _TYPE_KEYS[1:]:
        if column.get(key) is not None and not _is_type(column[key]):
            return f"[{index}].{key}: Not a valid type: {received(column[key])}"
    for key in _STRING_KEYS:
        if column.get(key) is not None and not isinstance(column[key], str):
            return f"[{index}].{key}: should be a string, received: {received(column[key])}"
    field_id = column.get("id")
    positive = isinstance(field_id, int) and not isinstance(field_id, bool) and field_id > 0
    if field_id is not None and not positive:
        return f"[{index}].id: should be a positive int, received: {received(field_id)}"
    for key in column:
        if key == "lib/type":
            return f"[{index}]: Legacy results metadata should not have :lib/type"
        if ("/" in key and "_" in key) or ("/" not in key and "-" in key):
            return (
                f"[{index}]: legacy source query metadata should use snake_case keys (except for namespaced "
                f"lib keys, which should use kebab-case), got: {key}"
            )
    return None


def problems(value: Any) -> list[str]:
    """Return malli-style problems of a sent `result_metadata` (empty when valid or null)."""
    if value is None:
        return []
    if not isinstance(value, list):
        return [f"should be a sequence, received: {received(value)}"]
    found = [_column_problem(i, column) for i, column in enumerate(value)]
    return [p for p in found if p]


def combine(fresh: list[dict], previous: list[dict] | None) -> list[dict]:
    """Return `fresh` columns with the user-edited keys of `previous` laid over them, matched by name."""
    by_name = {column.get("name"): column for column in previous or [] if isinstance(column, dict)}
    result = []
    for column in fresh:
        column = copy.deepcopy(column)
        old = by_name.get(column.get("name"))
        if old is not None and column.get("source") != "aggregation":
            column.update({key: copy.deepcopy(old[key]) for key in PRESERVED_KEYS if key in old})
        result.append(column)
    return result
