"""Where a problem sits in the text of a graph file: the line of its JSON path, or of its step.

Problems name a JSON path (`$.steps[3].output_key`) or a step id; people editing a file want a
line number. The text is composed as YAML (JSON is YAML too), which keeps every node's position.
"""

from __future__ import annotations

import re

import yaml

from orch.errors import Problem

_PART = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")
_FIELD = re.compile(r"^([a-z_]+(?:\.[^\s:]+)?)[\s:]")


class SourceLines:
    """Line numbers (1-based) of the nodes of one file's text."""

    def __init__(self, text: str) -> None:
        try:
            self.root: yaml.Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            self.root = None

    def of_path(self, path: str) -> int | None:
        """The line of the value at `path`; for a key that is there, the line of the key (that is
        where an unknown or misspelt field is written)."""
        node = self.root
        if node is None or not path.startswith("$"):
            return None
        line = node.start_mark.line + 1
        for name, index in _PART.findall(path[1:]):
            if isinstance(node, yaml.MappingNode) and name:
                found = next(((k, v) for k, v in node.value if k.value == name), None)
                if found is None:
                    return line
                line, node = found[0].start_mark.line + 1, found[1]
            elif isinstance(node, yaml.SequenceNode) and index and int(index) < len(node.value):
                node = node.value[int(index)]
                line = node.start_mark.line + 1
            else:
                return line
        return line

    def of_step(self, step_id: str, orchestration_id: str | None = None, field: str = "") -> int | None:
        """The line where the step with this id starts (in that orchestration, in a bundle), or
        where its `field` is written (`route_map.approve`: that entry of route_map)."""
        for orch in self._orchestrations():
            if orchestration_id and _scalar(orch, "id") not in (orchestration_id, None):
                continue
            steps = _child(orch, "steps")
            if isinstance(steps, yaml.SequenceNode):
                for step in steps.value:
                    if _scalar(step, "id") == step_id:
                        return _field_line(step, field.split(".") if field else [])
        return None

    def of_problem(self, problem: Problem) -> int | None:
        """The line of the problem's path; else of its step, at the field its message starts
        with when the step has that field (`next_step_id points to ...`)."""
        if problem.path and problem.path != "$":
            return self.of_path(problem.path)
        if problem.step_id:
            field = _FIELD.match(problem.message)
            return self.of_step(problem.step_id, problem.orchestration_id, field.group(1) if field else "")
        return None

    def _orchestrations(self) -> list[yaml.Node]:
        root = self.root
        if not isinstance(root, yaml.MappingNode):
            return []
        listed = _child(root, "orchestrations")
        found = list(listed.value) if isinstance(listed, yaml.SequenceNode) else []
        return found + ([root] if _child(root, "steps") is not None else [])


def _field_line(node: yaml.Node, names: list[str]) -> int:
    line = int(node.start_mark.line) + 1
    for name in names:
        if not isinstance(node, yaml.MappingNode):
            break
        found = next(((k, v) for k, v in node.value if k.value == name), None)
        if found is None:
            break
        line, node = int(found[0].start_mark.line) + 1, found[1]
    return line


def _child(node: yaml.Node, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)


def _scalar(node: yaml.Node, key: str) -> str | None:
    value = _child(node, key)
    return str(value.value) if isinstance(value, yaml.ScalarNode) else None
