"""The console in a real browser: Chromium driven by Playwright over a real server.

The browser is the Debian package `chromium` (.ci/run installs it); Playwright only drives it,
so nothing is downloaded. Without a browser these tests skip, saying why; with
ORCH_REQUIRE_BROWSER=1 (set by .ci/run) they fail instead. Each test saves screenshots to
test-artifacts/screenshots/, which .ci/run lists at the end.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import httpx
import pytest

from tests.server.conftest import API_KEY, AUTH, ROOT, LiveServer, make_settings
from tests.server.console import console_graphs
from tests.server.flows import slowed

CHROMIUM = os.environ.get("ORCH_CHROMIUM", "/usr/bin/chromium")
SHOTS = ROOT / "test-artifacts" / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
WIDE, NARROW = {"width": 1440, "height": 900}, {"width": 360, "height": 780}
RESEARCH = "orch-research-report"


def _missing_browser() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM}: install the Debian package `chromium` (or set ORCH_CHROMIUM)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _missing_browser()
    if reason:
        if os.environ.get("ORCH_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The examples, a file that does not load, and agents slowed down so that a page can watch
    a run go by."""
    directory = tmp_path_factory.mktemp("browser")
    settings = make_settings(directory)
    settings.graphs_dir = str(console_graphs(directory / "graphs"))
    live = LiveServer(settings, executors=slowed(1.0)).start()
    yield live
    live.stop()


@pytest.fixture
def page(browser: Any, server: LiveServer) -> Iterator[Any]:
    """A page of a signed-in browser, 1440 px wide."""
    context = browser.new_context(viewport=WIDE, base_url=server.url)
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    tab.goto("/ui")
    assert "/ui/sign-in" in tab.url
    tab.get_by_label("API key").fill(API_KEY)
    tab.get_by_role("button", name="Sign in").click()
    tab.wait_for_url(re.compile(r"/ui$"))
    yield tab
    context.close()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def step(page: Any, step_id: str) -> Any:
    return page.locator(f'#run-graph g.step[data-step="{step_id}"]')


def test_start_watch_the_gate_live_answer_it_and_see_the_run_complete(page: Any) -> None:
    shot(page, "01-orchestrations-1440")
    page.get_by_role("link", name="Research → Report").click()
    page.get_by_label("Message").fill("Synapse AI platform")
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url(re.compile(r"/ui/runs/run_"))
    run_id = page.url.rsplit("/", 1)[1]
    page.evaluate("window.stillTheSamePage = true")
    approve = step(page, "step-approve")
    assert "status-waiting-person" not in (approve.get_attribute("class") or "")  # agents are still at work
    shot(page, "02-run-started-1440")
    approve.and_(page.locator(".status-waiting-person")).wait_for()
    assert page.evaluate("window.stillTheSamePage") is True  # it turned live, no reload
    assert "status-completed" in (step(page, "step-write").get_attribute("class") or "")
    page.locator("#events li.ev-human_input_required").wait_for()
    page.locator("#run-status", has_text="paused").wait_for()
    shot(page, "03-run-waiting-for-a-person-1440")

    page.get_by_role("link", name=re.compile("^Gates")).click()
    gate = page.locator(f'article[id="gate-{run_id}"]')
    assert "Please review the draft article and decide whether to publish." in gate.inner_text()
    # The form offers only the gate's options; a stale or edited form can still send another
    # value, which the server refuses with the error next to its field.
    gate.get_by_label("Decision").evaluate("s => { s.add(new Option('maybe', 'maybe')); s.value = 'maybe'; }")
    gate.get_by_label("Editor notes").fill("Not sure yet")
    gate.get_by_role("button", name="Send answer").click()
    refused = page.locator(f'article[id="gate-{run_id}"]')
    error = refused.locator(".field.invalid .error")
    assert error.inner_text() == "'maybe' is not one of: approve, reject"
    assert refused.get_by_label("Decision").get_attribute("aria-invalid") == "true"
    assert refused.get_by_label("Editor notes").input_value() == "Not sure yet"
    shot(page, "04-gate-answer-refused-1440")

    refused.get_by_label("Decision").select_option("approve")
    refused.get_by_role("button", name="Send answer").click()
    page.wait_for_url(re.compile(rf"/ui/runs/{run_id}\?notice=answered"))
    page.locator("#run-status", has_text="completed").wait_for()
    step(page, "step-publish").and_(page.locator(".status-completed")).wait_for()
    history = page.locator("table.history tbody tr")
    assert [history.nth(i).locator("td").first.inner_text().split()[0] for i in range(history.count())] == [
        "Research", "Write", "Editor", "Approved?", "Publish"]
    cost = page.locator("#run-cost").inner_text()
    assert re.match(r"^\$\d+\.\d{2,4} of \$0\.50 allowed", cost), cost
    body = httpx.get(f"{page.url.split('/ui')[0]}/api/v1/orchestrations/runs/{run_id}", headers=AUTH).json()
    assert body["status"] == "completed" and cost.startswith(f"${body['total_cost_usd']:.4f}".rstrip("0"))
    page.locator("#events li.ev-orchestration_complete").wait_for()
    shot(page, "05-run-completed-1440")


def test_cancel_another_run(page: Any) -> None:
    page.goto(f"/ui/orchestrations/{RESEARCH}")
    page.get_by_label("Message").fill("to be cancelled")
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url(re.compile(r"/ui/runs/run_"))
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel run").click()
    page.wait_for_url(re.compile(r"notice=cancelled"))
    assert page.locator("#run-status").inner_text() == "cancelled"
    assert page.get_by_role("status").first.inner_text() == "The run was cancelled."
    assert page.get_by_role("button", name="Cancel run").count() == 0
    shot(page, "06-run-cancelled-1440")


def test_a_file_left_out_at_load_shows_with_its_problem(page: Any) -> None:
    section = page.locator("section.left-out")
    text = section.inner_text()
    assert "orch-dangling-next in" in text and "dangling_next_step.yaml" in text
    assert "line 9" in text and "next_step_id points to 'sumarize', which is not a step" in text
    section.scroll_into_view_if_needed()
    section.screenshot(path=str(SHOTS / "07-left-out-at-load-1440.png"))


def test_the_api_docs_load_with_every_other_host_blocked(browser: Any, server: LiveServer) -> None:
    context = browser.new_context(viewport=WIDE)
    own = urlparse(server.url).netloc
    elsewhere: list[str] = []

    def only_the_server(route: Any) -> None:
        if urlparse(route.request.url).netloc == own:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_server)
    tab = context.new_page()
    tab.goto(server.url + "/schema")
    tab.locator(".opblock").first.wait_for(timeout=20_000)
    paths = tab.locator(".opblock-summary-path").all_inner_texts()
    assert len(paths) == 16
    assert {"/api/v1/orchestrations/{orch_id}/run", "/api/v1/orchestrations/runs/{run_id}/events",
            "/health"} <= {p.replace("\u200b", "").strip() for p in paths}
    assert elsewhere == []
    shot(tab, "08-api-docs-offline-1440")
    context.close()


PAGES = ["/ui", f"/ui/orchestrations/{RESEARCH}", "/ui/runs", "RUN", "/ui/gates", "/ui/validate"]


@pytest.mark.parametrize("width", [NARROW, WIDE], ids=["360", "1440"])
def test_pages_fit_the_screen_and_every_control_has_a_label(page: Any, server: LiveServer,
                                                            width: dict[str, int]) -> None:
    run_id = httpx.post(f"{server.url}/api/v1/orchestrations/{RESEARCH}/run", headers=AUTH,
                        json={"message": "layout"}, timeout=60).json()["run_id"]
    page.set_viewport_size(width)
    for n, path in enumerate(PAGES):
        page.goto(f"/ui/runs/{run_id}" if path == "RUN" else path)
        page.wait_for_load_state("networkidle") if path != "RUN" else page.locator("#events li").first.wait_for()
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{path} is {overflow} px wider than {width['width']} px"
        unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
            .filter(e => e.type !== 'hidden' && !e.labels.length && !e.getAttribute('aria-label'))
            .map(e => e.name)""")
        assert unlabelled == [], path
        name = path.strip("/").replace("/", "-").replace("ui-orchestrations-", "orchestration-") or "ui"
        shot(page, f"10-{name if path != 'RUN' else 'run'}-{width['width']}")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
