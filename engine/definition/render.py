"""A compiled graph as Mermaid or Graphviz dot text."""

from __future__ import annotations

import re

from orch.definition.compiled import CompiledGraph
from orch.steps.base import Shape

_MERMAID: dict[Shape, tuple[str, str]] = {
    "step": ("[", "]"), "decision": ("{", "}"), "gate": ("[/", "/]"), "group": ("[[", "]]"), "stop": ("((", "))"),
}
_DOT: dict[Shape, str] = {
    "step": "box", "decision": "diamond", "gate": "parallelogram", "group": "box3d", "stop": "doublecircle",
}


def _ids(graph: CompiledGraph) -> dict[str, str]:
    """Mermaid node ids: readable, and distinct even when step ids differ only in punctuation."""
    ids: dict[str, str] = {}
    for sid in graph.steps:
        base = "s_" + re.sub(r"[^A-Za-z0-9_]", "_", sid)
        mid, n = base, 1
        while mid in ids.values():
            n += 1
            mid = f"{base}_{n}"
        ids[sid] = mid
    return ids


def _label(text: str) -> str:
    return text.replace('"', "#quot;")


def mermaid(graph: CompiledGraph) -> str:
    ids = _ids(graph)
    _mid = ids.__getitem__
    lines = ["flowchart TD"]
    for sid, cs in graph.steps.items():
        left, right = _MERMAID[cs.kind.shape]
        lines.append(f'    {_mid(sid)}{left}"{_label(cs.spec.label)}<br/><small>{cs.type}</small>"{right}')
    lines.append(f"    start((start)) --> {_mid(graph.entry)}")
    for e in graph.edges:
        arrow = "-.->" if e.back or e.kind == "body" else "-->"
        label = e.kind if e.kind != "next" else ""
        if e.keys and e.kind != "body":
            label = f"{label} {','.join(e.keys)}".strip() if label else ",".join(e.keys)
        lines.append(f'    {_mid(e.source)} {arrow}|"{_label(label)}"| {_mid(e.target)}' if label
                     else f"    {_mid(e.source)} {arrow} {_mid(e.target)}")
    return "\n".join(lines) + "\n"


def dot(graph: CompiledGraph) -> str:
    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"digraph {q(graph.id)} {{", "    rankdir=TB;", "    node [shape=box, style=rounded];"]
    for sid, cs in graph.steps.items():
        lines.append(f"    {q(sid)} [label={q(cs.spec.label + chr(10) + cs.type)}, shape={_DOT[cs.kind.shape]}];")
    for e in graph.edges:
        attrs = [f"label={q(e.kind + (' ' + ','.join(e.keys) if e.keys else ''))}"]
        if e.back or e.kind == "body":
            attrs.append("style=dashed")
        lines.append(f"    {q(e.source)} -> {q(e.target)} [{', '.join(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
