"""Export: where it writes, what it refuses, and how it names what it cannot place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provisioner import dashboards
from provisioner.config import Settings
from provisioner.errors import ConfigError
from provisioner.metabase.client import MetabaseClient
from provisioner.metabase.models import DashboardCreate


def test_export_names_a_personal_collection_as_such(fake_metabase: Any, tmp_path: Path) -> None:
    with MetabaseClient(fake_metabase.url, sleep=lambda _s: None) as client:
        client.use_session(fake_metabase.admin_session())
        personal = next(c for c in client.list_collections() if c.personal_owner_id is not None)
        assert isinstance(personal.id, int)
        made = client.create_dashboard(DashboardCreate(name="Mine", collection_id=personal.id))
        settings = Settings.load({}, cwd=tmp_path, metabase_url=fake_metabase.url)
        result = dashboards.export(settings, [str(made.id)], out_dir=tmp_path / "out", client=client)
    assert result.warnings[0] == "'Mine' is in a personal or archived collection; written under `Exported`"
    assert "collection: Exported\n" in (tmp_path / "out" / "mine.yaml").read_text()


def test_export_to_an_unwritable_out_is_a_config_error(fake_metabase: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("a file where the directory should go")
    with MetabaseClient(fake_metabase.url, sleep=lambda _s: None) as client:
        client.use_session(fake_metabase.admin_session())
        made = client.create_dashboard(DashboardCreate(name="Board", collection_id=None))
        settings = Settings.load({}, cwd=tmp_path, metabase_url=fake_metabase.url)
        with pytest.raises(ConfigError) as caught:
            dashboards.export(settings, [str(made.id)], out_dir=blocker, client=client)
    assert str(blocker) in caught.value.message and caught.value.hint
    assert blocker.read_text() == "a file where the directory should go"


def _board(fake_metabase: Any, client: MetabaseClient, name: str = "Board") -> int:
    return client.create_dashboard(DashboardCreate(name=name, collection_id=None)).id


def test_export_writes_to_exported_and_never_silently_over_a_file_or_a_key(
    fake_metabase: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with MetabaseClient(fake_metabase.url, sleep=lambda _s: None) as client:
        client.use_session(fake_metabase.admin_session())
        board = _board(fake_metabase, client)
        settings = Settings.load({}, cwd=tmp_path, metabase_url=fake_metabase.url)
        first = dashboards.export(settings, [str(board)], client=client)
        assert first.files == ["exported/board.yaml"]
        written = Path("exported/board.yaml").read_text()
        Path("exported/board.yaml").write_text(written + "# my notes\n")
        with pytest.raises(ConfigError, match=r"would overwrite exported/board\.yaml"):
            dashboards.export(settings, [str(board)], client=client)
        assert Path("exported/board.yaml").read_text().endswith("# my notes\n")
        Path("exported/board.yaml").rename("exported/renamed.yaml")  # same key, another file name
        with pytest.raises(ConfigError, match="key `board`") as caught:
            dashboards.export(settings, [str(board)], client=client)
        assert "--force" in (caught.value.hint or "")
        again = dashboards.export(settings, [str(board)], client=client, force=True)
        assert again.files == ["exported/board.yaml"] and Path("exported/board.yaml").read_text() == written
    assert not Path("dashboards").exists()
