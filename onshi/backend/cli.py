"""``onshi backend``: seed a synthetic population and serve the reference eligibility API.

``serve`` creates and seeds the database when it is absent (``population.ensure_population``),
then runs the production stack (uvicorn + uvloop + httptools, N worker processes, the admin and
fault layers) through ``server.run_server``. ``seed`` only builds the database. Both end in one
clear line on a user error (the root ``onshi`` group turns ``OnshiError`` into it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from onshi.errors import OnshiError

if TYPE_CHECKING:
    from onshi.backend.population import EdgeRates

DEFAULT_DB = "onshi-backend.db"
APP_FACTORY = "onshi.backend.app:server_app"


def _limit(name: str) -> Any:
    """A default of ``overload.Limits``, read when ``serve`` runs (kept out of every
    ``onshi --help``); the help texts quote the same defaults."""

    def default() -> Any:
        from onshi.backend.overload import Limits

        return getattr(Limits(), name)

    return default


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
@click.option(
    "--max-in-flight",
    type=click.IntRange(min=1),
    default=_limit("max_in_flight"),
    help="Overload: requests handled at once per worker (default 256).",
)
@click.option(
    "--max-queue",
    type=click.IntRange(min=0),
    default=_limit("max_queue"),
    help="Overload: requests waiting for a slot; beyond, 503 + Retry-After (default 256).",
)
@click.option(
    "--queue-timeout",
    type=click.FloatRange(min=0.0, min_open=True),
    default=_limit("queue_timeout_s"),
    help="Overload: seconds from arrival to admission, else 503 (default 1.0).",
)
@click.option(
    "--retry-after",
    type=click.IntRange(min=0),
    default=_limit("retry_after_s"),
    help="Overload: the Retry-After seconds of a 503 (default 1).",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=_limit("max_connections"),
    help="Overload: open connections per worker; beyond, 503 and close (default 4096).",
)
@click.option(
    "--max-per-facility",
    type=click.IntRange(min=1),
    default=_limit("max_per_facility"),
    help="Overload: one facility credential's requests in flight or queued per worker; "
    "beyond, 429 (default 64).",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0.0, min_open=True),
    default=_limit("header_timeout_s"),
    help="Seconds for a request's headers to arrive, else close (default 10.0).",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(min=0.0, min_open=True),
    default=_limit("body_timeout_s"),
    help="Seconds for a request's body to arrive after its headers, else 408 (default 10.0).",
)
@click.option(
    "--allow-non-loopback",
    is_flag=True,
    help="Listen on a non-loopback --host on purpose (default: loopback only).",
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
    max_in_flight: int,
    max_queue: int,
    queue_timeout: float,
    retry_after: int,
    max_connections: int,
    max_per_facility: int,
    header_timeout: float,
    body_timeout: float,
    allow_non_loopback: bool,
) -> None:
    """Serve the eligibility API (seeding DB first if it does not exist)."""
    from onshi.backend import server
    from onshi.backend.faults import FaultConfig
    from onshi.backend.overload import Limits
    from onshi.backend.population import ensure_population

    server.check_host(host, allow_non_loopback=allow_non_loopback)
    config = FaultConfig.load(faults) if faults is not None else None
    limits = Limits(
        max_in_flight,
        max_queue,
        queue_timeout,
        retry_after,
        max_connections=max_connections,
        max_per_facility=max_per_facility,
        header_timeout_s=header_timeout,
        body_timeout_s=body_timeout,
    )
    sock = server.bind_socket(host, port)  # a busy port fails here, before seeding or printing
    try:
        summary = ensure_population(db, persons=persons)
        if summary is not None:
            click.echo(
                f"seeded {db}: {summary.persons} persons, {summary.cards} cards, "
                f"{summary.facilities} facilities in {summary.seconds:.1f} s",
                err=True,
            )
        click.echo(
            f"serving http://{host}:{port} ({workers} worker(s)), contract at /openapi.json",
            err=True,
        )
        click.echo(
            f"test credentials and example cards: onshi backend fixtures --db {db}", err=True
        )
        server.run_server(
            APP_FACTORY,
            db_path=db,
            host=host,
            port=port,
            workers=workers,
            faults=config,
            admin_token=admin_token,
            log_level=log_level,
            limits=limits,
            allow_non_loopback=allow_non_loopback,
            sock=sock,
        )
    finally:
        sock.close()


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
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="The day certificate and qualification dates are relative to (default: today).",
)
@click.option(
    "--rate",
    "rates",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set an edge-case rate (0..1), repeatable, e.g. --rate mislinked=0.01 "
    "(names: the EdgeRates fields; an unknown name lists them).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def seed(
    db: Path,
    persons: int,
    facilities: int | None,
    seed: str,
    as_of: dt.datetime | None,
    rates: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create DB and seed a synthetic national population into it."""
    from onshi.backend.population import ensure_population
    from onshi.backend.store import Store

    edge_rates = parse_rates(rates)
    if db.exists():
        raise OnshiError(f"{db} already exists", fix="seed into a new --db path or delete it")
    summary = ensure_population(
        db,
        persons=persons,
        facilities=facilities,
        seed=seed,
        rates=edge_rates,
        as_of=None if as_of is None else as_of.date(),
    )
    assert summary is not None
    with Store.open(db) as store:
        facility = (store.fixtures().get("facility") or [{}])[0]
        store_as_of = store.as_of()
    if as_json:
        doc = {
            "db": str(db),
            "persons": summary.persons,
            "qualifications": summary.qualifications,
            "cards": summary.cards,
            "facilities": summary.facilities,
            "seconds": round(summary.seconds, 3),
            "as_of": str(store_as_of),
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


def parse_rates(items: tuple[str, ...]) -> EdgeRates:
    """``NAME=VALUE`` options over the default :class:`EdgeRates`; one-line errors otherwise."""
    from onshi.backend.population import EdgeRates

    names = [f.name for f in dataclasses.fields(EdgeRates)]
    values: dict[str, float] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise OnshiError(f"--rate {item!r} is not NAME=VALUE", fix="write e.g. mislinked=0.01")
        if name not in names:
            raise OnshiError(f"--rate: unknown rate {name!r}", fix=f"use one of {', '.join(names)}")
        if name in values:
            raise OnshiError(f"--rate {name} is given twice", fix="give each rate once")
        try:
            values[name] = float(raw)
        except ValueError:
            raise OnshiError(
                f"--rate {name}={raw!r} is not a number", fix="give a probability in 0..1"
            ) from None
    rates = EdgeRates(**values)
    rates.check()
    return rates


@backend.command()
@click.option(
    "--db",
    "db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_DB,
    show_default=True,
    help="A database made by `onshi backend seed` or `serve`.",
)
@click.option("--kind", "kinds", multiple=True, help="Only this fixture kind (repeatable).")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print every example row as JSON, each with its ready request (or facility headers).",
)
def fixtures(db: Path, kinds: tuple[str, ...], as_json: bool) -> None:
    """Show the test population's example rows: facility credentials, cards and numbers for
    every outcome, each number row as a request body to paste (the API's field names,
    Birthdate as yyyyMMdd); send it with a facility's headers and Content-Type:
    application/json."""
    from onshi.backend.population import FIXTURE_KINDS
    from onshi.backend.store import Store

    if not db.is_file():
        raise OnshiError(f"{db}: no such database", fix="seed one with `onshi backend seed --db`")
    unknown = sorted(set(kinds) - set(FIXTURE_KINDS))
    if unknown:
        raise OnshiError(
            f"--kind {unknown[0]!r} is not a fixture kind",
            fix=f"use one of {', '.join(sorted(FIXTURE_KINDS))}",
        )
    with Store.open(db, create=False) as store:
        rows = store.fixtures()
    chosen = {
        k: [_with_request(k, row) for row in rows.get(k, [])] for k in (kinds or FIXTURE_KINDS)
    }
    if as_json:
        click.echo(json.dumps(chosen, ensure_ascii=False, default=str, indent=2))
        return
    for kind, items in chosen.items():
        click.echo(f"{kind} ({len(items)}): {FIXTURE_KINDS[kind]}")
        if items:
            click.echo(f"    {_example(kind, items[0])}")


def _with_request(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    """The fixture row plus what a client sends for it: ``headers`` for a facility, else a
    ``request`` (method, path, body in the API's names; null for cards, sent by a reader)."""
    from onshi.backend.examples import example_request, facility_headers

    if kind == "facility":
        return {**row, "headers": facility_headers(row)}
    return {**row, "request": example_request(kind, row)}


def _example(kind: str, row: dict[str, Any]) -> str:
    """One line a person can use: the credential headers, the card, or a request to paste."""
    if kind == "facility":
        headers = "  ".join(f"{k}: {v}" for k, v in row["headers"].items())
        return f"{headers}  ({row['kind']}, prefecture {row['prefecture']})"
    request = row.get("request")
    if request is None:
        return (
            f"card seed {row['seed']!r}, auth certificate serial {row['serial']:x} "
            "(a reader sends its certificate: onshi quickstart)"
        )
    body = json.dumps(request["body"], ensure_ascii=False)
    note = "  (only in outage mode: PUT /admin/outage-mode)" if kind == "demographics" else ""
    return f"{request['method']} {request['path']} {body}{note}"
