"""`jaxmba-service` commands for the original JABS devices and database: register, unregister
and list legacy devices, import a JABS database (docs/jabs-migration.md)."""

from __future__ import annotations

import logging

import click

from controlsvc.ops.cli_support import require_schema, state

log = logging.getLogger(__name__)


@click.command("jabs_register_device")
@click.argument("name")
@click.option("--enclosure-id", help="Our enclosure id (default: derived from NAME).")
@click.option("--location", help="Where the device is.")
@click.option(
    "--token/--no-token",
    default=True,
    help="Make a new per-device token (printed once); --no-token: only [JABS] "
    "heartbeat_networks admit it.",
)
def jabs_register_device(
    name: str, enclosure_id: str | None, location: str | None, token: bool
) -> None:
    """Let the original device client whose heartbeats carry NAME (its host name) in."""
    from controlsvc.compat.jabs import legacy
    from controlsvc.store.db import Database

    settings = state().settings()
    db = Database(settings.database.sqlalchemy_url())
    try:
        require_schema(settings, db)
        with db.session() as session:
            device = legacy.register_legacy(
                session, name, enclosure_id=enclosure_id, location=location, with_token=token
            )
        click.echo(
            f"registered legacy device {device.hostname} as enclosure {device.enclosure_id} "
            f"(JABS id {device.jabs_id})"
        )
        if device.token:
            prefix = settings.jabs.url_prefix
            click.echo(f"token (shown once): {device.token}")
            click.echo(
                f"device [app] api = http://<UI host>/api/device-token/{device.token} (behind "
                f"deploy/nginx/jabs-ui.conf), or <service URL>{prefix}/device-token/{device.token}"
            )
    finally:
        db.dispose()


@click.command("jabs_unregister_device")
@click.argument("name")
def jabs_unregister_device(name: str) -> None:
    """Stop accepting heartbeats from the legacy device NAME (its history stays)."""
    from controlsvc.compat.jabs import legacy
    from controlsvc.store.db import Database

    settings = state().settings()
    db = Database(settings.database.sqlalchemy_url())
    try:
        require_schema(settings, db)
        with db.session() as session:
            device = legacy.unregister_legacy(session, name)
        click.echo(f"unregistered legacy device {device.hostname} ({device.enclosure_id})")
    finally:
        db.dispose()


@click.command("jabs_devices")
def jabs_devices() -> None:
    """List the registered legacy devices."""
    from controlsvc.compat.jabs import legacy
    from controlsvc.store.db import Database

    settings = state().settings()
    db = Database(settings.database.sqlalchemy_url())
    try:
        require_schema(settings, db)
        with db.session() as session:
            for device in legacy.list_legacy(session):
                auth = "token" if device.has_token else "networks only"
                click.echo(f"{device.jabs_id}\t{device.hostname}\t{device.enclosure_id}\t{auth}")
    finally:
        db.dispose()


@click.command("import_jabs")
@click.option(
    "--database-url",
    required=True,
    help="The JABS database, e.g. postgresql://user:pass@host/jaxmba or sqlite:///path.db.",
)
@click.option("--dry-run", is_flag=True, help="Print what would be imported; change nothing.")
def import_jabs(database_url: str, dry_run: bool) -> None:
    """Import users, devices (as enclosures) and session history from a JABS database
    (read only; running it again imports only what is new)."""
    from controlsvc.compat.jabs.importer import import_jabs as run_import
    from controlsvc.compat.jabs.importer import source_engine
    from controlsvc.store.db import Database

    settings = state().settings()
    source = source_engine(database_url)
    db = Database(settings.database.sqlalchemy_url())
    try:
        require_schema(settings, db)
        with db.sessionmaker() as session:
            report = run_import(source, session)
            if dry_run:
                session.rollback()
            else:
                session.commit()
        for line in report.lines:
            click.echo(f"  {line}")
        verb = "would import" if dry_run else "imported"
        click.echo(f"{verb}: {report.summary()}")
    finally:
        source.dispose()
        db.dispose()


# The commands `controlsvc.ops.manage` adds to its group.
JABS_COMMANDS = (jabs_register_device, jabs_unregister_device, jabs_devices, import_jabs)
