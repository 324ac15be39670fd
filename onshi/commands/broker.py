"""`onshi broker`: a private mosquitto for the reader protocol, until stopped."""

from __future__ import annotations

import json
import threading

import click

from onshi.commands.params import stop_on_sigterm, wait_until_stopped


@click.command()
@click.option(
    "--reader",
    "readers",
    multiple=True,
    metavar="ID",
    help="A reader account (repeatable): it may use only its own topics.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Loopback address to listen on (127.0.0.1 or ::1).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Stop after this long (default: until Ctrl-C or SIGTERM).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the URLs and credentials as JSON.")
def broker(readers: tuple[str, ...], host: str, duration: float | None, as_json: bool) -> None:
    """Start a private mosquitto on loopback with one account per --reader and one for the
    harness, print how to connect, and run until Ctrl-C, SIGTERM or --duration (then stop it
    by its PID and remove its files). Each reader may read only its own world/ events and
    write only its own out/ messages and status; the harness publishes to every reader."""
    from onshi.mqtt.broker import Broker

    stop = threading.Event()
    with stop_on_sigterm(stop), Broker(readers, host=host) as running:
        address = running.address
        accounts = {r: address.with_credentials(running.credentials(r)) for r in running.readers}
        harness = address.with_credentials(running.harness)
        assert running.process is not None
        if as_json:
            doc = {
                "url": address.url,
                "pid": running.process.pid,
                "harness": {"username": harness.username, "url": harness.login_url},
                "readers": {r: {"username": r, "url": a.login_url} for r, a in accounts.items()},
            }
            click.echo(json.dumps(doc, ensure_ascii=False))
        else:
            click.echo(f"broker: {address.url} (mosquitto pid {running.process.pid})")
            click.echo(f"harness: {harness.login_url}")
            for reader_id, account in accounts.items():
                click.echo(f"reader {reader_id}: {account.login_url}")
            click.echo(
                "run a reader: onshi reader agent --broker URL --id ID; stop with Ctrl-C",
                err=True,
            )
        wait_until_stopped(stop, duration)
