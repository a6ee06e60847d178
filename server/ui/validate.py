"""Validate a graph file in the console: paste it or upload it, see every problem with its
step and line, and the graph drawn when it compiles. Nothing is loaded or kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body

from orch.definition.compile import compile_orchestration
from orch.definition.compiled import CompiledGraph
from orch.definition.loader import Catalog, load_text, parse_text
from orch.definition.render_svg import render_svg
from orch.definition.source_lines import SourceLines
from orch.errors import Problem
from orch.mcp.verify import ToolNames
from orch.server.context import Ctx, ServerContext
from orch.server.routes.orchestrations import transform_problems
from orch.server.ui.orchestrations import Located
from orch.server.ui.rendering import render

MultiPart = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)]


@dataclass
class Checked:
    """One orchestration of the checked text: its problems, and its picture when it compiles."""

    orchestration_id: str
    name: str
    problems: list[Located] = field(default_factory=list)
    graph: CompiledGraph | None = None
    picture: str = ""


@dataclass
class Outcome:
    file: str
    file_problems: list[Located]
    checked: list[Checked]

    @property
    def errors(self) -> int:
        return sum(1 for p in self.file_problems if p.problem.severity == "error") + sum(
            1 for c in self.checked for p in c.problems if p.problem.severity == "error")


def check_text(ctx: ServerContext, text: str, file: str) -> Outcome:
    lines = SourceLines(text)
    catalog = load_text(text, file, Catalog())
    known = ctx.report.catalog
    agents = {aid: a.spec for aid, a in (known.agents.items() if known else ())}
    agents.update({aid: a.spec for aid, a in catalog.agents.items()})
    refused = _transforms(ctx, text, file)
    checked = []
    for n, (oid, loaded) in enumerate(catalog.orchestrations.items()):
        result = compile_orchestration(loaded, agents, tools=ToolNames(ctx.engine.services.tools.names(), ctx.engine.services.mcp.servers),
                                       orchestrations=set(ctx.engine.graphs) | set(catalog.orchestrations))
        problems = [p for p in refused if p.orchestration_id == oid] + result.problems
        graph = result.graph if not any(p.severity == "error" for p in problems) else None
        checked.append(Checked(oid, loaded.spec.name, [Located(p, lines.of_problem(p)) for p in problems], graph,
                               render_svg(graph, id_prefix=f"v{n}", embed_style=False) if graph else ""))
    return Outcome(file, [Located(p, lines.of_problem(p)) for p in catalog.problems], checked)


def _transforms(ctx: ServerContext, text: str, file: str) -> list[Problem]:
    """Transform steps, refused as the validate endpoint of the API refuses them."""
    doc, _ = parse_text(text, file)
    if not isinstance(doc, dict):
        return []
    listed = doc.get("orchestrations") if isinstance(doc.get("orchestrations"), list) else None
    found = []
    for i, raw in enumerate(listed if listed is not None else [doc]):
        if isinstance(raw, dict):
            prefix = f"$.orchestrations[{i}]." if listed is not None else "$."
            found += [msgspec.structs.replace(p, file=file, path=(p.path or "$").replace("$.", prefix, 1))
                      for p in transform_problems(ctx, raw)]
    return found


@get("/validate", name="validate")
async def validate_page(request: Request[Any, Any, Any]) -> Response[Any]:
    return await render(request, "validate.html", section="validate", text="", outcome=None, error="")


@post("/validate", status_code=200)
async def validate_file(request: Request[Any, Any, Any], ctx: Ctx, data: MultiPart) -> Response[Any]:
    upload = data.get("file")
    text, file = str(data.get("definition") or ""), ""
    if isinstance(upload, UploadFile) and upload.filename:
        raw = await upload.read()
        try:
            text, file = raw.decode("utf-8"), upload.filename
        except UnicodeDecodeError:
            return await render(request, "validate.html", status=422, section="validate", text="", outcome=None,
                                error=f"{upload.filename} is not UTF-8 text.")
    if not text.strip():
        return await render(request, "validate.html", status=422, section="validate", text="", outcome=None,
                            error="Paste a graph file or choose one to upload.")
    if not file:
        file = "pasted.json" if text.lstrip().startswith("{") else "pasted.yaml"
    outcome = check_text(ctx, text, file)
    return await render(request, "validate.html", section="validate", text=text, outcome=outcome, error="")
