// exgate lab console. No framework, no build step. Every string from the server is
// written with textContent (user names and paths are attacker-chosen): never as HTML.
"use strict";

const $ = (selector) => document.querySelector(selector);
let steps = [];          // the scenario's ArticleStep list, from /state
let exchangeReceived = 0;
let lastId = 0;        // the newest event shown: a new stream resumes after it
let stateTimer;

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

// "1–2" marks steps 1 and 2; "4–8" is one step of the figure.
function stepNumbers(step) {
  if (!step) return [];
  if (steps.some((s) => s.number === step)) return [step];
  return step.split("–").filter((n) => steps.some((s) => s.number === n));
}

function renderSteps() {
  const list = $("#steps");
  list.replaceChildren();
  for (const s of steps) {
    const item = el("li");
    item.dataset.step = s.number;
    item.appendChild(el("span", s.number, "num"));
    item.appendChild(el("span", s.title + " "));
    item.appendChild(el("span", "not seen yet", "mark"));
    list.appendChild(item);
    const arrow = document.querySelector(`.arrow[data-arrow="${s.arrow}"] .num`);
    if (arrow) arrow.textContent = s.number;
  }
}

function markStep(number, event) {
  const item = document.querySelector(`#steps li[data-step="${CSS.escape(number)}"]`);
  const step = steps.find((s) => s.number === number);
  if (!item || !step) return;
  item.classList.add("seen");
  const red = !!event.blocked_legacy;
  const amber = !!event.legacy && !red;
  item.classList.toggle("red", red);
  item.classList.toggle("amber", amber);
  item.querySelector(".mark").textContent = red
    ? `seen (#${event.id}): blocked at exgate (${event.reason})`
    : amber
      ? `seen (#${event.id}): forwarded to Exchange (${event.decision}, ${event.reason})`
      : `seen (#${event.id})`;
  const arrow = document.querySelector(`.arrow[data-arrow="${step.arrow}"]`);
  if (!arrow) return;
  arrow.classList.add("seen", "active");
  if (step.arrow === "legacy") {
    arrow.classList.toggle("blocked", !!red);
    arrow.classList.toggle("passed", !red);
  }
  setTimeout(() => arrow.classList.remove("active"), 1500);
}

function where(event) {
  switch (event.source) {
    case "exgate": return "exgate";
    case "identity-provider": return "identity provider";
    case "exchange": return "Exchange";
    default: return event.source;
  }
}

function addRow(event) {
  const tbody = $("#requests tbody");
  const row = el("tr");
  row.dataset.id = event.id;
  row.dataset.source = event.source;
  if (event.step) row.dataset.step = event.step;
  if (event.decision) row.dataset.decision = event.decision;
  if (event.reason) row.dataset.reason = event.reason;
  if (event.user) row.dataset.user = event.user;
  if (event.blocked_legacy) row.classList.add("blocked-legacy");
  else if (event.legacy) row.classList.add("passed-legacy");
  if (event.source === "cmdlet") row.classList.add("cmdlet");
  const request = event.source === "cmdlet"
    ? event.cmdlets.join("\n") || "(nothing to send)"
    : `${event.method || ""} ${event.path || ""}`.trim();
  let decision = event.decision || "";
  if (event.blocked_legacy) decision = `✕ ${decision}`;
  const received = event.forwarded === undefined
    ? (event.source === "exchange" ? "(Exchange's own record)" : "")
    : !event.forwarded
      ? "no"
      : event.upstream_status !== undefined
        ? `yes (${event.upstream_status})`
        : "forwarded; no answer (the client went away, or Exchange did not answer)";
  const cells = [
    event.id,
    (event.ts || "").slice(11, 23),
    event.step || "",
    where(event),
    request,
    event.protocol || "",
    event.scheme || "",
    event.user || "",
    decision,
    event.reason || event.detail || "",
    event.status || "",
    received,
  ];
  cells.forEach((text, i) => {
    const cell = el("td", text);
    if (i === 4) cell.className = "request";
    if (i === 7) cell.className = "user";
    if (i === 8) cell.className = "decision";
    if (i === 9) cell.className = "reason";
    if (i === 11) cell.className = "received";
    row.appendChild(cell);
  });
  tbody.prepend(row);
  while (tbody.rows.length > 500) tbody.deleteRow(-1);
}

// Many cmdlet events at once (a page opening on a long history) fetch the state once.
function refreshState() {
  clearTimeout(stateTimer);
  stateTimer = setTimeout(loadState, 150);
}

function onEvent(event) {
  if (event.id <= lastId) return;
  lastId = event.id;
  if (event.source === "exchange") {
    exchangeReceived += 1;
    $("#exchange-count").textContent = `received ${exchangeReceived} request${exchangeReceived === 1 ? "" : "s"}`;
  }
  addRow(event);
  for (const n of stepNumbers(event.step)) markStep(n, event);
  if (event.source === "cmdlet") {
    const item = el("li");
    item.appendChild(el("span", event.detail || ""));
    for (const line of event.cmdlets || []) item.appendChild(el("code", line));
    $("#cmdlet-log").prepend(item);
    refreshState();
  }
}

function renderState(state) {
  $("#scenario").textContent = `Scenario ${state.scenario}: ${state.title}`;
  document.body.dataset.mfa = state.scenario.endsWith("adfs") ? "adfs" : "ca";
  $("#exchange-name").textContent = state.deployment === "online" ? "Exchange Online" : "Exchange Server 2019";
  $("#entra-sub").textContent = state.scenario.endsWith("adfs") ? "federates to AD FS" : "Conditional Access";
  if (steps.length === 0) {
    steps = state.steps;
    renderSteps();
  }
  $("#org-default").textContent = state.org_default || "none";
  $("#mode").textContent = state.mode;
  $("#stage").textContent = state.stage || state.stage_note || "none";
  $("#policies").textContent = state.policies || "(no policies)";
  const users = $("#users tbody");
  users.replaceChildren();
  for (const u of state.users) {
    const row = el("tr");
    row.dataset.user = u.upn;
    const head = el("th", u.upn);
    head.scope = "row";
    row.appendChild(head);
    // The policy in force: the user's own, or the organization default; report-only said.
    const policy = !u.effective
      ? "none"
      : `${u.effective} (${u.assigned ? "their own" : "organization default"}${u.report_only ? ", report-only" : ""})`;
    row.appendChild(el("td", policy));
    row.appendChild(el("td", u.legacy));
    users.appendChild(row);
  }
  const stages = $("#stages");
  // Re-drawing the buttons must not lose the keyboard's place.
  const focused = document.activeElement && document.activeElement.dataset
    ? document.activeElement.dataset.stage : undefined;
  stages.replaceChildren();
  const labels = {
    "report-only": "1. Report only, for everyone",
    pilot: "2. Pilot group (user01)",
    organization: "3. Organization",
  };
  const meaning = {
    "report-only": "Nobody blocked: every legacy attempt is forwarded and recorded as report_only.",
    pilot: "user01 blocked; everyone else forwarded and recorded.",
    organization: "The organization default blocks everyone without a policy of their own; user01 keeps the pilot's.",
  };
  for (const plan of state.stages) {
    const box = el("div", undefined, "stage");
    const button = el("button", labels[plan.stage] || plan.stage);
    button.type = "button";
    button.dataset.stage = plan.stage;
    button.setAttribute("aria-pressed", String(state.stage === plan.stage));
    const listId = `cmdlets-${plan.stage}`;
    button.setAttribute("aria-describedby", listId);
    button.addEventListener("click", () => switchStage(plan.stage));
    box.appendChild(button);
    box.appendChild(el("span", " " + (meaning[plan.stage] || ""), "hint"));
    const list = el("ul");
    list.id = listId;
    if (plan.cmdlets.length === 0) list.appendChild(el("li", "already here: nothing to send"));
    for (const line of plan.cmdlets) {
      const item = el("li");
      item.appendChild(el("code", line));
      list.appendChild(item);
    }
    box.appendChild(list);
    stages.appendChild(box);
    if (plan.stage === focused) button.focus();
  }
}

async function loadState() {
  const res = await fetch("state", { cache: "no-store" });
  if (res.ok) renderState(await res.json());
}

async function switchStage(stage) {
  for (const b of document.querySelectorAll("#stages button")) b.disabled = true;
  $("#rollout-status").textContent = `Sending the ${stage} stage…`;
  try {
    const res = await fetch("rollout", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ stage }),
    });
    const answer = await res.json();
    if (answer.state) renderState(answer.state);
    const n = (answer.cmdlets || []).length;
    $("#rollout-status").textContent = !answer.applied
      ? `Rollout to ${stage} refused: ${answer.error}`
      : n === 0
        ? `Already at the ${stage} stage: nothing sent.`
        : `Rollout: ${stage} (${n} cmdlet${n === 1 ? "" : "s"} applied).`;
  } catch (e) {
    $("#rollout-status").textContent = `The console did not answer (${e.message}): nothing was applied. Try again.`;
  } finally {
    for (const b of document.querySelectorAll("#stages button")) b.disabled = false;
    // The buttons were re-drawn: keep the keyboard on the one pressed.
    const pressed = document.querySelector(`#stages button[data-stage="${stage}"]`);
    if (pressed) pressed.focus();
  }
}

function connect() {
  // A new stream resumes after the last event shown (the browser's own reconnections send
  // Last-Event-ID; one opened here says it in the query).
  const source = new EventSource(lastId ? `events?after=${lastId}` : "events");
  source.onopen = () => { $("#connection").textContent = "Live: connected to the event stream."; document.body.dataset.connected = "true"; };
  source.onerror = () => {
    document.body.dataset.connected = "false";
    if (source.readyState === EventSource.CLOSED) {
      // Refused (503: too many pages open), or the lab restarted: the browser gives up
      // for good, so try again ourselves.
      $("#connection").textContent = "Event stream refused; trying again in 5 s…";
      setTimeout(connect, 5000);
    } else {
      $("#connection").textContent = "Event stream lost; reconnecting…";
    }
  };
  source.onmessage = (message) => {
    try { onEvent(JSON.parse(message.data)); } catch (e) { console.error(e); }
  };
  source.addEventListener("lagged", (message) => {
    $("#connection").textContent = `The page fell behind: ${message.data} events skipped.`;
  });
}

loadState().then(connect);
