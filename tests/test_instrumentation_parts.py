"""The instrumentation's parts on their own: SSE parsing, routes, redaction, settings,
and the per-request chat call's bounded memory."""

from __future__ import annotations

import itertools
import json
import re

import pytest
from memory import peak_growth

from chatspan.config import DEFAULT_MAX_CONTENT_CHARS, CaptureSettings
from chatspan.instrumentation import build_telemetry, routing
from chatspan.instrumentation.chat_call import ChatCall
from chatspan.instrumentation.redaction import Redactor
from chatspan.instrumentation.routing import (
    CHAT,
    ChatRoute,
    Router,
    dify_routes,
    openai_routes,
    read_custom_routes,
)
from chatspan.instrumentation.shapes.dify import DIFY
from chatspan.instrumentation.shapes.dify_identity import app_key_digest
from chatspan.instrumentation.sse import EventBuffer, event_data

from spans import SpanRecorder

EVENTS = [
    b'data: {"event": "message", "answer": "Hel"}\n\n',
    b"event: ping\n\n",
    b": a comment\n\n",
    b'data: {"event": "message", "answer": "lo"}\r\n\r\n',
    b"event: custom\ndata: line one\n\n",
]
EVENT_DATA = [
    b'{"event": "message", "answer": "Hel"}',
    b'{"event": "message", "answer": "lo"}',
    b"line one",
]


def _read(buffer: EventBuffer, chunks) -> bytes:
    complete = b"".join(buffer.take() for chunk in chunks if buffer.add([chunk]))
    return complete + buffer.take(final=True)


def test_sse_events_are_the_same_however_the_bytes_are_split():
    stream = b"".join(EVENTS)
    whole = _read(EventBuffer(), [stream])
    assert event_data(whole) == EVENT_DATA
    for split in range(1, len(stream)):
        buffer = EventBuffer(batch_bytes=1)  # a batch at every chunk: splits everywhere
        assert _read(buffer, [stream[:split], stream[split:]]) == whole
    assert _read(EventBuffer(batch_bytes=1), [bytes([b]) for b in stream]) == whole


def test_an_oversized_event_is_dropped_as_it_passes():
    buffer = EventBuffer(max_event_bytes=1024, batch_bytes=4096)
    huge = b'data: {"event": "tts_message", "audio": "' + b"A" * 100_000 + b'"}\n\n'
    complete = b""
    for start in range(0, len(huge), 4096):
        if buffer.add([huge[start : start + 4096]]):
            complete += buffer.take()
        assert buffer.held <= 4096 + 1024
    complete += _read(buffer, [EVENTS[0]])
    assert event_data(complete) == [EVENT_DATA[0]]
    assert buffer.skipped_events == 1


def test_sse_event_data_is_read_as_the_spec_reads_it():
    events = (
        b'data: {"a":\ndata:  1}\n\n'  # consecutive data lines, joined with LF
        b"data: one\nid: 7\ndata\ndata:two\n\n"  # other fields between; a bare "data"
        b"data: single\n\n"
        b"event: named\ndata: after a field\n\n"
        b": a comment\n\n"
        b"database: not a data line\n\n"
    )
    assert event_data(events) == [b'{"a":\n 1}', b"one\n\ntwo", b"single", b"after a field"]
    # One data line per event (Dify, OpenAI): each line is its event's data.
    assert event_data(b"data: x\n\ndata:y\n\ndata\n\n") == [b"x", b"y", b""]


def test_sse_lines_may_end_in_a_bare_cr_even_across_chunks():
    """CR LF, LF and a bare CR all end a line, whichever chunk the CR and LF arrive in."""
    stream = b'data: {"x":\r\ndata: 1}\r\rdata: two\r\n\r\ndata: three\n\rdata: four\r\r'
    expected = [b'{"x":\n1}', b"two", b"three", b"four"]
    assert event_data(_read(EventBuffer(), [stream])) == expected
    for split in range(1, len(stream)):
        buffer = EventBuffer(batch_bytes=1)
        assert event_data(_read(buffer, [stream[:split], stream[split:]])) == expected, split
    assert event_data(_read(EventBuffer(batch_bytes=1), [bytes([b]) for b in stream])) == expected


def test_a_custom_route_reads_multi_line_data_events():
    """A custom route's stream of pretty-printed JSON, one data line per JSON line, with
    CR line ends: the answer is what the events' data, joined per the spec, say."""
    (route,), problems = read_custom_routes(
        json.dumps([{"path": "/ask", "stream_answer": "delta.text", "message_id": "id"}])
    )
    assert problems == []
    telemetry = build_telemetry(SpanRecorder().provider)
    match = Router([route]).match("POST", "/ask")

    def event(data: dict) -> bytes:
        lines = json.dumps(data, indent=2).split("\n")
        return b"".join(b"data: " + line.encode() + b"\r" for line in lines) + b"\r"

    stream = b"".join(
        event({"id": "r1", "delta": {"text": piece}}) for piece in ("Multi", "-line ", "data")
    )
    for cut in (len(stream), 5, 1):
        chat = ChatCall(telemetry, match, None)
        chat.response_started(200, "text/event-stream")
        chat.body_chunks([stream[i : i + cut] for i in range(0, len(stream), cut)])
        chat.finish()
        assert chat.response.answer.text() == "Multi-line data"
        assert chat.response.message_id == "r1"


def test_router_matches_dify_and_openai_routes():
    router = Router([*dify_routes(), *openai_routes()])
    assert router.match("POST", "/v1/chat-messages").route.operation == "chat"
    assert router.match("POST", "/v1/chat-messages/").route.operation == "chat"
    assert router.match("POST", "/v1/completion-messages").route.operation == "text_completion"
    assert router.match("POST", "/v1/workflows/run").route.operation == "invoke_workflow"
    assert router.match("POST", "/api/chat-messages").route.shape.invoke_from == "web-app"
    console = router.match("POST", "/console/api/apps/abc-123/chat-messages")
    assert console.params == {"app_id": "abc-123"}
    assert router.match("POST", "/v1/chat/completions").route.shape.name == "openai"
    assert router.match("GET", "/v1/chat-messages") is None
    assert router.match("POST", "/v1/chat-messages/task-1/stop") is None
    assert router.match("POST", "/console/api/apps/a/b/chat-messages") is None


def test_the_app_key_becomes_a_stable_non_secret_name():
    key = "app-0123456789abcdefABCDEF"
    name = app_key_digest(f"Bearer {key}")
    assert name == app_key_digest(f"bearer  {key}".replace("  ", " "))
    assert name.startswith("key-")
    assert key[4:] not in name
    assert app_key_digest("Bearer sk-not-a-dify-key") is None
    assert app_key_digest(None) is None


def test_custom_routes_from_configuration():
    routes, problems = read_custom_routes(
        json.dumps(
            [
                {"path": "/ask", "query": "question", "user": "who.id", "answer": "reply.text"},
                {"path": "/bots/<app_id>/chat", "shape": "openai"},
            ]
        )
    )
    assert problems == []
    router = Router(routes)
    ask = router.match("POST", "/ask").route
    assert ask.operation == CHAT
    bot = router.match("POST", "/bots/b1/chat")
    assert bot.params == {"app_id": "b1"}
    assert bot.route.shape.name == "openai"


def test_the_old_key_format_still_names_a_shape_with_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(routing, "_warned", set())
    raw = json.dumps(
        [
            {"path": "/old", "format": "openai"},
            {"path": "/new", "shape": "dify"},
            {"path": "/older", "format": "dify"},
        ]
    )
    for _health_check in range(3):  # read at start and by each health check
        routes, problems = read_custom_routes(raw)
        assert problems == []
        assert [route.shape.name for route in routes] == ["openai", "dify", "dify"]
    (warning,) = [r for r in caplog.records if r.name == routing.__name__]
    assert warning.levelname == "WARNING"
    assert warning.getMessage() == (
        'chatspan: CHATSPAN_CHAT_ROUTES[0], CHATSPAN_CHAT_ROUTES[2]: the key "format" is now '
        'named "shape"; "format" is still read, rename it to "shape"'
    )
    routes, problems = read_custom_routes('[{"path": "/x", "format": "soap"}]')
    assert routes == [] and "format must be" in problems[0]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "CHATSPAN_CHAT_ROUTES must be a JSON list"),
        ('{"path": "/x"}', "must be a JSON list"),
        ('[{"query": "q"}]', r'CHATSPAN_CHAT_ROUTES\[0\] must be an object with at least a "path"'),
        (
            '[{"path": "/x", "qeury": "q"}]',
            r"CHATSPAN_CHAT_ROUTES\[0\] has unknown keys \['qeury'\]",
        ),
        ('[{"path": "/x", "shape": "soap"}]', "shape must be"),
        ('[{"path": "/x", "operation": "embed"}]', "operation must be one of"),
        ('[{"path": "/x", "extractor": "nosuchmodule:f"}]', "cannot load extractor"),
        ('[{"path": "/x", "extractor": "json"}]', "package.module:function"),
    ],
)
def test_bad_custom_routes_name_the_variable(raw, message):
    routes, (problem,) = read_custom_routes(raw)
    assert routes == []
    assert re.search(message, problem), problem
    assert "skipped" in problem


def test_redaction_rules():
    redact = Redactor()
    assert redact("write to a.b@example.com") == "write to [REDACTED_EMAIL]"
    assert redact("call +1 (415) 555-0132 now") == "call [REDACTED_PHONE] now"
    assert redact("card 4111-1111-1111-1111") == "card [REDACTED_CARD]"
    assert redact("order 4111-1111-1111-1112") == "order 4111-1111-1111-1112"  # fails Luhn
    assert redact("key app-Zx8s7d6f5g4h3j2k1l0p") == "key [REDACTED_KEY]"
    assert redact("key sk-proj-abcdefghijklmnop12") == "key [REDACTED_KEY]"
    assert redact("Authorization: Bearer abc.def.ghijklmnop") == "Authorization: Bearer [REDACTED]"
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJlLW5vdC1yZWFs"  # not a real one
    assert redact(f"token {token}") == "token [REDACTED_TOKEN]"
    assert redact("nothing to hide here, 42 times") == "nothing to hide here, 42 times"
    custom = Redactor(builtin=False, patterns=[r"TICKET-\d+"])
    assert custom("a@b.co TICKET-7") == "a@b.co [REDACTED]"


def test_redaction_leaves_identifiers_and_dates_alone():
    redact = Redactor()
    for kept in (
        "550e8400-e29b-41d4-a716-446655440000",  # a UUID's last group is no phone number
        "msg-1234567",
        "on 2026-11-01 at noon",
        "2026-11-01 12:00:00",
    ):
        assert redact(kept) == kept
    assert redact("call 415 555 0132 or +44 20 7946 0958") == (
        "call [REDACTED_PHONE] or [REDACTED_PHONE]"
    )
    # An attribute value of digits alone is an identifier (Dify's node ids are
    # millisecond timestamps); in text, the same digits may be a phone number.
    assert redact.value("1711528914102") == "1711528914102"
    assert redact("1711528914102") == "[REDACTED_PHONE]"
    assert redact.value("4111111111111111") == "[REDACTED_CARD]"
    assert redact.value("mail a@b.co") == "mail [REDACTED_EMAIL]"


def test_capture_settings_follow_chatspan_then_the_genai_switch():
    genai = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
    assert CaptureSettings.from_env({}).capture_content is True
    assert CaptureSettings.from_env({genai: "false"}).capture_content is False
    assert CaptureSettings.from_env({genai: "NO_CONTENT"}).capture_content is False
    assert CaptureSettings.from_env({genai: "SPAN_ONLY"}).capture_content is True
    assert CaptureSettings.from_env({genai: "EVENT_ONLY"}).capture_content is False
    both = {genai: "false", "CHATSPAN_CAPTURE_CONTENT": "true"}
    assert CaptureSettings.from_env(both).capture_content is True
    assert CaptureSettings.from_env(both).problems == ()


@pytest.mark.parametrize(
    ("variable", "value", "fallback"),
    [
        ("CHATSPAN_CAPTURE_CONTENT", "sometimes", {"capture_content": False}),
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "maybe", {"capture_content": False}),
        ("CHATSPAN_REDACT", "nah", {"redact": True}),
        # A pattern that does not compile cannot mask what it was meant to: no content.
        ("CHATSPAN_REDACT_PATTERNS", '["TICKET-\\\\d+", "(unclosed"]', {"capture_content": False}),
        ("CHATSPAN_MAX_CONTENT_CHARS", "lots", {"max_content_chars": DEFAULT_MAX_CONTENT_CHARS}),
    ],
)
def test_a_capture_setting_not_understood_falls_back_and_is_named(variable, value, fallback):
    settings = CaptureSettings.from_env({variable: value})
    assert {name: getattr(settings, name) for name in fallback} == fallback
    (problem,) = settings.problems
    assert problem.startswith(variable), problem
    assert f"{value!r}" in problem or "(unclosed" in problem


def test_an_endless_stream_keeps_memory_bounded(monkeypatch):
    """200,000 events (about 30 MB) through one chat call: the text is capped, the
    parser's buffer stays small, and memory does not grow with the stream."""
    monkeypatch.setenv("CHATSPAN_MAX_CONTENT_CHARS", "10000")
    recorder = SpanRecorder()
    telemetry = build_telemetry(recorder.provider)
    route = ChatRoute("POST", "/v1/chat-messages", CHAT, DIFY)
    chat = ChatCall(telemetry, Router([route]).match("POST", "/v1/chat-messages"), None)
    chat.read_request_body(b'{"query": "go on forever", "user": "u"}')
    chat.response_started(200, "text/event-stream")
    event = b'data: {"event": "message", "answer": "' + b"word " * 20 + b'"}\n\n'
    growth = peak_growth(itertools.repeat((event,), 200_000), 1_000, chat.body_chunks)
    chat.finish()
    assert growth < 512 * 1024, f"memory grew by {growth} bytes"
    (span,) = recorder.spans()
    assert len(span.attributes["output.value"]) == 10_000
    assert span.attributes["chatspan.output.truncated"] is True


# Stream events, each with whether the fast road may take it (a plain text event) or
# must leave it to the JSON parser: escapes, braces and quotes inside strings, nested
# objects, keys that only look like "answer", and other spacing. Either way the answer
# must be what parsing every event gives.
FAST, PARSED = True, False
DIFY_STREAM_EVENTS = [
    ({"event": "message", "message_id": "m1", "conversation_id": "c1", "answer": "Dropped"}, FAST),
    ({"event": "message_replace", "answer": "Hel"}, PARSED),
    ({"event": "agent_message", "id": "m1", "answer": 'lo "there" \\ {x} \\"'}, FAST),
    (
        {"event": "message", "answer": "line\nbreak\ttab \u00e9\u4e2d\U0001f600", "created_at": 1},
        FAST,
    ),
    ({"event": "message", "meta": {"answer": "nested, not the answer"}, "answer": " ok"}, FAST),
    ({"event": "message", "meta": {"k": 1, "answer": "nested first"}, "answer": " ok2"}, FAST),
    ({"event": "message", "answer": " after", "extra": {"answer": "nested after"}}, PARSED),
    ({"event": "message", "answer": " last", "meta": {"k": 1, "answer": "nested, last"}}, PARSED),
    ({"event": "message", "answer": " in", "refs": [{"k": 1, "answer": "nested"}], "n": 1}, PARSED),
    ({"event": "message", 'a"nswer': "x", 'say \\"answer': "y", "answer": " [keys]"}, FAST),
    ({"event": "message", 'say "answer': "z", "n": 1, "answer": " [ends in answer]"}, FAST),
    ({"event": "message", "answer": " {braces} ", "n": None, "t": True, "f": -1.5e3}, FAST),
    ({"event": "message", "answer": ""}, FAST),
    ({"event": "message", "list": ["a", "b"], "answer": " end"}, FAST),
]
OPENAI_STREAM_EVENTS = [
    ({"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}, PARSED),
    ({"id": "c1", "choices": [{"index": 0, "delta": {"content": 'Hi "you" \\ {'}}]}, FAST),
    ({"id": "c1", "choices": [{"index": 0, "delta": {"content": "\u00e9\n"}}]}, FAST),
    ({"id": "c1", "choices": [{"delta": {"content": " A"}}, {"delta": {"content": "B"}}]}, PARSED),
    (
        {"id": "c1", "choices": [{"delta": {"content": " and"}}], "usage": {"prompt_tokens": 1}},
        PARSED,
    ),
    (
        {"id": "c1", "usage": {"completion_tokens": 9}, "choices": [{"delta": {"content": " so"}}]},
        PARSED,
    ),
    (
        {"id": "c1", "choices": [{"index": 0, "delta": {"content": "!"}, "finish_reason": "stop"}]},
        FAST,
    ),
    ({"id": "c1", "choices": [], "usage": {"prompt_tokens": 3}}, PARSED),
]


def _stream(events: list[dict], separators: tuple[str, str]) -> bytes:
    return b"".join(
        b"data: " + json.dumps(e, separators=separators).encode() + b"\n\n" for e in events
    )


@pytest.mark.parametrize("separators", [(", ", ": "), (",", ":")], ids=["spaced", "compact"])
@pytest.mark.parametrize(
    ("path", "events"),
    [("/v1/chat-messages", DIFY_STREAM_EVENTS), ("/v1/chat/completions", OPENAI_STREAM_EVENTS)],
    ids=["dify", "openai"],
)
def test_streamed_answer_is_what_parsing_every_event_gives(path, events, separators):
    telemetry = build_telemetry(SpanRecorder().provider)
    match = Router([*dify_routes(), *openai_routes()]).match("POST", path)
    shape = match.route.shape
    expected = ChatCall(telemetry, match, None).response
    for event, _fast in events:
        shape.read_event(event, expected)
    assert expected.answer.text()  # the reference read something

    stream = _stream([event for event, _fast in events], separators)
    taken = [shape.piece(data) is not None for data in event_data(stream)]
    assert taken == [fast for _event, fast in events], "the fast road took the wrong events"
    for cut in (len(stream), 7, 1):  # whole, and in small chunks
        chat = ChatCall(telemetry, match, None)
        chat.response_started(200, "text/event-stream")
        chat.body_chunks([stream[i : i + cut] for i in range(0, len(stream), cut)])
        chat.finish()
        assert chat.response.answer.text() == expected.answer.text()
        response = chat.response
        assert (response.message_id, response.input_tokens, response.output_tokens) == (
            expected.message_id,
            expected.input_tokens,
            expected.output_tokens,
        )


def test_threads_and_pool_tasks_started_in_a_context_carry_it():
    from concurrent.futures import ThreadPoolExecutor
    from threading import Thread

    from opentelemetry import trace

    from chatspan.instrumentation import threads

    recorder = SpanRecorder()
    seen: dict[str, object] = {}

    def note(where: str) -> None:
        seen[where] = trace.get_current_span().get_span_context().span_id

    threads.install()
    try:
        with recorder.tracer.start_as_current_span("request") as request:
            thread = Thread(target=note, args=("thread",))
            thread.start()
            thread.join()
            with ThreadPoolExecutor(1) as pool:
                pool.submit(note, "pool").result()
        outside = Thread(target=note, args=("outside",))
        outside.start()
        outside.join()
    finally:
        threads.uninstall()
    expected = request.get_span_context().span_id
    assert seen == {"thread": expected, "pool": expected, "outside": 0}
