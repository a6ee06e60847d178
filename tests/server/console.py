"""What the console tests share: a graphs directory with the examples, one file that does not
validate and one with typed state; and a browser-less console user over real HTTP that keeps
its cookies and sends the CSRF token of the forms it fills in."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import httpx

from tests.server.conftest import API_KEY, ROOT

TYPED = """\
id: orch-typed-inputs
name: Typed inputs
description: Initial state of every type
state_schema:
  topic: {type: str}
  count: {type: int, default: 2}
  ratio: {type: float}
  loud: {type: bool, default: false}
  tags: {type: "list[str]", default: []}
steps:
  - id: show
    type: print
    print_content: "{state.topic} x{state.count}"
    output_key: shown
"""

# One branch reaches the join while the other waits for a person.
JOIN = """\
id: orch-join-wait
name: Join waits for a gate
steps:
  - {id: split, type: print, print_content: go, output_key: started, next_step_id: [quick, ask]}
  - {id: quick, type: print, print_content: done, output_key: quick_out, next_step_id: meet}
  - {id: ask, type: human, human_prompt: Go on?, output_key: answer, next_step_id: meet}
  - {id: meet, type: print, print_content: "{state.quick_out}", output_key: met}
"""


def console_graphs(directory: Path) -> Path:
    """The example graphs, a file left out at load (a misspelt step id), TYPED and JOIN."""
    directory.mkdir(parents=True, exist_ok=True)
    for f in (ROOT / "graphs").iterdir():
        shutil.copy(f, directory / f.name)
    shutil.copy(ROOT / "tests" / "engine" / "broken" / "dangling_next_step.yaml", directory / "dangling_next_step.yaml")
    (directory / "typed_inputs.yaml").write_text(TYPED)
    (directory / "join_wait.yaml").write_text(JOIN)
    return directory


def csrf(html: str) -> str:
    found = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


class ConsoleUser:
    """A person using the console without a browser: plain HTTP, cookies kept, no redirects
    followed unless asked."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=30)

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def sign_in(self, key: str = API_KEY) -> httpx.Response:
        token = csrf(self.http.get("/ui/sign-in").text)
        return self.http.post("/ui/sign-in", data={"api_key": key, "next": "/ui", "_csrf_token": token})

    def submit(self, page: str, action: str, fields: dict[str, str], **kw: Any) -> httpx.Response:
        """Fill in a form of `page` and send it to `action`, as a browser would."""
        token = csrf(self.http.get(page).text)
        return self.http.post(action, data={**fields, "_csrf_token": token}, **kw)
