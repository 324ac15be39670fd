"""``onshi quickstart``: the click command; the run itself is :mod:`onshi.quickstart.run`."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import click

from onshi.commands.params import PROFILE_HELP, sigterm_unwinds
from onshi.quickstart.run import (
    CARD_ONLY_STEPS,
    CLEANUP_TIMEOUT,
    DEFAULT_PCAP,
    DEFAULT_STEPS,
    DEFAULT_TIMEOUT,
    run_quickstart,
)


@click.command("quickstart")
@click.option(
    "--profile",
    "profile_name",
    default="valid",
    show_default=True,
    metavar="NAME_OR_PATH",
    help=PROFILE_HELP,
)
@click.option(
    "--pcap",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_PCAP,
    show_default=True,
    help="Where to write the APDU trace (Wireshark/tshark decode it as ISO 7816).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1.0),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    metavar="SECONDS",
    help="Hard bound on the steps; stopping everything started then takes at most "
    f"{CLEANUP_TIMEOUT:g} s more.",
)
@click.option(
    "--seed", default="0", show_default=True, help="Seed of the challenge the card signs."
)
@click.option(
    "--pin",
    default=None,
    help="The PIN the patient types (default: the profile's); a wrong one shows 63 Cx.",
)
@click.option(
    "--backend/--no-backend",
    default=True,
    show_default=True,
    help="Also run PIN-mode 資格確認 against a reference backend started for the run. The card "
    "is then the population's registered card: --profile gives its token, PINs and behaviour, "
    "the population its holder and certificate dates. --no-backend shows the profile's own "
    "card (e.g. its expiring or revoked certificate) to the card path only.",
)
def quickstart(
    profile_name: str,
    pcap: Path,
    as_json: bool,
    timeout: float,
    seed: str,
    pin: str | None,
    backend: bool,
) -> None:
    """Run a reader's PIN-mode 資格確認 on an emulated card (the main job).

    Seeds a small reference-backend population in a temp dir and starts the backend on a
    loopback port, starts a private pcscd + vpcd and serves a card registered in that
    population. Through PC/SC (pyscard) it reads the token and the user-auth certificate,
    checks the certificate against the test CA, queries the PIN counter, verifies the PIN,
    signs a challenge and verifies the signature, reads 基本4情報 after the text PIN, then
    signs a backend challenge and asks POST /v1/eligibility/card (method pin), which must
    confirm a valid qualification of the card's holder. Exits 0 only if every step passed;
    needs root (pcscd).
    """
    from onshi.report.console import stderr_console

    progress = stderr_console()
    with ExitStack() as stack:
        stack.enter_context(sigterm_unwinds())
        if not as_json and progress.is_terminal:
            stack.enter_context(progress.status("onshi quickstart: backend, pcscd + vpcd, card…"))
        steps = DEFAULT_STEPS if backend else CARD_ONLY_STEPS
        result = run_quickstart(
            profile_name, pcap=pcap, timeout=timeout, seed=seed, pin=pin, steps=steps
        )
    if as_json:
        from onshi.report.console import echo_json

        echo_json(result.to_json())
    else:
        from onshi.report.console import stdout_console
        from onshi.report.quickstart import quickstart_view

        stdout_console().print(quickstart_view(result))
    if not result.passed:
        raise click.exceptions.Exit(1)
