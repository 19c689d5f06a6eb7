"""The external runtime: the user's own Metabase and PostgreSQL; nothing is started or deleted."""

from __future__ import annotations

from typing import TYPE_CHECKING

from provisioner.errors import ConfigError, MetabaseError, MetabaseUnreachable
from provisioner.progress import Progress
from provisioner.redact import redact_dsn
from provisioner.runtime.base import Endpoints, RuntimeStatus, ServiceStatus

if TYPE_CHECKING:
    from pydantic import SecretStr

    from provisioner.config import Settings


class ExternalRuntime:
    """An existing Metabase (--metabase-url) and database (--database-url)."""

    name = "external"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _database_url(self) -> SecretStr:
        if self.settings.database_url is None:
            raise ConfigError(
                "--runtime external needs the database: --database-url (or DATABASE_URL) is not set",
                hint="pass --database-url postgresql://user:pass@host:5432/db and --metabase-url URL",
            )
        return self.settings.database_url

    def check(self) -> None:
        """Raise ConfigError when no database URL is given."""
        self._database_url()

    def start(self, progress: Progress) -> Endpoints:
        """The given endpoints once both answer; raises ConfigError, MetabaseUnreachable or DatabaseError."""
        from provisioner.db.connection import connect
        from provisioner.metabase.client import MetabaseClient

        dsn = self._database_url()
        url = self.settings.metabase_url
        progress.info(
            f"using the existing Metabase at {url} and database {redact_dsn(dsn.get_secret_value())}"
        )
        with MetabaseClient(url, timeout_s=self.settings.http_timeout_s) as client:
            health = client.health()
        if not health.ok:
            raise MetabaseUnreachable(
                f"the Metabase at {url} is not ready: {health.status}",
                hint="wait until it has started (GET /api/health answers ok), then run the command again",
            )
        connect(dsn.get_secret_value()).close()
        return Endpoints(metabase_url=url, warehouse_dsn=dsn)

    def stop(self, progress: Progress) -> None:
        """Nothing to stop: the user runs these services."""
        progress.info("external runtime: the Metabase and database are yours; nothing was stopped")

    def destroy(self, progress: Progress) -> None:
        """Nothing to delete: an external Metabase and database are never removed."""
        progress.info("external runtime: nothing was deleted (the Metabase and database are yours)")

    def status(self) -> RuntimeStatus:
        """The two endpoints and whether the Metabase answers; starts nothing."""
        from provisioner.metabase.client import MetabaseClient

        url = self.settings.metabase_url
        try:
            with MetabaseClient(url, timeout_s=5, retries=0) as client:
                health = "healthy" if client.health().ok else "starting"
            state = "running"
        except MetabaseError:
            health, state = "unreachable", "unreachable"
        services = [ServiceStatus(name="metabase", state=state, health=health, detail=url)]
        if self.settings.database_url is not None:
            where = redact_dsn(self.settings.database_url.get_secret_value())
            services.append(ServiceStatus(name="warehouse", state="external", detail=where))
        return RuntimeStatus(
            runtime=self.name,
            services=services,
            detail="your own Metabase and database",
            metabase_url=url,
            warehouse_dsn=self.settings.database_url,
        )
