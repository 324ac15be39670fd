"""The thin layer between protocol messages and the reference reader's own events/actions.

The protocol (`codec`) speaks for any vendor's reader; `onshi.reader` is ours. World messages
become reader events here, and the reader's screen and result actions become outputs, so the
agent's reader adapter stays a few lines. Field names already match, so this is a table.
"""

from __future__ import annotations

from onshi.apdu import CommandAPDU, describe_command
from onshi.mqtt import codec
from onshi.reader import actions, events
from onshi.reader.results import ReaderResult


def reader_events(body: codec.WorldEvent) -> tuple[events.Event, ...]:
    """What the reader sees when the world does `body` (a card face's OCR is its own event)."""
    match body:
        case codec.CardPresented(collation_b=None):
            return (events.CardInserted(),)
        case codec.CardPresented(collation_b=ocr):
            return (events.CardInserted(), events.CardFaceScanned(collation_b=ocr))
        case codec.CardRemoved():
            return (events.CardRemoved(),)
        case codec.FacePresented(score=score):
            return (events.FaceCaptured(score=score),)
        case codec.PinTyped(digits=digits):
            return (events.PinEntered(digits=digits),)
        case codec.MethodChosen(method=method):
            return (events.MethodChosen(method=events.Method(method)),)
        case codec.ConsentAnswered(item=item, agreed=agreed):
            return (events.ConsentAnswered(item=item, agreed=agreed),)
        case codec.StaffModeSwitched(mode=mode, operator_id=operator_id):
            return (
                events.StaffSwitchedMode(mode=events.ReaderMode(mode), operator_id=operator_id),
            )
    raise TypeError(f"not a world event: {body!r}")


def screen_output(action: actions.ShowScreen) -> codec.ScreenShown:
    return codec.ScreenShown(code=action.code or str(action.screen), text=action.message)


def result_output(result: ReaderResult) -> codec.ResultReported:
    """The result's public fields (R-5.6 names); values that are not JSON scalars as text."""
    fields = {
        k: v if v is None or isinstance(v, str | int | float | bool) else str(v)
        for k, v in result.public.items()
    }
    return codec.ResultReported(outcome=str(result.outcome), fields=fields)


def apdu_output(command: bytes, response: bytes) -> codec.ApduSummary:
    """An exchange without its data: a VERIFY's data is a PIN and must not leave the reader."""
    cmd = CommandAPDU.parse(command)
    return codec.ApduSummary(
        header=command[:4].hex().upper(),
        name=describe_command(cmd)[:200],
        lc=len(cmd.data),
        response_length=max(len(response) - 2, 0),
        sw=response[-2:].hex().upper() if len(response) >= 2 else "0000",
    )
