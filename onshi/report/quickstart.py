"""Renderer for ``onshi quickstart``: the steps, their status words and timings, the verdict."""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from onshi.quickstart.eligibility import copay_text
from onshi.quickstart.run import QuickstartResult
from onshi.quickstart.steps import StepStatus

STATUS_STYLE = {
    StepStatus.PASSED: "green",
    StepStatus.FAILED: "bold red",
    StepStatus.SKIPPED: "dim",
}


def steps_table(result: QuickstartResult) -> Table:
    table = Table(
        title=f"onshi quickstart — profile {result.profile}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("step", ratio=2)
    table.add_column("result", no_wrap=True)
    table.add_column("SW", no_wrap=True)
    table.add_column("ms", justify="right", no_wrap=True)
    table.add_column("detail", ratio=3, overflow="fold")
    for index, step in enumerate(result.steps, start=1):
        table.add_row(
            str(index),
            step.title,
            Text(step.status.value, style=STATUS_STYLE[step.status]),
            "" if step.sw is None else f"{step.sw:04X}",
            "" if step.status is StepStatus.SKIPPED else f"{step.seconds * 1000:.1f}",
            step.detail,
        )
    return table


def quickstart_view(result: QuickstartResult) -> RenderableType:
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold", no_wrap=True)
    summary.add_column()
    summary.add_row("reader", result.reader or "-")
    summary.add_row("certificate", result.certificate_status or "not checked")
    tries = "-" if result.pin_tries is None else str(result.pin_tries)
    summary.add_row("PIN tries before", tries)
    found = result.eligibility
    if found is not None:
        summary.add_row("backend", str(found["backend"]))
        summary.add_row(
            "eligibility",
            f"SegmentOfResult {found['segment_of_result']}, "
            f"QualificationValidity {found['qualification_validity']}",
        )
        summary.add_row("insured", f"{found['name']} (born {found['birthdate']})")
        summary.add_row("insurer", f"{found['insurer_name']} ({found['insurer_number']})")
        summary.add_row("copay ratio", copay_text(found["copay_ratio"]))
    summary.add_row("APDUs", str(result.apdus))
    summary.add_row("pcap", str(result.pcap) if result.pcap else "not written")
    summary.add_row("time", f"{result.seconds:.2f} s (bound {result.timeout:g} s)")
    verdict = (
        Text("PASS: every step passed", style="bold green")
        if result.passed
        else Text("FAIL: see the failed step above", style="bold red")
    )
    summary.add_row("verdict", verdict)
    return Group(steps_table(result), summary)
