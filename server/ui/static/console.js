// The console's live parts: the run list refreshes itself, a run page follows the run's events
// (EventSource, which reconnects with Last-Event-ID) and colours its graph, and forms are sent once.
"use strict";

const PART = { "X-Console-Part": "1" };
const STATUSES = ["pending", "running", "completed", "failed", "skipped", "waiting-join", "waiting-person"];
const MAX_EVENTS = 400;

function signedOut() {
  const live = document.getElementById("live");
  const link = document.createElement("a");
  link.href = "/ui/sign-in?next=" + encodeURIComponent(location.pathname + location.search);
  link.textContent = "Sign in again";
  if (live) { live.textContent = "Your session ended. "; live.append(link); }
}

async function fetchPart(url) {
  const response = await fetch(url, { headers: PART, credentials: "same-origin" });
  if (response.status === 401) { signedOut(); return null; }
  if (!response.ok) return null;
  return response.text();
}

// -- forms ------------------------------------------------------------------------------------
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) { event.preventDefault(); return; }
  if (form.hasAttribute("data-once")) {
    if (form.dataset.sent) { event.preventDefault(); return; }
    form.dataset.sent = "1";
    setTimeout(() => form.querySelectorAll("button[type=submit]").forEach((b) => { b.disabled = true; }), 0);
  }
});
window.addEventListener("pageshow", () => {  // coming back to a page: its forms work again
  document.querySelectorAll("form[data-sent]").forEach((form) => {
    delete form.dataset.sent;
    form.querySelectorAll("button[type=submit]").forEach((b) => { b.disabled = false; });
  });
});

// -- the run list -----------------------------------------------------------------------------
function followRunList(rows) {
  const every = Number(rows.dataset.live) || 3000;
  const tick = async () => {
    if (!document.hidden) {
      const html = await fetchPart(location.href);
      if (html !== null && html.trim() !== rows.innerHTML.trim()) rows.innerHTML = html;
    }
    setTimeout(tick, every);
  };
  setTimeout(tick, every);
}

// -- one run ----------------------------------------------------------------------------------
function paintSteps(statuses) {
  document.querySelectorAll("#run-graph g.step").forEach((node) => {
    const status = statuses[node.dataset.step] || "pending";
    STATUSES.forEach((s) => node.classList.toggle("status-" + s, s === status));
  });
}

function paintStep(stepId, status) {
  document.querySelectorAll("#run-graph g.step").forEach((node) => {
    if (node.dataset.step === stepId) STATUSES.forEach((s) => node.classList.toggle("status-" + s, s === status));
  });
}

function describe(e) {
  const parts = [];
  if (e.step_id) parts.push(e.step_id);
  switch (e.type) {
    case "run_start": parts.push(e.orchestration_id); break;
    case "step_start": parts.push(e.step_type); break;
    case "step_complete": parts.push(e.status, e.turns + " turn" + (e.turns === 1 ? "" : "s"),
      "$" + Number(e.cost_usd).toFixed(4), Number(e.duration_seconds).toFixed(2) + " s"); break;
    case "routing_decision": parts.push("→ " + (e.target_step_id || "end") + " (" + e.decision + ")"); break;
    case "tool_execution": case "tool_result": parts.push(e.tool_name); break;
    case "human_input_required": parts.push(e.prompt); break;
    case "orchestration_complete": parts.push(e.status, "$" + Number(e.total_cost_usd).toFixed(4)); break;
    case "orchestration_error": parts.push(e.error); break;
    case "step_error": parts.push(e.error); break;
    case "loop_limit_reached": parts.push("after " + e.max_iterations + " iterations"); break;
    case "done": parts.push(e.status); break;
    default: break;
  }
  return parts.filter((p) => p !== undefined && p !== "").join(" · ");
}

function followRun(root) {
  const list = document.getElementById("events");
  const live = document.getElementById("live");
  const summary = document.getElementById("run-summary");
  const record = document.getElementById("run-record");
  let lastSeq = 0;
  let caughtUpTo = -1;  // the run's last stored event when the page last reconnected to catch up
  let failures = 0;  // stream errors in a row with no event between them
  let source = null;
  let refreshTimer = null;
  let pollTimer = null;

  const head = () => summary.querySelector(".run-head");
  const status = () => (head() ? head().dataset.status : "");
  const say = (text) => { if (live) live.textContent = text; };

  function addEvent(e) {
    const item = document.createElement("li");
    item.className = "ev-" + e.type;
    const seq = document.createElement("span");
    seq.className = "seq";
    seq.textContent = "#" + e.seq;
    const type = document.createElement("span");
    type.className = "type";
    type.textContent = e.type;
    const text = document.createElement("span");
    text.textContent = describe(e);
    item.append(seq, type, text);
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
    list.append(item);
    while (list.children.length > MAX_EVENTS) list.firstElementChild.remove();
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  async function refresh() {
    const html = await fetchPart(root.dataset.part);
    if (html === null) return;
    const fresh = document.createElement("template");
    fresh.innerHTML = html;
    for (const part of [summary, record]) {
      const next = fresh.content.getElementById(part.id);
      if (next && next.innerHTML !== part.innerHTML) part.innerHTML = next.innerHTML;
    }
    const data = summary.querySelector("#step-statuses");
    if (data) paintSteps(JSON.parse(data.textContent));
    afterRefresh();
  }

  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refresh, 250);
  }

  function afterRefresh() {
    const now = status();
    const stored = head() ? Number(head().dataset.lastSeq) : 0;
    clearTimeout(pollTimer);
    if (source) return;
    if (now === "running" || (stored > lastSeq && stored !== caughtUpTo)) {
      caughtUpTo = stored;  // events after a `done` (the run went on after a gate): fetch them
      connect();
    } else if (now === "paused") {
      say("Waiting for a person to answer.");
      pollTimer = setTimeout(refresh, 4000);
    } else {
      say("The run is " + now + ".");
    }
  }

  function connect() {
    const url = root.dataset.events + (lastSeq ? "?after=" + lastSeq : "");
    source = new EventSource(url);
    say("Live.");
    source.onopen = () => say("Live.");
    source.onmessage = (message) => {
      failures = 0;
      const e = JSON.parse(message.data);
      if (e.seq <= lastSeq) return;
      lastSeq = e.seq;
      addEvent(e);
      if (e.type === "step_start") paintStep(e.step_id, "running");
      else if (e.type === "step_complete") { paintStep(e.step_id, e.status); refreshSoon(); }
      else if (e.type === "human_input_required") { paintStep(e.step_id, "waiting-person"); refreshSoon(); }
      else if (e.type === "loop_limit_reached") paintStep(e.step_id, "skipped");
      else if (e.type === "done") {
        source.close();
        source = null;
        refreshSoon();
      }
    };
    source.onerror = () => {
      failures += 1;
      if (source && (source.readyState === EventSource.CLOSED || failures > 2)) {
        // Refused (signed out, run gone) or ended with nothing new: look at the run first.
        source.close();
        source = null;
        say("Live updates paused; checking the run…");
        setTimeout(refresh, failures > 5 ? 10000 : 2000);
      } else {
        say("Reconnecting…");  // the browser reconnects by itself, sending Last-Event-ID
      }
    };
  }

  connect();
}

document.addEventListener("DOMContentLoaded", () => {
  const rows = document.querySelector("#run-rows[data-live]");
  if (rows) followRunList(rows);
  const run = document.getElementById("run");
  if (run) followRun(run);
});
