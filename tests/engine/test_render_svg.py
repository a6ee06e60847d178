"""The SVG drawing of compiled graphs: every step of every example graph and of the Synapse
bundles is drawn once, with the status class it was given, and every edge is drawn."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from orch.bootstrap import load_graphs
from orch.definition.compiled import CompiledGraph
from orch.definition.loader import Catalog, load_text
from orch.definition.compile import compile_catalog
from orch.definition.render_svg import STATUSES, edge_label, layout, render_svg
from orch.tools import ToolRegistry

ROOT = Path(__file__).resolve().parents[2]
SYNAPSE = ROOT.parent / "shared" / "compat" / "synapse"
SVG = "{http://www.w3.org/2000/svg}"


def graphs(*paths: Path) -> dict[str, CompiledGraph]:
    report = load_graphs(list(paths), set(ToolRegistry.with_builtins().names()))
    assert report.rejected == {}
    return report.graphs


def drawn_steps(svg: str) -> dict[str, str]:
    """data-step → status class of each step group."""
    root = ET.fromstring(svg)
    out: dict[str, str] = {}
    for g in root.iter(SVG + "g"):
        if "data-step" in g.attrib:
            classes = g.attrib["class"].split()
            assert "step" in classes and g.attrib["data-step"] not in out
            out[g.attrib["data-step"]] = next(c for c in classes if c.startswith("status-"))
    return out


def check(graph: CompiledGraph) -> None:
    statuses = {sid: STATUSES[i % len(STATUSES)] for i, sid in enumerate(graph.steps)}
    svg = render_svg(graph, statuses, id_prefix="t")
    assert drawn_steps(svg) == {sid: f"status-{status}" for sid, status in statuses.items()}
    root = ET.fromstring(svg)
    drawn_edges = {(g.attrib["data-from"], g.attrib["data-to"])
                   for g in root.iter(SVG + "g") if "data-from" in g.attrib}
    assert drawn_edges == {(e.source, e.target) for e in graph.edges}


@pytest.mark.parametrize("orch_id", sorted(graphs(ROOT / "graphs")))
def test_every_example_graph_draws_every_step_with_its_status(orch_id: str) -> None:
    check(graphs(ROOT / "graphs")[orch_id])


def test_the_synapse_bundles_draw_too() -> None:
    found = graphs(SYNAPSE)
    assert sorted(found) == ["orch_content_pipeline", "orch_market_intelligence", "orch_mm0hine"]
    for graph in found.values():
        check(graph)


def compile_text(text: str) -> CompiledGraph:
    catalog = load_text(text, "inline.yaml", Catalog())
    (result,) = compile_catalog(catalog, tools=set(ToolRegistry.with_builtins().names())).values()
    assert result.graph is not None, [str(p) for p in result.problems]
    return result.graph


def test_layers_follow_the_longest_path_and_back_edges_do_not_count() -> None:
    graph = compile_text("""
id: shapes
name: "A <b> & 'c'"
steps:
  - {id: a, type: print, print_content: hi, output_key: x, next_step_id: [b, c]}
  - {id: b, type: print, print_content: "{state.x}", output_key: y, next_step_id: d}
  - {id: c, type: print, print_content: "{state.x}", output_key: z, next_step_id: e}
  - {id: e, type: print, print_content: "{state.z}", output_key: w, next_step_id: d}
  - id: d
    type: evaluator
    input_keys: [y, w]
    output_key: verdict
    route_map: {again: a, done: f}
  - {id: f, type: end}
""")
    lay = layout(graph)
    assert {sid: lay.boxes[sid].layer for sid in graph.steps} == {"a": 0, "b": 1, "c": 1, "e": 2, "d": 3, "f": 4}
    assert [len(keys) for keys in lay.layers] == [1, 2, 2, 1, 1]  # b → d passes a waypoint in layer 2
    (back,) = [e for e in graph.edges if e.back]
    assert (back.source, back.target, edge_label(back)) == ("d", "a", ("again", "verdict"))
    svg = render_svg(graph, {"a": "completed", "d": "nonsense"})
    assert drawn_steps(svg)["d"] == "status-pending"
    assert ET.fromstring(svg).find(SVG + "title").text == "A <b> & 'c': 6 steps"  # type: ignore[union-attr]
