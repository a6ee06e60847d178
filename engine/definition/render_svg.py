"""A compiled graph drawn as SVG, laid out here in pure Python (no Graphviz).

Layout is the classic layered one: back edges (those that close a cycle) are set aside, every
step goes to the layer of its longest path from a source (networkx topological generations),
edges that span several layers get waypoints, the order inside each layer follows the
barycentre of its neighbours, and x positions are pulled towards the neighbours while keeping
the order and the spacing. Back edges are drawn as curves around the right side.

Each step is a `<g class="step step-<type> status-<status>" data-step="<id>">` so a page can
colour it as the run goes; shapes follow the step kind's `shape` (a decision, a gate for a
person, a group of other steps, a stop), and edge labels show the route taken (evaluator label,
true/false, switch case) and the state keys its source writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Mapping

import networkx as nx

from orch.definition.compiled import CompiledGraph, Edge
from orch.steps.base import Shape

STATUSES = ("pending", "running", "completed", "failed", "skipped", "waiting-join", "waiting-person")
NODE_H = 46
LAYER_GAP = 64
NODE_GAP = 36
WAYPOINT_W = 16
MARGIN = 24
CHAR_W = 7.2  # mean advance of the 13 px sans-serif label font
MAX_LABEL = 30

STYLE = """
.orch-graph{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
.orch-graph .shape{fill:#fff;stroke:#5b6472;stroke-width:1.5}
.orch-graph .name{font-size:13px;fill:#1d2330}
.orch-graph .kind{font-size:11px;fill:#5b6472}
.orch-graph .edge path{fill:none;stroke:#8a93a3;stroke-width:1.4}
.orch-graph .edge-back path,.orch-graph .edge-body path{stroke-dasharray:5 4}
.orch-graph .label{font-size:11px;fill:#3b4250;paint-order:stroke;stroke:#fff;stroke-width:4px;stroke-linejoin:round}
.orch-graph .label .route{font-weight:600}
.orch-graph .label .keys{font-style:italic;fill:#6a7282}
.orch-graph .status-running .shape{fill:#e6f0ff;stroke:#2563eb;stroke-width:2.5}
.orch-graph .status-completed .shape{fill:#e7f6ec;stroke:#1e8a4c}
.orch-graph .status-failed .shape{fill:#fdecec;stroke:#c62828;stroke-width:2.5}
.orch-graph .status-skipped .shape{fill:#f1f1f1;stroke:#9aa0a6;stroke-dasharray:4 3}
.orch-graph .status-waiting-join .shape{fill:#fff6e0;stroke:#b7791f;stroke-dasharray:6 3}
.orch-graph .status-waiting-person .shape{fill:#fff1d6;stroke:#c05621;stroke-width:3}
"""


@dataclass
class Box:
    key: str  # a step id, or a waypoint name
    layer: int
    w: float
    x: float = 0.0
    step: bool = True

    @property
    def y(self) -> float:
        return MARGIN + 28 + self.layer * (NODE_H + LAYER_GAP)


@dataclass
class Layout:
    boxes: dict[str, Box] = field(default_factory=dict)
    layers: list[list[str]] = field(default_factory=list)
    routes: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # forward edge → waypoints


def _label(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def node_width(graph: CompiledGraph, step_id: str) -> float:
    cs = graph.steps[step_id]
    chars = max(len(_label(cs.spec.label)), len(cs.type) * 0.85)
    extra = 24 if cs.kind.shape in ("step", "stop") else 40
    return max(112.0, min(260.0, chars * CHAR_W + extra))


def layout(graph: CompiledGraph) -> Layout:
    """Layers, order and x positions of every step (and of the waypoints of long edges)."""
    forward = [e for e in graph.edges if not e.back and e.source != e.target]
    fwd: nx.DiGraph[str] = nx.DiGraph()
    fwd.add_nodes_from(graph.steps)
    fwd.add_edges_from((e.source, e.target) for e in forward)
    level = {sid: i for i, gen in enumerate(nx.topological_generations(fwd)) for sid in gen}
    out = Layout()
    for sid in graph.steps:
        out.boxes[sid] = Box(sid, level[sid], node_width(graph, sid))
    adjacency: dict[str, set[str]] = {k: set() for k in out.boxes}
    for e in forward:
        if (e.source, e.target) in out.routes:
            continue
        chain = [e.source]
        for layer in range(level[e.source] + 1, level[e.target]):
            key = f"\x00{e.source}\x00{e.target}\x00{layer}"
            out.boxes[key] = Box(key, layer, WAYPOINT_W, step=False)
            adjacency[key] = set()
            chain.append(key)
        chain.append(e.target)
        out.routes[(e.source, e.target)] = chain[1:-1]
        for a, b in zip(chain, chain[1:]):
            adjacency[a].add(b)
            adjacency[b].add(a)
    depth = max((b.layer for b in out.boxes.values()), default=-1) + 1
    out.layers = [[] for _ in range(depth)]
    for key in _walk_order(graph, fwd, out):
        out.layers[out.boxes[key].layer].append(key)
    _order(out, adjacency)
    _place(out, adjacency)
    return out


def _walk_order(graph: CompiledGraph, fwd: "nx.DiGraph[str]", out: Layout) -> list[str]:
    """Steps in the order a walk from the entry meets them, each route's waypoints after its
    source: a first order for each layer that already follows the file."""
    seen: list[str] = []
    known: set[str] = set()
    roots = [graph.entry] + [s for s in graph.steps if s != graph.entry]
    for root in roots:
        if root in known or root not in graph.steps:
            continue
        for sid in nx.dfs_preorder_nodes(fwd, root):
            if sid in known:
                continue
            known.add(sid)
            seen.append(sid)
            for (src, _), waypoints in out.routes.items():
                if src == sid:
                    seen.extend(waypoints)
    return seen


def _order(out: Layout, adjacency: Mapping[str, set[str]]) -> None:
    """Barycentre sweeps, down then up, to untangle crossings."""
    for sweep in range(6):
        layers = range(1, len(out.layers)) if sweep % 2 == 0 else range(len(out.layers) - 2, -1, -1)
        for i in layers:
            ref = {k: n for n, k in enumerate(out.layers[i - 1 if sweep % 2 == 0 else i + 1])}
            current = out.layers[i]

            def centre(key: str, pos: int, ref: dict[str, int] = ref) -> float:
                near = [ref[n] for n in adjacency[key] if n in ref]
                return sum(near) / len(near) if near else float(pos)

            ranked = sorted(((centre(k, p), p, k) for p, k in enumerate(current)), key=lambda t: (t[0], t[1]))
            out.layers[i] = [k for _, _, k in ranked]


def _place(out: Layout, adjacency: Mapping[str, set[str]]) -> None:
    """x of each box: centred layers first, then pulled towards the neighbours, order kept."""
    for keys in out.layers:
        x = 0.0
        for k in keys:
            box = out.boxes[k]
            box.x = x + box.w / 2
            x += box.w + NODE_GAP
        shift = (x - NODE_GAP) / 2
        for k in keys:
            out.boxes[k].x -= shift
    for sweep in range(8):
        order = out.layers if sweep % 2 == 0 else list(reversed(out.layers))
        for keys in order:
            wanted = []
            for k in keys:
                near = [out.boxes[n].x for n in adjacency[k]]
                wanted.append(sum(near) / len(near) if near else out.boxes[k].x)
            left, right = list(wanted), list(wanted)
            for i in range(1, len(keys)):
                gap = (out.boxes[keys[i - 1]].w + out.boxes[keys[i]].w) / 2 + NODE_GAP
                left[i] = max(left[i], left[i - 1] + gap)
            for i in range(len(keys) - 2, -1, -1):
                gap = (out.boxes[keys[i + 1]].w + out.boxes[keys[i]].w) / 2 + NODE_GAP
                right[i] = min(right[i], right[i + 1] - gap)
            for k, a, b in zip(keys, left, right):
                out.boxes[k].x = (a + b) / 2


def edge_label(edge: Edge) -> tuple[str, str]:
    """(route, keys): what chose this edge, and the state keys its source writes."""
    routes = []
    for kind in edge.kind.split("|"):
        if kind.startswith(("route:", "case:")):
            routes.append(kind.split(":", 1)[1])
        elif kind in ("true", "false", "default", "body"):
            routes.append(kind)
    keys = ", ".join(edge.keys) if edge.kind != "body" else ""
    return _label(" | ".join(routes)), _label(keys)


def _shape(shape: Shape, w: float, h: float) -> str:
    x0, y0 = -w / 2, -h / 2
    if shape == "decision":
        d = 16
        return _polygon([(x0, 0), (x0 + d, y0), (-x0 - d, y0), (-x0, 0), (-x0 - d, -y0), (x0 + d, -y0)])
    if shape == "gate":
        d = 12
        return _polygon([(x0 + d, y0), (-x0, y0), (-x0 - d, -y0), (x0, -y0)])
    if shape == "stop":
        return f'<rect class="shape" x="{x0:.1f}" y="{y0:.1f}" width="{w:.1f}" height="{h:.1f}" rx="{h / 2:.1f}"/>'
    if shape == "group":
        return (f'<rect class="shape" x="{x0:.1f}" y="{y0:.1f}" width="{w:.1f}" height="{h:.1f}" rx="2"/>'
                f'<path class="shape" d="M{x0 + 8:.1f},{y0:.1f}V{-y0:.1f}M{-x0 - 8:.1f},{y0:.1f}V{-y0:.1f}"/>')
    return f'<rect class="shape" x="{x0:.1f}" y="{y0:.1f}" width="{w:.1f}" height="{h:.1f}" rx="10"/>'


def _polygon(points: list[tuple[float, float]]) -> str:
    return '<polygon class="shape" points="' + " ".join(f"{x:.1f},{y:.1f}" for x, y in points) + '"/>'


class _Canvas:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.min_x = self.min_y = float("inf")
        self.max_x = self.max_y = float("-inf")

    def see(self, x: float, y: float) -> None:
        self.min_x, self.max_x = min(self.min_x, x), max(self.max_x, x)
        self.min_y, self.max_y = min(self.min_y, y), max(self.max_y, y)

    def label(self, x: float, y: float, route: str, keys: str) -> None:
        """The route on one line and the keys under it, centred on (x, y)."""
        lines = [(cls, text) for cls, text in (("route", route), ("keys", keys)) if text]
        if not lines:
            return
        half = max(len(text) for _, text in lines) * 6.4 / 2
        top = y - 7 * len(lines)
        self.see(x - half, top - 2)
        self.see(x + half, top + 14 * len(lines) + 2)
        spans = "".join(f'<tspan class="{cls}" x="{x:.1f}" y="{top + 11 + 14 * i:.1f}">{escape(text)}</tspan>'
                        for i, (cls, text) in enumerate(lines))
        self.parts.append(f'<text class="label" text-anchor="middle">{spans}</text>')


def render_svg(graph: CompiledGraph, statuses: Mapping[str, str] | None = None, *, id_prefix: str = "g",
               embed_style: bool = True) -> str:
    """The graph as one `<svg>` element. `statuses` maps step ids to one of STATUSES (others are
    pending); `id_prefix` keeps element ids apart when a page shows several graphs."""
    statuses = statuses or {}
    lay = layout(graph)
    canvas = _Canvas()
    boxes = lay.boxes
    edges, labels, nodes = _Canvas(), _Canvas(), _Canvas()  # drawn in this order: edges under steps
    arrow = f"{id_prefix}-arrow"
    index = {sid: n for n, sid in enumerate(graph.steps)}
    fan_out = {sid: 0 for sid in graph.steps}
    fan_in = dict(fan_out)
    for e in graph.edges:
        fan_out[e.source] += 1
        fan_in[e.target] += 1

    for e in graph.edges:
        route, keys = edge_label(e)
        kind = "back" if e.back or e.source == e.target else e.kind.split("|")[0].split(":")[0]
        cls = f"edge edge-{escape(kind)}"
        attrs = f'data-from="{escape(e.source)}" data-to="{escape(e.target)}"'
        s, t = boxes[e.source], boxes[e.target]
        if kind == "back":
            d, lx, ly = _back_edge(lay, s, t)
        else:
            waypoints = [boxes[k] for k in lay.routes.get((e.source, e.target), [])]
            for w in waypoints:
                canvas.see(w.x, w.y)
            # Labels go where edges spread apart: near the targets of a fan-out, near the
            # sources of a fan-in.
            near_target = fan_out[e.source] > fan_in[e.target]
            d, lx, ly = _forward_edge(s, t, waypoints, near_target)
        edges.parts.append(f'<g class="{cls}" {attrs}><path d="{d}" marker-end="url(#{arrow})"/></g>')
        labels.label(lx, ly, route, keys)
        canvas.see(lx, ly)

    for sid, cs in graph.steps.items():
        b = boxes[sid]
        status = statuses.get(sid, "pending")
        status = status if status in STATUSES else "pending"
        canvas.see(b.x - b.w / 2, b.y - NODE_H / 2)
        canvas.see(b.x + b.w / 2, b.y + NODE_H / 2)
        name = _label(cs.spec.label)
        tip = f"{cs.spec.label} ({cs.type}, step {sid})"
        nodes.parts.append(
            f'<g id="{id_prefix}-step-{index[sid]}" class="step step-{escape(cs.type)} status-{status}" '
            f'data-step="{escape(sid)}" transform="translate({b.x:.1f},{b.y:.1f})">'
            f"<title>{escape(tip)}</title>{_shape(cs.kind.shape, b.w, NODE_H)}"
            f'<text class="name" y="-3" text-anchor="middle">{escape(name)}</text>'
            f'<text class="kind" y="13" text-anchor="middle">{escape(cs.type)}</text></g>'
        )

    entry = boxes.get(graph.entry)
    start = ""
    if entry is not None:
        top = entry.y - NODE_H / 2
        canvas.see(entry.x, top - 26)
        start = (f'<g class="start"><circle cx="{entry.x:.1f}" cy="{top - 22:.1f}" r="6" fill="#1d2330"/>'
                 f'<path d="M{entry.x:.1f},{top - 16:.1f}V{top - 2:.1f}" stroke="#1d2330" stroke-width="1.4" '
                 f'marker-end="url(#{arrow})"/></g>')
    if labels.parts:
        canvas.see(labels.min_x, labels.min_y)
        canvas.see(labels.max_x, labels.max_y)
    x0, y0 = canvas.min_x - MARGIN, canvas.min_y - MARGIN
    width, height = canvas.max_x - canvas.min_x + 2 * MARGIN, canvas.max_y - canvas.min_y + 2 * MARGIN
    title = f"{graph.orchestration.name or graph.id}: {len(graph.steps)} steps"
    style = f"<style>{STYLE}</style>" if embed_style else ""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="orch-graph" role="img" '
        f'aria-labelledby="{id_prefix}-title" viewBox="{x0:.1f} {y0:.1f} {width:.1f} {height:.1f}" '
        f'width="{width:.0f}" height="{height:.0f}" data-orchestration="{escape(graph.id)}">'
        f'<title id="{id_prefix}-title">{escape(title)}</title>{style}'
        f'<defs><marker id="{arrow}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        f'orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#5b6472"/></marker></defs>'
        f'<g class="edges">{"".join(edges.parts)}</g>{start}'
        f'<g class="steps">{"".join(nodes.parts)}</g><g class="labels">{"".join(labels.parts)}</g></svg>'
    )


def _forward_edge(s: Box, t: Box, waypoints: list[Box], near_target: bool) -> tuple[str, float, float]:
    """A smooth path from the bottom of `s` through each waypoint to the top of `t`, and where
    its label goes: on the first stretch, or on the last one when `near_target`."""
    points = [(s.x, s.y + NODE_H / 2)]
    for w in waypoints:
        points += [(w.x, w.y - NODE_H / 2), (w.x, w.y + NODE_H / 2)]
    points.append((t.x, t.y - NODE_H / 2 - 2))
    d = f"M{points[0][0]:.1f},{points[0][1]:.1f}"
    for i in range(1, len(points)):
        (px, py), (qx, qy) = points[i - 1], points[i]
        if px == qx and i % 2 == 0 and i < len(points) - 1:  # straight through a waypoint
            d += f"V{qy:.1f}"
            continue
        my = (py + qy) / 2
        d += f"C{px:.1f},{my:.1f} {qx:.1f},{my:.1f} {qx:.1f},{qy:.1f}"
    if near_target:
        return (d, *_on_curve(points[-2], points[-1], 0.62))
    return (d, *_on_curve(points[0], points[1], 0.38))


def _on_curve(p: tuple[float, float], q: tuple[float, float], t: float) -> tuple[float, float]:
    """The point at `t` of the cubic drawn from p to q with both control points at mid-height."""
    (px, py), (qx, qy) = p, q
    u, my = 1 - t, (py + qy) / 2
    return (px * (u ** 3 + 3 * u * u * t) + qx * (3 * u * t * t + t ** 3),
            py * u ** 3 + my * (3 * u * u * t + 3 * u * t * t) + qy * t ** 3)


def _back_edge(lay: Layout, s: Box, t: Box) -> tuple[str, float, float]:
    """A curve from the right side of `s` up to the right side of `t`, clear of the boxes of
    every layer in between."""
    lo, hi = min(s.layer, t.layer), max(s.layer, t.layer)
    right = max(b.x + b.w / 2 for b in lay.boxes.values() if lo <= b.layer <= hi)
    sx, sy = s.x + s.w / 2, s.y + (6 if s is not t else 10)
    tx, ty = t.x + t.w / 2, t.y - (6 if s is not t else 10)
    start = max(sx, tx)
    cx = start + (right - start + 28 + 8 * (hi - lo)) / 0.75
    d = f"M{sx:.1f},{sy:.1f}C{cx:.1f},{sy:.1f} {cx:.1f},{ty:.1f} {tx + 3:.1f},{ty:.1f}"
    lx = (sx + tx) / 8 + 0.75 * cx
    return d, lx, (sy + ty) / 2
