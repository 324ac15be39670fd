"""CLI errors that tell the truth: JSON errors under --json, `card serve` with no pcscd, an
empty reader, and a `card list` that never cuts a word, whatever the terminal width.

Nothing here races a clock: a refused vpcd port cannot connect however long we wait, a fake
vpcd that listens is connected as soon as the kernel queues the connection, and an empty vpcd
slot stays empty.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from onshi.cli import main, wants_json
from onshi.profiles import list_profiles
from onshi.profiles.facts import ProfileSummary, summarize
from onshi.report.cards import profiles_table

TODAY = dt.date(2026, 6, 1)
SELECT_JPKI = "00A4040C0AD392F000260100000001"


def invoke(*args: str, **kw: object) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False, **kw)  # type: ignore[arg-type]


def json_error(result: Result) -> dict[str, object]:
    """Exit 2, nothing on stdout, exactly one JSON object on one line of stderr."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    doc = json.loads(line)
    assert set(doc) == {"error", "fix"} and doc["error"] and doc["fix"], doc
    return doc


def one_error_line(result: Result) -> str:
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "(fix: " in line and "Traceback" not in result.output
    return line


# -- --json errors ---------------------------------------------------------------------------


def test_a_user_error_of_a_json_command_is_a_json_object(tmp_path: Path) -> None:
    missing = str(tmp_path / "none.db")
    doc = json_error(invoke("backend", "fixtures", "--db", missing, "--json"))
    assert missing in str(doc["error"])
    # the same error without --json stays one plain line
    assert missing in one_error_line(invoke("backend", "fixtures", "--db", missing))


@pytest.mark.parametrize(
    "args",
    [
        ["card", "list", "--json", "--today", "yesterday"],  # a bad option value
        ["apdu", "--json", SELECT_JPKI],  # a missing option
        ["card", "list", "--json", "--bogus"],  # an unknown option
        ["readers", "--json", "--socket"],  # an option without its value
    ],
)
def test_usage_errors_of_a_json_command_are_json_objects(args: list[str]) -> None:
    doc = json_error(CliRunner().invoke(main, args))
    assert "--help" in str(doc["fix"])


def test_bad_apdu_hex_under_json_names_the_argument() -> None:
    doc = json_error(invoke("apdu", "--json", "--reader", "x", "00A4ZZ"))
    assert "00A4ZZ" in str(doc["error"])


def test_json_is_read_from_the_options_not_from_arguments_after_double_dash() -> None:
    assert wants_json(["card", "list", "--json"])
    assert not wants_json(["apdu", "--reader", "x", "--", "--json"])
    assert not wants_json(["card", "list"])


# -- card serve without a pcscd ----------------------------------------------------------------


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port bound but not listening: every connection to it is refused."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


@pytest.fixture
def fake_vpcd() -> Iterator[int]:
    """A listening loopback port: the kernel completes the card's connection at once."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        yield listener.getsockname()[1]


def test_serve_with_no_pcscd_fails_in_one_line_and_prints_no_reader(refused_port: int) -> None:
    args = ["card", "serve", "--profile", "valid", "--vpcd-port", str(refused_port)]
    result = invoke(*args, "--connect-timeout", "0.2", "--duration", "5")
    line = one_error_line(result)
    assert f"127.0.0.1:{refused_port}" in line and "--pcscd" in line
    assert "waiting" in result.stdout
    assert "reader" not in result.stdout and "pcscd socket" not in result.stdout
    assert "APDUs answered" not in result.stdout


def test_serve_prints_the_reader_once_vpcd_took_the_card(fake_vpcd: int, tmp_path: Path) -> None:
    env = {"PCSCLITE_CSOCK_NAME": str(tmp_path / "no-pcscd.comm")}
    args = ["card", "serve", "--profile", "valid", "--vpcd-port", str(fake_vpcd)]
    result = invoke(*args, "--connect-timeout", "30", "--duration", "0.1", env=env)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.index("waiting") < out.index("reader") < out.index("card inserted")
    assert "Virtual PCD 00 00" in out
    assert "none answers here" in out  # no pcscd socket is claimed that nobody serves
    assert "export PCSCLITE_CSOCK_NAME" not in out


def test_vpcd_port_with_a_private_pcscd_is_a_user_error() -> None:
    one_error_line(invoke("card", "serve", "--profile", "valid", "--pcscd", "--vpcd-port", "1"))


# -- card list at any width -------------------------------------------------------------------


def rows_on(day: dt.date) -> list[ProfileSummary]:
    return [summarize(p, day) for p in list_profiles(today=day)]


def render(width: int) -> list[str]:
    rows = rows_on(TODAY)
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, legacy_windows=False)
    console.print(profiles_table(rows))
    return out.getvalue().splitlines()


def assert_no_word_cut(lines: list[str], width: int) -> None:
    """Each row's block of lines holds every word of its name, situation, kind and both
    certificate states, as many times as the row states them, and whole."""
    assert all(len(line.rstrip()) <= width for line in lines)
    assert not any("…" in line for line in lines), "\n".join(lines)
    rows = rows_on(TODAY)
    starts = [
        next(i for i, line in enumerate(lines) if line.split()[:1] == [row.name]) for row in rows
    ]
    for row, start, end in zip(rows, starts, [*starts[1:], len(lines)], strict=True):
        block = Counter(w for line in lines[start:end] for w in line.split())
        expected = Counter([row.name, *row.headline.split(), *row.kind.split()])
        expected.update([*row.auth_cert.value.split(), *row.sign_cert.value.split()])
        missing = expected - block
        assert not missing, f"{row.name}: {dict(missing)} cut at width {width}"


@pytest.mark.parametrize("width", [60, 80, 120])
def test_card_list_never_cuts_a_word(width: int) -> None:
    assert_no_word_cut(render(width), width)


def test_card_list_in_a_pipe_keeps_words_whole() -> None:
    """A pipe is not a terminal: rich lays the table out at $COLUMNS, else 80."""
    result = invoke("card", "list", "--today", TODAY.isoformat(), env={"COLUMNS": "80"})
    assert result.exit_code == 0
    assert_no_word_cut(result.stdout.splitlines(), 80)


# -- an empty reader ---------------------------------------------------------------------------


@pytest.mark.pcsc
def test_apdu_on_an_empty_slot_says_no_card() -> None:
    """A private pcscd with a card in slot 0: slot 1 is empty, whatever the wait."""
    from onshi.card import Card
    from onshi.profiles import load_profile
    from onshi.transport.pcsc import NoCardError, PcscTransport
    from onshi.transport.pcscd import PrivatePcscd

    with PrivatePcscd() as pcscd:
        pcscd.connect_card(Card.from_profile(load_profile("valid")), slot=0)
        empty = "Virtual PCD 00 01"
        with pytest.raises(NoCardError) as info:
            PcscTransport(empty, socket_path=pcscd.socket_path).connect()
        assert info.value.reader == empty
        assert info.value.code in (0x8010000C, 0x80100069)  # NO_SMARTCARD / W_REMOVED_CARD
        args = ["apdu", "--socket", str(pcscd.socket_path), "--reader", empty, SELECT_JPKI]
        line = one_error_line(invoke(*args, "--card-timeout", "0"))
        assert line.startswith(f"error: no card in reader '{empty}'")
        doc = json_error(invoke(*args, "--card-timeout", "0", "--json"))
        assert doc["error"] == f"no card in reader '{empty}'"
