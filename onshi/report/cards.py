"""Renderers for card profiles: the ``onshi card list`` table and the ``card show`` view."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from onshi.profiles.facts import CertificateFacts, CertState, ProfileDetail, ProfileSummary

JST = dt.timezone(dt.timedelta(hours=9), "JST")
"""Certificate dates are shown in Japan time: the test PKI starts validity at 00:00 JST."""

CERT_STYLE: dict[CertState, str] = {
    CertState.VALID: "green",
    CertState.EXPIRING: "yellow",
    CertState.EXPIRED: "red",
    CertState.NOT_YET_VALID: "yellow",
    CertState.REVOKED: "bold red",
    CertState.ABSENT: "dim",
    CertState.UNKNOWN_ISSUER: "bold red",
    CertState.BAD_SIGNATURE: "bold red",
}


def cert_text(state: CertState) -> Text:
    return Text(state.value, style=CERT_STYLE[state])


def tries_text(remaining: int, max_tries: int, *, is_set: bool = True) -> Text:
    if not is_set:
        return Text("not set", style="dim")
    style = "bold red" if remaining == 0 else "yellow" if remaining < max_tries else "green"
    label = "blocked" if remaining == 0 else f"{remaining}/{max_tries}"
    return Text(label, style=style)


_UNBOUNDED = 10_000
"""A width no terminal has: measuring at it gives a table's true minimum (rich measures a
table's columns at the widths it would already have cut them to)."""


def _narrowest(console: Console, options: ConsoleOptions, table: Table) -> int:
    """The width below which rich would cut words of ``table``."""
    return Measurement.get(console, options.update_width(_UNBOUNDED), table).minimum


class ProfilesTable:
    """The shipped profiles, one per row, laid out for the width it is rendered at.

    rich shrinks a too-wide table by cutting its widest wrappable column, words and all, down
    to the width left. So each layout has a single wrappable column (the situation, which
    wraps at spaces) and the widest layout whose narrowest form still fits whole words is
    chosen: separate columns when wide; the situation under the name at 80 columns; the kind
    and then the PIN and certificate states folded into fewer columns below that.
    """

    def __init__(self, rows: Iterable[ProfileSummary]) -> None:
        self.rows = list(rows)

    def layouts(self) -> list[Table]:
        """Every layout, widest first."""
        return [self._table(split, fold_kind, fold_states)
                for split, fold_kind, fold_states in (
                    (True, False, False), (False, False, False),
                    (False, True, False), (False, True, True),
                )]  # fmt: skip

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        layouts = self.layouts()
        fitting = (t for t in layouts if _narrowest(console, options, t) <= options.max_width)
        yield next(fitting, layouts[-1])

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        layouts = self.layouts()
        unbounded = options.update_width(_UNBOUNDED)
        widest = Measurement.get(console, unbounded, layouts[0]).maximum
        return Measurement(_narrowest(console, options, layouts[-1]), widest).with_maximum(
            options.max_width
        )

    def _table(self, split: bool, fold_kind: bool, fold_states: bool) -> Table:
        headers: list[tuple[str, bool]] = []  # (header, wraps)
        if split:
            headers.append(("profile", False))
        headers.append(("situation" if split else "profile / situation", True))
        if not fold_kind:
            headers.append(("kind", False))
        if fold_states:
            headers.append(("PIN / certificates", False))
        else:
            headers += [("PIN", False), ("auth cert", False), ("sign cert", False)]
        rows = [self._cells(row, split, fold_kind, fold_states) for row in self.rows]
        table = Table(title="Card profiles", box=box.SIMPLE_HEAD, title_justify="left")
        for index, (header, wraps) in enumerate(headers):
            # rich measures a no_wrap column by its longest word; say its real width instead
            widest = max(_width(cells[index]) for cells in [[Text(h) for h, _ in headers], *rows])
            table.add_column(
                header,
                no_wrap=not wraps,
                min_width=None if wraps else widest,
                justify="right" if header == "PIN" else "left",
            )
        for cells in rows:
            table.add_row(*cells)
        return table

    @staticmethod
    def _cells(row: ProfileSummary, split: bool, fold_kind: bool, fold_states: bool) -> list[Text]:
        name = Text(row.name, style="bold cyan")
        situation = Text(row.headline, style="dim")
        if fold_kind:
            situation = Text.assemble(situation, "\n", (row.kind, "italic"))
        cells = [name, situation] if split else [Text.assemble(name, "\n", situation)]
        if not fold_kind:
            cells.append(Text(row.kind))
        pin = tries_text(row.pin_remaining, row.pin_max, is_set=row.pin_set)
        auth, sign = cert_text(row.auth_cert), cert_text(row.sign_cert)
        if fold_states:
            cells.append(Text.assemble("PIN ", pin, "\nauth ", auth, "\nsign ", sign))
        else:
            cells += [pin, auth, sign]
        return cells


def _width(text: Text) -> int:
    return max((cell_len(line) for line in text.plain.splitlines()), default=0)


def profiles_table(rows: Iterable[ProfileSummary]) -> ProfilesTable:
    """The ``onshi card list`` table (see :class:`ProfilesTable` for its layouts)."""
    return ProfilesTable(rows)


def _facts_grid() -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    return grid


def _certificate_rows(grid: Table, cert: CertificateFacts) -> None:
    label = "利用者証明用 (auth)" if cert.kind == "auth" else "署名用 (sign)"
    state = cert.checked or cert.declared
    grid.add_row(label, cert_text(state))
    if not cert.present:
        return
    grid.add_row("  serial", f"{cert.serial:x}" if cert.serial is not None else "-")
    grid.add_row("  subject", cert.subject or "-")
    grid.add_row("  issuer", cert.issuer or "-")
    assert cert.not_before is not None and cert.not_after is not None
    start, end = cert.not_before.astimezone(JST), cert.not_after.astimezone(JST)
    validity = f"{start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} JST"
    grid.add_row("  validity", validity)
    if cert.revoked_on is not None or cert.revocation_reason:
        grid.add_row("  revoked", f"{cert.revoked_on or '-'} ({cert.revocation_reason or '-'})")


def profile_view(detail: ProfileDetail) -> RenderableType:
    """Everything about one profile: holder, secrets, certificates, card and behaviour."""
    p = detail.profile
    holder = _facts_grid()
    holder.add_row(
        "name", p.holder.name + (f" ({p.holder.name_kana})" if p.holder.name_kana else "")
    )
    holder.add_row("address", p.holder.address)
    holder.add_row("birthdate", p.holder.birthdate.isoformat())
    holder.add_row("sex", f"{p.holder.sex.name.lower()} ({p.holder.sex})")
    holder.add_row("個人番号 (照合番号A)", p.my_number)
    holder.add_row("card expiry", p.card_expiry.isoformat())
    holder.add_row("security code", p.security_code)
    holder.add_row("照合番号B", p.collation_b)
    holder.add_row("registration", str(p.registration))

    secrets = Table(box=box.SIMPLE_HEAD)
    secrets.add_column("secret", style="bold")
    secrets.add_column("value")
    secrets.add_column("tries", justify="right")
    for label, secret in (
        ("利用者証明用暗証番号 (auth PIN, 0018)", p.auth_pin),
        ("署名用パスワード (sign password, 001B)", p.sign_password),
        ("券面事項入力補助用暗証番号 (text PIN, 0011)", p.text_pin),
    ):
        value = Text(secret.value) if secret.value is not None else Text("not set", style="dim")
        tries = tries_text(secret.remaining, secret.max_tries, is_set=secret.value is not None)
        secrets.add_row(label, value, tries)

    certs = _facts_grid()
    for cert in detail.certificates:
        _certificate_rows(certs, cert)

    card = _facts_grid()
    card.add_row("token", f"{p.token}")
    card.add_row("ATR", p.atr.hex(" ").upper())
    card.add_row("applications", "\n".join(detail.applications) or "-")
    card.add_row("auth cert needs PIN", "yes" if p.auth_cert_needs_pin else "no")
    b = p.behaviour
    behaviour = (
        "ideal (no latency, no drops)"
        if b.ideal
        else f"latency {b.latency_ms:g} ± {b.latency_jitter_ms:g} ms, drop rate {b.drop_rate:g}"
        f" ({'command or answer' if b.drop_phase == 'either' else b.drop_phase} lost)"
    )
    card.add_row("behaviour", behaviour)
    card.add_row("seed", p.seed)
    if p.tags:
        card.add_row("tags", ", ".join(p.tags))
    if p.source is not None:
        card.add_row("source", str(p.source))

    return Group(
        Text.assemble((p.name, "bold cyan"), " — ", p.description.strip()),
        Panel(holder, title="holder (基本4情報)", title_align="left"),
        Panel(secrets, title="secrets (test card: shown in clear)", title_align="left"),
        Panel(certs, title=f"certificates on {detail.today.isoformat()}", title_align="left"),
        Panel(card, title="card", title_align="left"),
    )
