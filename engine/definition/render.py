"""A compiled graph as Mermaid or Graphviz dot text."""

from __future__ import annotations

import re

from orch.definition.compile import CompiledGraph

_SHAPES = {
    "evaluator": ("{", "}"), "if_else": ("{", "}"), "switch": ("{", "}"),
    "human": ("[/", "/]"), "parallel": ("[[", "]]"), "merge": ("[[", "]]"), "loop": ("[[", "]]"),
    "end": ("((", "))"),
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
        left, right = _SHAPES.get(cs.type, ("[", "]"))
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
    shapes = {"evaluator": "diamond", "if_else": "diamond", "switch": "diamond", "human": "parallelogram",
              "end": "doublecircle", "parallel": "box3d", "merge": "box3d", "loop": "box3d"}
    for sid, cs in graph.steps.items():
        lines.append(f"    {q(sid)} [label={q(cs.spec.label + chr(10) + cs.type)}, shape={shapes.get(cs.type, 'box')}];")
    for e in graph.edges:
        attrs = [f"label={q(e.kind + (' ' + ','.join(e.keys) if e.keys else ''))}"]
        if e.back or e.kind == "body":
            attrs.append("style=dashed")
        lines.append(f"    {q(e.source)} -> {q(e.target)} [{', '.join(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
