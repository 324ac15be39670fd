"""`onshi reader agent`: the reference reader as an agent on an MQTT broker."""

from __future__ import annotations

import asyncio
import os

import click

from onshi.errors import OnshiError


@click.group()
def reader() -> None:
    """The reference reader (顔認証付きカードリーダー) over the MQTT reader protocol."""


@reader.command()
@click.option(
    "--broker", "broker_url", required=True, metavar="URL", help="mqtt://ID:PASSWORD@host:port"
)
@click.option("--id", "reader_id", required=True, help="Reader id (its broker user name).")
@click.option(
    "--backend",
    "backend_url",
    default=None,
    metavar="URL",
    help="Backend base URL (default: none; every check then fails closed).",
)
@click.option(
    "--facility-code",
    envvar="ONSHI_FACILITY_CODE",
    default=None,
    help="Facility code for the backend [env ONSHI_FACILITY_CODE].",
)
@click.option(
    "--facility-secret",
    envvar="ONSHI_FACILITY_SECRET",
    default=None,
    help="Facility secret for the backend [env ONSHI_FACILITY_SECRET].",
)
def agent(
    broker_url: str,
    reader_id: str,
    backend_url: str | None,
    facility_code: str | None,
    facility_secret: str | None,
) -> None:
    """Run the reference reader as reader ID on the broker until Ctrl-C or SIGTERM.

    The harness publishes what the world does on onshi/v1/readers/ID/world/...; the reader
    publishes its states, screens, APDU summaries and results on .../out/... (docs/mqtt.md).
    The broker password comes from the URL or $ONSHI_MQTT_PASSWORD."""
    from onshi.mqtt.agent import ENV_PASSWORD, Agent, serve_until_signalled
    from onshi.mqtt.broker import BrokerAddress
    from onshi.mqtt.reader_host import backend_from_options, reader_host

    address = BrokerAddress.parse(broker_url)
    if address.password is None and os.environ.get(ENV_PASSWORD):
        address = BrokerAddress(
            address.host, address.port, address.username, os.environ[ENV_PASSWORD]
        )
    backend = backend_from_options(backend_url, facility_code, facility_secret)
    try:
        host = reader_host(reader_id, backend=backend)
        runner = Agent(host, address, reader_id)
    except ValueError as exc:
        raise OnshiError(str(exc), fix="pass --id with A-Z a-z 0-9 _ -") from None

    def online() -> None:
        click.echo(f"reader {reader_id} online at {address.url}", err=True)

    try:
        asyncio.run(serve_until_signalled(runner, on_online=online))
    finally:
        host.close()
