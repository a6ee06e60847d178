"""The offline model: deterministic answers with no network, so every graph runs on a fresh machine.

It reads a request the way the step executors write it and answers by the first rule that fits:

1. **Forced tool** (tool steps): it calls `force_tool` with arguments built from the tool's JSON
   schema. Each property takes a value written in the last user message as `name=value` or
   `name: value` (quotes optional), else the schema's default, else a placeholder of its type:
   string → the topic (below), number/integer → 1, boolean → true, array → [], object → {}.
2. **Evaluators**: when a system message has a line `Labels: a | b | c`, it answers the first
   label, or the label the user message names as `route: <label>` (case-insensitive), as
   `<label>` on the first line and `Reason: …` on the second.
3. **Tools, first turn only** (no tool result in the conversation yet): it calls every offered
   tool the last user message names as `use <tool>` or `<tool>(…)`, in the order they are named.
   `<tool>({"a": 1})` gives the arguments; `<tool>(text)` gives the text to a tool with a single
   parameter; otherwise the arguments are built as in rule 1.
4. **JSON**: when the prompt asks for a "JSON array", an array of three short strings about the
   topic; for a "JSON object", `{"topic": …, "summary": …, "points": […]}` (after tool results
   the summary carries them).
5. **After tool results**: the text answer of rule 6, followed by a "Tool results" section
   listing every tool result verbatim.
6. **Text**: markdown about the topic, a `# <Topic>` heading and three parts: an article
   (introduction, discussion, conclusion) when the prompt asks for an article, report, draft,
   essay or blog post; a numbered findings list when it asks to research; three bullets otherwise.

The topic is the value of the first `Topic:`, `Query:`, `User input:` (or `Question:`,
`Request:`, `Subject:`, `Brief:`) line of the last user message, else its first markdown
heading, else its first line of prose, cut to 80 characters.

Usage: input tokens = ceil(characters of every message's content / 4); output tokens =
ceil(characters of the answer and its tool-call arguments / 4); the requested model is echoed.
`latency_seconds` makes every call wait that long, to imitate a real model in demos and benchmarks.
"""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any

import msgspec

from orch.providers.base import Completion, CompletionRequest, Message, ToolCall, ToolSpec, Usage

_TOPIC_LINE = re.compile(
    r"^[ \t]*(?:topic|query|user input|question|request|subject|brief)[ \t]*:[ \t]*(\S.*)$", re.I | re.M
)
_HEADING_LINE = re.compile(r"^[ \t]*#{1,3}[ \t]+(\S.*)$", re.M)
_LABELS_LINE = re.compile(r"^[ \t]*Labels:[ \t]*(.+)$", re.M)
_ARTICLE = re.compile(r"\b(?:article|report|draft|essay|blog post|write-up)s?\b", re.I)
_RESEARCH = re.compile(r"\b(?:research|investigate|look into|find out)\w*", re.I)
_WORD = re.compile(r"[A-Za-z][A-Za-z-]{3,}")
_STOPWORDS = frozenset(
    "about above after again also because been before being below between both could does doing "
    "down during each from further have having here into itself just more most other over same "
    "should some such than that their them then there these they this those through under until "
    "very what when where which while will with would your yours context continue workflow input "
    "user topic query respond json object array write please make give using into answer short "
    "article report draft essay post research based brief notes provided words title introduction "
    "sections section conclusion facts audience general technical cover behind today uncertain "
    "findings numbered list first check date current results sources known used still aim around "
    "include includes including each word count summary summarise summarize step steps following "
    "below information value values text prompt task goal only must need needs needed well good "
    "sources agree importance differences approaches come down open questions remain matters "
    "touches piece sets known worth attention looking closely picture emerges steady practical "
    "progress part builds last short rewards careful look tool tools returned one two three four five".split()
)
_FILLER = ("context", "trade-offs", "practical limits")
_NOT_GIVEN = object()


class OfflineProvider:
    """A model that answers from the request alone: same request, same answer."""

    name = "offline"

    def __init__(self, latency_seconds: float = 0.0) -> None:
        self.latency_seconds = latency_seconds

    async def complete(self, request: CompletionRequest) -> Completion:
        if self.latency_seconds > 0:
            await asyncio.sleep(self.latency_seconds)
        text, calls = answer(request)
        spent_in = sum(len(m.content) for m in request.messages)
        spent_out = len(text) + sum(len(c.raw_arguments) for c in calls)
        return Completion(
            text=text,
            tool_calls=calls,
            usage=Usage(input_tokens=math.ceil(spent_in / 4), output_tokens=math.ceil(spent_out / 4)),
            model=request.model,
            provider=self.name,
            stop_reason="tool_use" if calls else "end_turn",
        )

    async def aclose(self) -> None:
        return None


def answer(request: CompletionRequest) -> tuple[str, tuple[ToolCall, ...]]:
    """The offline model's text and tool calls for a request (the rules of the module docstring)."""
    messages = request.messages
    user = next((m.content for m in reversed(messages) if m.role == "user"), "")
    system = "\n".join(m.content for m in messages if m.role == "system")
    topic = find_topic(user)
    turn = sum(1 for m in messages if m.role == "assistant") + 1
    tools = {t.name: t for t in request.tools}

    if request.force_tool is not None:
        spec = tools.get(request.force_tool)
        args = build_arguments(spec.parameters if spec else {}, user, topic)
        return "", (_call(turn, 0, request.force_tool, args),)
    labels = _labels(system)
    if labels:
        return _evaluate(labels, user), ()
    results = _tool_results(messages)
    if tools and not any(m.role == "tool" for m in messages):
        calls = _mentioned_calls(user, tools, topic, turn)
        if calls:
            return "", calls
    shape = re.search(r"\bJSON\s+(array|object)\b", f"{system}\n{user}", re.I)
    if shape is not None:
        return _json_answer(shape.group(1).lower(), topic, user, results), ()
    if results:
        return f"{_text_answer(topic, user, system)}\n\n{_results_answer(results)}", ()
    return _text_answer(topic, user, system), ()


def find_topic(user: str) -> str:
    match = _TOPIC_LINE.search(user) or _HEADING_LINE.search(user)
    line = match.group(1) if match else next(
        (ln for ln in (raw.strip() for raw in user.splitlines())
         if ln and not ln.endswith(":") and ln != "Continue the workflow."),
        "",
    )
    line = line.strip().strip("#*`\"' ")
    if len(line) > 80:
        line = line[:80].rsplit(" ", 1)[0]
    return line.rstrip(".:;,!? ") or "the task"


def build_arguments(schema: dict[str, Any], text: str, topic: str) -> dict[str, Any]:
    """Arguments for a tool: values written in `text`, else schema defaults, else placeholders."""
    properties: dict[str, Any] = schema.get("properties") or {}
    args: dict[str, Any] = {}
    for name, prop in properties.items():
        prop = prop if isinstance(prop, dict) else {}
        written = _written_value(text, name)
        value = _coerce(written, prop) if written is not None else _NOT_GIVEN
        if value is _NOT_GIVEN:
            value = prop["default"] if "default" in prop else _placeholder(prop, topic)
        args[name] = value
    return args


def _call(turn: int, index: int, name: str, args: dict[str, Any]) -> ToolCall:
    raw = msgspec.json.encode(args).decode()
    return ToolCall(id=f"offline-{turn}-{index}", name=name, arguments=args, raw_arguments=raw)


def _labels(system: str) -> list[str]:
    match = _LABELS_LINE.search(system)
    return [label.strip() for label in match.group(1).split("|") if label.strip()] if match else []


def _evaluate(labels: list[str], user: str) -> str:
    alternatives = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    match = re.search(rf"route:[ \t]*[`\"']?({alternatives})(?![\w-])", user, re.I)
    if match:
        chosen = next(label for label in labels if label.lower() == match.group(1).lower())
        return f"{chosen}\nReason: the input asks for route '{chosen}'."
    return f"{labels[0]}\nReason: nothing in the input names another route, so the first label applies."


def _tool_results(messages: tuple[Message, ...]) -> list[tuple[str, str]]:
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    return [
        (m.name or names.get(m.tool_call_id or "", "tool"), m.content)
        for m in messages[last_user + 1:]
        if m.role == "tool"
    ]


def _mentioned_calls(user: str, tools: dict[str, ToolSpec], topic: str, turn: int) -> tuple[ToolCall, ...]:
    found: list[tuple[int, str, dict[str, Any]]] = []
    for name, spec in tools.items():
        named = re.escape(name)
        paren = re.search(rf"(?<![\w.]){named}\(", user)
        use = re.search(rf"\buse[ \t]+`?{named}\b", user, re.I)
        if paren is None and use is None:
            continue
        args: dict[str, Any] | None = None
        if paren is not None:
            args = _inline_arguments(user, paren.end(), spec, topic)
        if args is None:
            args = build_arguments(spec.parameters, user, topic)
        positions = [m.start() for m in (paren, use) if m is not None]
        found.append((min(positions), name, args))
    found.sort(key=lambda item: item[0])
    return tuple(_call(turn, i, name, args) for i, (_, name, args) in enumerate(found))


def _inline_arguments(text: str, start: int, spec: ToolSpec, topic: str) -> dict[str, Any] | None:
    """Arguments written as `tool({...})` or, for a one-parameter tool, `tool(text)`."""
    end = _closing_paren(text, start)
    if end is None:
        return None
    inner = text[start:end].strip()
    if not inner:
        return None
    value = _decode(inner)
    if isinstance(value, dict):
        return value
    properties: dict[str, Any] = spec.parameters.get("properties") or {}
    if len(properties) != 1:
        return None
    name, prop = next(iter(properties.items()))
    coerced = _coerce(inner.strip("\"'"), prop if isinstance(prop, dict) else {})
    return None if coerced is _NOT_GIVEN else {name: coerced}


def _closing_paren(text: str, start: int) -> int | None:
    depth, quote = 1, ""
    for i in range(start, len(text)):
        c = text[i]
        if quote:
            quote = "" if c == quote and text[i - 1] != "\\" else quote
        elif c in "\"'":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i
    return None


def _written_value(text: str, name: str) -> str | None:
    pattern = rf"(?<![\w-]){re.escape(name)}[ \t]*[=:][ \t]*(?:\n[ \t]*)?(\"[^\"\n]*\"|'[^'\n]*'|[^\n]*\S)"
    match = re.search(pattern, text, re.I)
    if match is None:
        return None
    value = match.group(1)
    quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'"
    return value[1:-1] if quoted else value.strip().rstrip(".,;")


def _schema_type(prop: dict[str, Any]) -> str | None:
    kind = prop.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind is None:
        for option in prop.get("anyOf") or prop.get("oneOf") or ():
            if isinstance(option, dict) and option.get("type") not in (None, "null"):
                return _schema_type(option)
    return kind if isinstance(kind, str) else None


def _coerce(raw: str, prop: dict[str, Any]) -> Any:
    kind = _schema_type(prop)
    if kind in (None, "string"):
        return raw
    if kind == "boolean":
        lowered = raw.lower()
        return True if lowered in ("true", "yes", "1") else False if lowered in ("false", "no", "0") else _NOT_GIVEN
    if kind in ("integer", "number"):
        for convert in (int, float) if kind == "number" else (int,):
            try:
                return convert(raw)
            except ValueError:
                continue
        return _NOT_GIVEN
    value = _decode(raw)
    return value if isinstance(value, list if kind == "array" else dict) else _NOT_GIVEN


def _decode(text: str) -> Any:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return _NOT_GIVEN


def _placeholder(prop: dict[str, Any], topic: str) -> Any:
    return {"integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}.get(
        _schema_type(prop) or "string", topic
    )


def _keywords(text: str, topic: str) -> list[str]:
    """Three content words, preferring what the Context block (earlier steps' output) says."""
    taken = {w.lower() for w in _WORD.findall(topic)} | _STOPWORDS
    words: list[str] = []
    _, marker, context = text.partition("Context:")
    for word in _WORD.findall(context if marker else "") + _WORD.findall(text):
        lowered = word.lower()
        if lowered not in taken:
            taken.add(lowered)
            words.append(lowered)
    return (words + [f for f in _FILLER if f not in words])[:3]


def _points(topic: str, user: str) -> list[str]:
    k1, k2, k3 = _keywords(user, topic)
    return [
        f"{_capital(topic)} starts with a clear view of {k1}.",
        f"The role of {k2} shapes how {topic} plays out in practice.",
        f"Attention to {k3} decides what to do next.",
    ]


def _json_answer(shape: str, topic: str, user: str, results: list[tuple[str, str]]) -> str:
    points = _points(topic, user)
    if shape == "array":
        return msgspec.json.encode(points).decode()
    summary = "; ".join(f"{n}: {c}" for n, c in results) if results else f"A short overview of {topic}."
    return msgspec.json.encode({"topic": topic, "summary": summary, "points": points}).decode()


def _results_answer(results: list[tuple[str, str]]) -> str:
    lines = "\n".join(f"- {name}: {content}" for name, content in results)
    return f"## Tool results\n\n{lines}"


def _text_answer(topic: str, user: str, system: str) -> str:
    k1, k2, k3 = _keywords(user, topic)
    title = f"# {_capital(topic)}"
    shaped_by = user if (_ARTICLE.search(user) or _RESEARCH.search(user)) else system
    if _ARTICLE.search(shaped_by):
        return (
            f"{title}\n\n{_capital(topic)} matters because it touches {k1} and {k2}. This piece sets out "
            f"what is known and why it is worth attention.\n\n## Discussion\n\nLooking closely at {k3}, "
            f"the picture that emerges is one of steady, practical progress: each part of {topic} "
            f"builds on the last.\n\n## Conclusion\n\nIn short, {topic} rewards a careful look at {k1}, "
            f"{k2} and {k3}."
        )
    if _RESEARCH.search(shaped_by):
        return (
            f"{title}\n\n## Findings\n\n1. **{_capital(k1)}**: the sources on {topic} agree on the "
            f"importance of {k1}.\n2. **{_capital(k2)}**: most differences between approaches come down "
            f"to {k2}.\n3. **{_capital(k3)}**: open questions remain around {k3}."
        )
    return (
        f"{title}\n\n- **Overview**: {topic} comes down to {k1} and {k2}.\n"
        f"- **Key point**: {k3} is where the details matter most.\n"
        f"- **Next step**: build on these points to move {topic} forward."
    )


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
