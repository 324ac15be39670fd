"""``onshi backend``: seed a synthetic population and serve the reference eligibility API.

``serve`` creates and seeds the database when it is absent (``population.ensure_population``),
then runs the production stack (uvicorn + uvloop + httptools, N worker processes, the admin and
fault layers) through ``server.run_server``. ``seed`` only builds the database. Both end in one
clear line on a user error (the root ``onshi`` group turns ``OnshiError`` into it).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from onshi.errors import OnshiError

DEFAULT_DB = "onshi-backend.db"
APP_FACTORY = "onshi.backend.app:server_app"


@click.group()
def backend() -> None:
    """The reference candidate backend (eligibility API, synthetic population, faults)."""


@backend.command()
@click.option(
    "--db",
    "db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_DB,
    show_default=True,
    help="SQLite database; created and seeded when absent.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--population",
    "persons",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Persons to seed when the database is created.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="uvicorn worker processes.",
)
@click.option(
    "--faults",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Fault configuration (YAML/JSON) applied at start-up.",
)
@click.option(
    "--admin-token",
    envvar="ONSHI_ADMIN_TOKEN",
    default=None,
    help="Bearer token for /admin/* (default: $ONSHI_ADMIN_TOKEN; none disables it).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def serve(
    db: Path,
    host: str,
    port: int,
    persons: int,
    workers: int,
    faults: Path | None,
    admin_token: str | None,
    log_level: str,
) -> None:
    """Serve the eligibility API (seeding DB first if it does not exist)."""
    from onshi.backend.faults import FaultConfig
    from onshi.backend.population import ensure_population
    from onshi.backend.server import check_host, run_server

    check_host(host, allow_non_loopback=False)
    config = FaultConfig.load(faults) if faults is not None else None
    summary = ensure_population(db, persons=persons)
    if summary is not None:
        click.echo(
            f"seeded {db}: {summary.persons} persons, {summary.cards} cards, "
            f"{summary.facilities} facilities in {summary.seconds:.1f} s",
            err=True,
        )
    click.echo(
        f"serving http://{host}:{port} ({workers} worker(s)), contract at /openapi.json", err=True
    )
    run_server(
        APP_FACTORY,
        db_path=db,
        host=host,
        port=port,
        workers=workers,
        faults=config,
        admin_token=admin_token,
        log_level=log_level,
    )


@backend.command()
@click.option(
    "--db",
    "db",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="New SQLite database file to create.",
)
@click.option(
    "--population",
    "persons",
    type=click.IntRange(min=1),
    required=True,
    help="Number of insured persons.",
)
@click.option(
    "--facilities",
    type=click.IntRange(min=1),
    default=None,
    help="Number of facilities (default: persons / 5000, 20..1000).",
)
@click.option(
    "--seed",
    "seed",
    default="onshi",
    show_default=True,
    help="Seed: the same seed gives the same population.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def seed(db: Path, persons: int, facilities: int | None, seed: str, as_json: bool) -> None:
    """Create DB and seed a synthetic national population into it."""
    from onshi.backend.population import ensure_population
    from onshi.backend.store import Store

    if db.exists():
        raise OnshiError(f"{db} already exists", fix="seed into a new --db path or delete it")
    summary = ensure_population(db, persons=persons, facilities=facilities, seed=seed)
    assert summary is not None
    with Store.open(db) as store:
        facility = (store.fixtures().get("facility") or [{}])[0]
    if as_json:
        doc = {
            "db": str(db),
            "persons": summary.persons,
            "qualifications": summary.qualifications,
            "cards": summary.cards,
            "facilities": summary.facilities,
            "seconds": round(summary.seconds, 3),
            "example_facility": {k: facility.get(k) for k in ("code", "secret")},
        }
        click.echo(json.dumps(doc, ensure_ascii=False))
        return
    click.echo(
        f"{db}: {summary.persons} persons, {summary.qualifications} qualifications, "
        f"{summary.cards} cards, {summary.facilities} facilities in {summary.seconds:.1f} s"
    )
    if facility:
        click.echo(
            f"example facility (test credential): X-Facility-Code: {facility['code']}  "
            f"Authorization: Bearer {facility['secret']}"
        )
