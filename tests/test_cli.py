"""The ``onshi`` command line through click's CliRunner: data commands, JSON and user errors.

Every user error must end in exactly one line ``error: <message> (fix: ...)`` on stderr with
exit status 2 and no traceback. The commands that need pcscd + vpcd are exercised for real in
``tests/cli/test_pcsc_e2e.py``.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from onshi import cli
from onshi.cli import main
from onshi.pki import card_serial
from onshi.profiles import list_profiles, load_profile
from onshi.trace import ApduTrace

TODAY = "2026-06-01"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def assert_one_line_error(result: Result, *needles: str) -> str:
    """Exit 2, nothing on stdout, one ``error: ... (fix: ...)`` line on stderr."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    (line,) = lines
    assert line.startswith("error: ") and "(fix: " in line, line
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in line, line
    return line


COMMANDS = [
    [],
    ["card"],
    ["card", "list"],
    ["card", "show"],
    ["card", "serve"],
    ["apdu"],
    ["readers"],
    ["quickstart"],
]


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "onshi")
def test_every_command_has_help(path: list[str]) -> None:
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Usage: ")


def test_root_help_lists_the_commands() -> None:
    out = invoke("--help").stdout
    for name in ("card", "apdu", "readers", "quickstart"):
        assert f"  {name} " in out


# -- card list -----------------------------------------------------------------------------------


def test_card_list_json_is_a_list_of_every_profile() -> None:
    result = invoke("card", "list", "--json", "--today", TODAY)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    names = [p.name for p in list_profiles(today=dt.date.fromisoformat(TODAY))]
    assert [r["name"] for r in rows] == names
    by_name = {r["name"]: r for r in rows}
    valid = by_name["valid"]
    assert valid["token"] == "JPKIAPICCTOKEN2" and valid["kind"] == "My Number card"
    assert (valid["auth_cert"], valid["sign_cert"]) == ("valid", "valid")
    assert valid["pin_tries_left"] == valid["pin_max_tries"] == 3
    assert by_name["pin-locked"]["pin_tries_left"] == 0
    assert by_name["pin-nearly-locked"]["pin_tries_left"] == 1
    assert by_name["cert-revoked"]["auth_cert"] == "revoked"
    assert by_name["cert-expiring"]["auth_cert"] == "expiring"
    assert by_name["cert-expired"]["auth_cert"] == "expired"
    assert by_name["cert-not-yet-valid"]["auth_cert"] == "not yet valid"
    assert by_name["face-auth-card"]["sign_cert"] == "absent"
    assert by_name["face-auth-card"]["pin_set"] is False
    assert by_name["valid"]["pin_set"] is True
    assert by_name["android"]["kind"] == "Android"
    assert all(r["situation"] and r["headline"] for r in rows)


def test_card_list_table_shows_names_and_states() -> None:
    result = invoke("card", "list", "--today", TODAY)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for name in ("valid", "pin-locked", "cert-revoked", "face-auth-card"):
        assert name in out
    for state in ("valid", "expiring", "expired", "revoked", "absent", "blocked"):
        assert state in out


# -- card show -----------------------------------------------------------------------------------


def test_card_show_json_has_every_fact() -> None:
    result = invoke("card", "show", "valid", "--json", "--today", TODAY)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    profile = load_profile("valid", today=dt.date.fromisoformat(TODAY))
    assert data["holder"]["name"] == profile.holder.name
    assert data["holder"]["address"] == profile.holder.address
    assert data["holder"]["birthdate"] == profile.holder.birthdate.isoformat()
    assert data["secrets"]["auth_pin"]["value"] == profile.auth_pin.value
    assert data["secrets"]["sign_password"]["value"] == profile.sign_password.value
    assert data["collation_b"] == profile.collation_b
    assert data["atr"] == profile.atr.hex().upper()
    auth, sign = data["certificates"]
    assert auth["kind"] == "auth" and auth["status"] == "valid"
    assert auth["serial"] == f"{card_serial(profile.seed, 'auth'):x}"
    assert sign["serial"] == f"{card_serial(profile.seed, 'sign'):x}"
    assert "JPKI-TEST" in auth["issuer"]
    assert auth["subject"].startswith("CN=")
    assert data["applications"][:3] == ["JPKI AP", "券面事項入力補助AP", "券面AP"]


def test_card_show_asks_the_card_which_applications_exist() -> None:
    data = json.loads(invoke("card", "show", "juki-card", "--json", "--today", TODAY).stdout)
    assert "JPKI AP" in data["applications"]
    assert "券面AP" not in data["applications"]
    assert data["certificates"][0]["status"] == "absent"


def test_card_show_table_mentions_the_secrets_and_status() -> None:
    result = invoke("card", "show", "cert-revoked", "--today", TODAY)
    assert result.exit_code == 0, result.output
    profile = load_profile("cert-revoked", today=dt.date.fromisoformat(TODAY))
    out = result.stdout
    assert profile.holder.name in out
    assert profile.collation_b in out
    assert "revoked" in out
    assert profile.auth_pin.value is not None and profile.auth_pin.value in out


@pytest.mark.parametrize("name", [p.name for p in list_profiles()])
def test_declared_state_matches_what_the_pki_says(name: str) -> None:
    """The list (declared dates) and show (the PKI's check of the minted certificate) agree."""
    listed = {
        r["name"]: r for r in json.loads(invoke("card", "list", "--json", "--today", TODAY).stdout)
    }[name]
    shown = json.loads(invoke("card", "show", name, "--json", "--today", TODAY).stdout)
    auth, sign = shown["certificates"]
    assert (auth["status"], sign["status"]) == (listed["auth_cert"], listed["sign_cert"])
    human = invoke("card", "show", name, "--today", TODAY)
    assert human.exit_code == 0 and name in human.stdout and shown["collation_b"] in human.stdout


# -- user errors -----------------------------------------------------------------------------------


def test_unknown_profile_is_one_line() -> None:
    line = assert_one_line_error(invoke("card", "show", "no-such-card"), "no-such-card")
    assert "valid" in line  # the fix lists the known profiles


def test_malformed_profile_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "extends: valid\ndescription: a bad PIN\nauth_pin:\n  value: '12a4'\n", encoding="utf-8"
    )
    for args in (
        ["card", "show", str(bad)],
        ["card", "serve", "--profile", str(bad), "--duration", "1"],
        ["quickstart", "--profile", str(bad)],
    ):
        assert_one_line_error(invoke(*args), "bad.yaml", "auth_pin")


def test_profile_yaml_syntax_error_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: [unclosed\n", encoding="utf-8")
    assert_one_line_error(invoke("quickstart", "--profile", str(bad)), "broken.yaml")


@pytest.mark.parametrize("text", ["00A4ZZ", "00A", "00 A4 04"])
def test_bad_apdu_hex_is_one_line_before_any_pcsc(text: str) -> None:
    result = invoke("apdu", "--reader", "Virtual PCD 00 00", "00A4040C", text)
    assert_one_line_error(result, text)


def test_unanswered_socket_is_one_line(tmp_path: Path) -> None:
    result = invoke("readers", "--socket", str(tmp_path / "nothing.comm"))
    assert_one_line_error(result, "nothing.comm")


def test_unwritable_pcap_is_one_line(tmp_path: Path) -> None:
    from onshi.commands.params import write_pcap
    from onshi.errors import OnshiError
    from onshi.trace import ApduTrace, Direction

    trace = ApduTrace()
    trace.record(Direction.ATR, b"\x3b\x00", 1.0)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OnshiError, match="cannot write the pcap") as info:
        write_pcap(trace, blocker / "x.pcap")
    assert info.value.fix


@pytest.mark.parametrize(
    "args",
    [
        ["card", "serve"],
        ["card", "serve", "--profile", "valid", "--slot", "2"],
        ["card", "serve", "--profile", "valid", "--duration", "-1"],
        ["apdu", "00A4040C"],
        ["apdu", "--reader", "x"],
        ["quickstart", "--timeout", "0"],
        ["card", "list", "--today", "yesterday"],
        ["nope"],
    ],
)
def test_bad_arguments_are_usage_errors(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "Usage:" in result.stderr
    assert "Traceback" not in result.output


def test_ctrl_c_exits_130_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_args: object, **_kw: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("onshi.profiles.facts.summarize", interrupted)
    result = invoke("card", "list")
    assert result.exit_code == 130
    assert result.stdout == "" and result.stderr == ""


def test_internal_errors_keep_their_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kw: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("onshi.profiles.facts.summarize", broken)
    result = CliRunner().invoke(main, ["card", "list"])
    assert isinstance(result.exception, ZeroDivisionError)


# -- lazily mounted groups ---------------------------------------------------------------------


def test_a_broken_optional_group_does_not_break_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    """A group whose module fails to import is listed as unavailable; other commands work."""
    monkeypatch.setitem(cli._COMMANDS, "broken", ("onshi.cli_missing_for_test", "broken"))
    monkeypatch.setattr(cli, "_OPTIONAL", cli._OPTIONAL | {"broken"})
    exists = cli._module_exists
    monkeypatch.setattr(
        cli, "_module_exists", lambda name: name == "onshi.cli_missing_for_test" or exists(name)
    )
    assert "broken" in invoke("--help").stdout
    assert_one_line_error(invoke("broken"), "unavailable")
    assert invoke("card", "list", "--json").exit_code == 0


def test_an_absent_optional_group_is_not_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(cli._COMMANDS, "ghost", ("onshi.no_such_module", "ghost"))
    monkeypatch.setattr(cli, "_OPTIONAL", cli._OPTIONAL | {"ghost"})
    assert "ghost" not in invoke("--help").stdout
    assert CliRunner().invoke(main, ["ghost"]).exit_code == 2


def test_backend_group_is_mounted() -> None:
    assert importlib.util.find_spec("onshi.backend.cli") is not None, "onshi/backend/cli.py"
    result = invoke("backend", "--help")
    assert result.exit_code == 0, result.output
    assert "serve" in result.stdout
    assert isinstance(cli.main.get_command(click.Context(cli.main), "backend"), click.Group)


def test_serve_without_pcscd_fails_after_connect_timeout(tmp_path: Path) -> None:
    """Nothing takes the card on a refused vpcd port: one error line, exit 2, no reader or
    socket printed as if live, and the pcap is still written on the way out."""
    import socket

    pcap = tmp_path / "none.pcap"
    with socket.socket() as held:  # bound, not listening: every connection is refused
        held.bind(("127.0.0.1", 0))
        port = str(held.getsockname()[1])
        args = ["card", "serve", "--profile", "valid", "--vpcd-port", port, "--pcap", str(pcap)]
        result = invoke(*args, "--connect-timeout", "0.2")
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "(fix: " in line and f"127.0.0.1:{port}" in line
    assert "pcscd socket" not in result.stdout and "APDUs answered" not in result.stdout
    assert len(ApduTrace.read_pcap(pcap)) == 0


def test_card_show_and_quickstart_accept_a_profile_file(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        "extends: valid\ndescription: My own demo card\nseed: valid\n"
        "auth_pin:\n  value: '4321'\n  remaining: 2\n",
        encoding="utf-8",
    )
    data = json.loads(invoke("card", "show", str(mine), "--json").stdout)
    assert data["name"] == "mine" and data["source"] == str(mine)
    assert data["secrets"]["auth_pin"] == {"value": "4321", "remaining": 2, "max_tries": 3}


def test_statuses_hold_on_any_day_because_profile_dates_are_relative() -> None:
    def states(day: str) -> list[tuple[str, str, str]]:
        rows = json.loads(invoke("card", "list", "--json", "--today", day).stdout)
        return [(r["name"], r["auth_cert"], r["sign_cert"]) for r in rows]

    assert states("2026-06-01") == states("2031-02-28") == states("2027-12-31")
