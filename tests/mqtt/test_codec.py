"""The sans-I/O codec: every shipped schema round-trips its examples, each malformed input
gives one `MessageError` naming the message and the field, and fuzzed input never raises
anything else."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onshi.mqtt import topics
from onshi.mqtt.codec import (
    MAX_PAYLOAD,
    MESSAGES,
    ConsentAnswered,
    Envelope,
    MessageError,
    PinTyped,
    ResultReported,
    ScreenShown,
    decode,
    encode,
    schema,
    schema_file,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "mqtt.md"


def topic_for(name: str, reader_id: str = "r1") -> str:
    if name == "status":
        return topics.status_topic(reader_id)
    direction, short = name.split("/")
    return f"{topics.reader_root(reader_id)}/{direction}/{short}"


EXAMPLES = [(name, ex) for name in MESSAGES for ex in schema(name)["examples"]]


def test_every_schema_is_shipped_and_mapped() -> None:
    shipped = {
        p.name
        for p in resources.files("onshi.mqtt").joinpath("schemas").iterdir()
        if p.name.endswith(".json")
    }
    assert shipped == {schema_file(name) for name in MESSAGES}
    assert all(schema(name)["examples"] for name in MESSAGES)


@pytest.mark.parametrize(("name", "example"), EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_schema_examples_round_trip(name: str, example: dict[str, object]) -> None:
    envelope = decode(topic_for(name), json.dumps(example, ensure_ascii=False).encode())
    assert envelope.reader_id == "r1" and type(envelope.body) is MESSAGES[name]
    topic, payload = encode("r1", envelope.body, at=envelope.at)
    assert topic == topic_for(name)
    assert json.loads(payload) == example
    assert decode(topic, payload) == envelope


@pytest.mark.parametrize(("name", "example"), EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_docs_show_every_example(name: str, example: dict[str, object]) -> None:
    """docs/mqtt.md is what a vendor builds from: it carries each schema example verbatim."""
    docs = DOCS.read_text(encoding="utf-8")
    assert f"`{topic_for(name, 'ID').replace('/ID/', '/{id}/')}`" in docs
    assert json.dumps(example, ensure_ascii=False) in docs


PIN = topics.world_topic("r1", "pin-typed")
MALFORMED = [
    # (case, topic, payload, message named, field named)
    ("bad JSON", PIN, b'{"at": 1, "digits": "12', "world/pin-typed", "payload"),
    ("not UTF-8", PIN, b'{"at": 1, "digits": "\xff"}', "world/pin-typed", "payload"),
    ("not an object", PIN, b"[1, 2]", "world/pin-typed", "payload"),
    ("NaN", PIN, b'{"at": NaN, "digits": "1"}', "world/pin-typed", "payload"),
    ("huge number", PIN, b'{"at": 1e999, "digits": "1"}', "world/pin-typed", "payload"),
    ("oversize", PIN, b" " * (MAX_PAYLOAD + 1), "world/pin-typed", "payload"),
    ("wrong type", PIN, b'{"at": 1, "digits": 1234}', "world/pin-typed", "digits"),
    ("bad pattern", PIN, b'{"at": 1, "digits": "12a4"}', "world/pin-typed", "digits"),
    (
        "missing field",
        topics.world_topic("r1", "method-chosen"),
        b'{"at": 1}',
        "world/method-chosen",
        "method",
    ),
    ("missing time", PIN, b'{"digits": "1234"}', "world/pin-typed", "at"),
    ("negative time", PIN, b'{"at": -1, "digits": "1234"}', "world/pin-typed", "at"),
    ("unknown field", PIN, b'{"at": 1, "digits": "1", "pin": "1"}', "world/pin-typed", "pin"),
    (
        "bad enum",
        topics.world_topic("r1", "method-chosen"),
        b'{"at": 1, "method": "iris"}',
        "world/method-chosen",
        "method",
    ),
    (
        "nested field",
        topics.out_topic("r1", "result"),
        b'{"at": 1, "outcome": "ok", "fields": {"Flg": [1]}}',
        "out/result",
        "fields.Flg",
    ),
    (
        "unknown message",
        topics.world_topic("r1", "iris-scanned"),
        b'{"at": 1}',
        "world/iris-scanned",
        "topic",
    ),
    (
        "wrong topic version",
        "onshi/v2/readers/r1/world/pin-typed",
        b'{"at": 1, "digits": "1234"}',
        "onshi/v2/readers/r1/world/pin-typed",
        "topic",
    ),
    ("foreign topic", "other/v1/x", b"{}", "other/v1/x", "topic"),
    ("bad reader id", "onshi/v1/readers/harness/world/pin-typed", b"{}", None, "topic"),
    ("bad layout", "onshi/v1/readers/r1/world/pin-typed/x", b"{}", None, "topic"),
]


@pytest.mark.parametrize(
    ("topic", "payload", "message", "field"),
    [m[1:] for m in MALFORMED],
    ids=[m[0] for m in MALFORMED],
)
def test_malformed_message_names_message_and_field(
    topic: str, payload: bytes, message: str | None, field: str
) -> None:
    with pytest.raises(MessageError) as refused:
        decode(topic, payload)
    assert refused.value.message == (message or topic)
    assert refused.value.field == field


def test_a_pin_never_appears_in_an_error_or_repr() -> None:
    with pytest.raises(MessageError) as refused:
        decode(PIN, b'{"at": 1, "digits": "98a7"}')
    assert "98a7" not in str(refused.value)
    assert "4321" not in repr(PinTyped(digits="4321"))


def test_encode_refuses_what_the_other_side_would_refuse() -> None:
    with pytest.raises(MessageError) as refused:
        encode("r1", ScreenShown(code="Not A Code", text="x"), at=0.0)
    assert (refused.value.message, refused.value.field) == ("out/screen", "code")
    with pytest.raises(MessageError) as refused:
        encode("r1", ConsentAnswered(item="medication", agreed=True), at=float("inf"))
    assert refused.value.field in ("at", None)
    with pytest.raises(MessageError) as refused:
        encode("r/1", PinTyped(digits="1234"), at=0.0)
    assert refused.value.field == "reader_id"


def test_result_fields_survive_a_round_trip() -> None:
    body = ResultReported(outcome="eligible", fields={"A": "1", "B": 2, "C": None, "D": True})
    topic, payload = encode("r1", body, at=3.25)
    assert decode(topic, payload) == Envelope("r1", 3.25, body)


# --- fuzz --------------------------------------------------------------------------------

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
)
json_values = (
    scalars
    | st.lists(scalars, max_size=3)
    | st.dictionaries(st.text(max_size=6), scalars, max_size=3)
)
known_topics = st.sampled_from([topic_for(n) for n in MESSAGES])


def _decode_or_refuse(topic: str, payload: bytes) -> None:
    try:
        envelope = decode(topic, payload)
    except MessageError:
        return
    # what decodes also re-encodes to the same message
    again = decode(*encode(envelope.reader_id, envelope.body, at=envelope.at))
    assert again == envelope


@settings(max_examples=300, deadline=None)
@given(topic=st.one_of(known_topics, st.text(max_size=60)), payload=st.binary(max_size=200))
def test_fuzz_bytes_only_ever_raise_message_error(topic: str, payload: bytes) -> None:
    _decode_or_refuse(topic, payload)


@settings(max_examples=250, deadline=None)
@given(
    example=st.sampled_from(EXAMPLES),
    changes=st.dictionaries(
        st.sampled_from(["at", "digits", "score", "method", "fields", "profile", "state", "x"]),
        json_values,
        max_size=3,
    ),
    drop=st.sets(
        st.sampled_from(["at", "digits", "agreed", "state", "outcome", "item"]), max_size=2
    ),
)
def test_fuzz_mutated_examples_decode_or_name_the_field(
    example: tuple[str, dict[str, object]], changes: dict[str, object], drop: set[str]
) -> None:
    name, doc = example
    mutated = {k: v for k, v in {**doc, **changes}.items() if k not in drop}
    _decode_or_refuse(topic_for(name), json.dumps(mutated).encode())


def test_deep_nesting_is_a_message_error_not_a_recursion_error() -> None:
    with pytest.raises(MessageError) as refused:
        decode(PIN, b"[" * 60000)
    assert refused.value.field == "payload"
