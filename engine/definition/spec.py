"""The graph file format as msgspec Structs.

Field names and defaults follow the Synapse export format, so a Synapse bundle decodes as-is;
fields marked "ours" are this engine's additions. Unknown fields are detected by the loader
(which reports all of them at once, with suggestions) rather than by msgspec, because Synapse
also emits open-ended UI settings such as `cache_*`.
"""

from __future__ import annotations

from typing import Any, Literal, Union

import msgspec

Reducer = Literal["replace", "append", "merge", "add"]
HumanFieldType = Literal["text", "textarea", "number", "email", "date", "phone", "select", "boolean"]
MergeStrategy = Literal["list", "concat", "dict"]
OnError = Literal["fail", "continue"]


class StateField(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    type: str = "any"
    default: Any = msgspec.UNSET
    description: str = ""
    reducer: Reducer = "replace"


class RetryPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    attempts: int = 1
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0


class HumanField(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    name: str | None = None
    key: str | None = None
    type: HumanFieldType = "text"
    label: str | None = None
    options: list[str] | str | None = None
    required: bool = False
    placeholder: str | None = None
    description: str | None = None
    default: Any = None
    # ours: other answers a select accepts, each mapped to one of its options (yes → approve)
    aliases: dict[str, str] = {}

    @property
    def field_name(self) -> str:
        return self.name or self.key or ""

    @property
    def option_list(self) -> list[str]:
        if self.options is None:
            return []
        if isinstance(self.options, str):
            return [o.strip() for o in self.options.split(",") if o.strip()]
        return [str(o) for o in self.options]


class StepBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=True):
    id: str
    name: str = ""
    input_keys: list[str] = []
    output_key: str | None = None
    next_step_id: str | list[str] | None = None
    max_turns: int = 15
    timeout_seconds: float = 300.0
    max_iterations: int = 3
    model: str | None = None
    prompt_template: str | None = None
    agent_id: str | None = None
    allowed_tools: list[str] | None = None
    retry: RetryPolicy | None = None  # ours
    on_error: OnError = "fail"  # ours
    # Type-specific fields. Synapse exports carry every one of them on every step.
    route_map: dict[str, str | None] = {}
    route_descriptions: dict[str, str] = {}
    evaluator_prompt: str | None = None
    parallel_branches: list[list[str] | str] = []
    merge_strategy: MergeStrategy = "list"
    loop_count: int = 3
    loop_step_ids: list[str] = []
    loop_over: str | None = None  # ours
    item_key: str = "item"  # ours
    max_concurrency: int = 1  # ours
    transform_code: str | None = None
    human_prompt: str | None = None
    human_fields: list[HumanField] = []
    human_timeout_seconds: float = 3600.0
    forced_tool: str | None = None
    tool_args: dict[str, Any] | None = None  # ours
    if_condition: str | None = None
    if_true_step_id: str | None = None
    if_false_step_id: str | None = None
    switch_expression: str | None = None
    switch_cases: dict[str, str | None] = {}
    switch_default_step_id: str | None = None
    print_content: str | None = None
    # UI-only Synapse fields: accepted, ignored.
    position_x: float | None = None
    position_y: float | None = None
    human_channel_id: str | None = None
    include_full_history: bool | None = None

    @property
    def type(self) -> str:
        return self.__struct_config__.tag  # type: ignore[return-value]

    @property
    def label(self) -> str:
        return self.name or self.id

    @property
    def next_ids(self) -> tuple[str, ...]:
        if self.next_step_id is None or self.next_step_id == "":
            return ()
        if isinstance(self.next_step_id, str):
            return (self.next_step_id,)
        return tuple(s for s in self.next_step_id if s)


class AgentStep(StepBase, tag="agent", frozen=True): ...
class LlmStep(StepBase, tag="llm", frozen=True): ...
class ToolStep(StepBase, tag="tool", frozen=True): ...
class EvaluatorStep(StepBase, tag="evaluator", frozen=True): ...
class ParallelStep(StepBase, tag="parallel", frozen=True): ...
class MergeStep(StepBase, tag="merge", frozen=True): ...
class LoopStep(StepBase, tag="loop", frozen=True): ...
class HumanStep(StepBase, tag="human", frozen=True): ...
class TransformStep(StepBase, tag="transform", frozen=True): ...
class ExtractJsonStep(StepBase, tag="extract_json", frozen=True): ...
class IfElseStep(StepBase, tag="if_else", frozen=True): ...
class SwitchStep(StepBase, tag="switch", frozen=True): ...
class PrintStep(StepBase, tag="print", frozen=True): ...
class EndStep(StepBase, tag="end", frozen=True): ...


Step = Union[
    AgentStep, LlmStep, ToolStep, EvaluatorStep, ParallelStep, MergeStep, LoopStep, HumanStep,
    TransformStep, ExtractJsonStep, IfElseStep, SwitchStep, PrintStep, EndStep,
]
STEP_CLASSES: dict[str, type[StepBase]] = {
    cls.__struct_config__.tag: cls
    for cls in Step.__args__  # type: ignore[attr-defined]
}
STEP_TYPES: tuple[str, ...] = tuple(STEP_CLASSES)


class Agent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    name: str = ""
    description: str = ""
    type: str = "conversational"
    system_prompt: str = ""
    model: str | None = None
    provider: str | None = None
    tools: list[str] | str = []
    max_turns: int | None = None
    orchestration_id: str | None = None  # type "orchestrator": a sub-orchestration
    # Synapse UI/platform fields: accepted, ignored.
    avatar: str | None = None
    repos: list[Any] = []
    db_configs: list[Any] = []
    skip_default_tools: bool | None = None
    delegate_agent_ids: list[str] = []

    @property
    def tool_names(self) -> tuple[str, ...] | None:
        """Tool names the agent may use; None means every registered tool."""
        if isinstance(self.tools, str):
            return None if self.tools == "all" else (self.tools,)
        return None if "all" in self.tools else tuple(self.tools)


class Orchestration(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    name: str
    description: str = ""
    entry_step_id: str | None = None
    state_schema: dict[str, StateField] = {}
    steps: list[Step]
    agents: list[Agent] = []
    max_total_cost_usd: float | None = None
    max_total_turns: int = 100
    timeout_minutes: float = 30.0
    version: str | None = None
    # Synapse UI fields: accepted, ignored.
    avatar: str | None = None
    trigger: str | None = None
    created_at: str | None = None
    updated_at: str | None = None

    @property
    def entry(self) -> str | None:
        if self.entry_step_id:
            return self.entry_step_id
        return self.steps[0].id if self.steps else None


def known_fields(cls: type[msgspec.Struct]) -> frozenset[str]:
    return frozenset(cls.__struct_fields__)


AGENT_FIELDS = known_fields(Agent)
ORCHESTRATION_FIELDS = known_fields(Orchestration)
BUNDLE_FIELDS = frozenset(
    {"synapse_export", "version", "exported_at", "has_python_tools", "custom_tools", "agents",
     "orchestrations", "mcp_servers"}
)


def is_ignored_extra(name: str) -> bool:
    """Open-ended Synapse UI settings that are accepted without being declared."""
    return name.startswith("cache_")
