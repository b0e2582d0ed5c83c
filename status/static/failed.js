// The failed-jobs page: lists /api/failed with filters and paging, shows one dead letter,
// replays or forgets in two steps (a dry run answers the count; the confirm carries it),
// and shows the action history. Text only through textContent. POSTs carry the session's
// CSRF token (GET /api/session) and, when the service has one, its bearer token.
"use strict";

const state = { page: 1, pages: 1, pending: null };

async function whoActs() {
  const by = await session();
  if (by) $("acting-as").textContent = by;
}

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toLocaleString();
}

function filter() {
  const f = {};
  for (const [key, id] of [["topic", "f-topic"], ["error", "f-error"], ["since", "f-since"], ["uuid", "f-uuid"],
                          ["owner", "f-owner"], ["gallery", "f-gallery"]]) {
    const v = $(id).value.trim();
    if (v) f[key] = v;
  }
  if ($("f-poison").checked) f.poison = "1";
  return f;
}

function button(text, onClick, cls) {
  const b = el("button", text, cls);
  b.type = "button";
  b.addEventListener("click", onClick);
  return b;
}

async function load() {
  const q = new URLSearchParams({ ...filter(), page: String(state.page), per_page: $("f-per-page").value });
  let r;
  try {
    r = await api("/api/failed?" + q.toString());
  } catch (err) {
    $("list-error").textContent = err.message;
    return;
  }
  if (!r.ok) {
    $("list-error").textContent = r.data.error || `HTTP ${r.status}`;
    return;
  }
  $("list-error").textContent = "";
  const d = r.data;
  state.pages = d.pages;
  $("total").textContent = `${d.total} matching`;
  $("page-info").textContent = `page ${d.page} of ${d.pages}`;
  $("prev").disabled = d.page <= 1;
  $("next").disabled = d.page >= d.pages;
  const body = $("failed").tBodies[0];
  body.replaceChildren();
  if (d.items.length === 0) {
    const tr = el("tr");
    const td = el("td", "no unresolved dead letters match", "muted");
    td.colSpan = 7;
    tr.append(td);
    body.append(tr);
  }
  for (const e of d.items) {
    const tr = el("tr");
    tr.dataset.id = e.id;
    tr.dataset.uuid = e.uuid;
    const err = el("td", `${e.error_class}: ${e.error_message}`, "err");
    if (e.poison) err.append(el("span", " poison", "pill stalled"));
    const acts = el("td", null, "acts");
    acts.append(
      button("Details", () => detail(e.id), "show"),
      button("Replay…", () => dryRun("replay", { ids: [e.id] }), "replay"),
      button("Forget…", () => dryRun("forget", { ids: [e.id] }), "forget"),
    );
    tr.append(el("td", when(e.failed_at)), el("td", e.source_topic), el("td", e.uuid, "uuid"), err,
      el("td", e.attempts, "num"), el("td", e.reason), acts);
    body.append(tr);
  }
}

async function detail(id, quiet) {
  const r = await api("/api/failed/" + encodeURIComponent(id));
  const box = $("detail");
  box.hidden = false;
  if (!r.ok) {
    $("d-id").textContent = id;
    $("d-state").textContent = r.data.error || `HTTP ${r.status}`;
    return;
  }
  const d = r.data;
  $("d-id").textContent = d.id;
  box.dataset.id = d.id;
  $("d-state").textContent = d.state + (d.poison ? ", poison" : "");
  const fields = $("d-fields");
  fields.replaceChildren();
  const rows = [
    ["UUID", d.uuid], ["Error class", d.error_fqcn], ["Message", d.error_message],
    ["Reason", d.reason], ["Attempts", d.attempts], ["First failure", when(d.first_failed_at)],
    ["Last failure", when(d.failed_at)], ["Worker", d.worker],
    ["Source", `${d.source.topic}/${d.source.partition}@${d.source.offset}`], ["Dead letter", d.dead_letter],
  ];
  for (const [k, v] of rows) {
    const tr = el("tr");
    tr.append(el("th", k), el("td", v));
    fields.append(tr);
  }
  $("d-stack").textContent = d.error_stack || "(none recorded)";
  $("d-value").textContent = d.value.text === null ? "(no value)" : d.value.text;
  $("d-value-note").textContent = `${d.value.size} bytes` + (d.value.truncated ? ", truncated" : "");
  const hs = $("d-headers");
  hs.replaceChildren();
  for (const [k, v] of Object.entries(d.headers)) {
    const tr = el("tr");
    tr.append(el("th", k), el("td", v));
    hs.append(tr);
  }
  const ul = $("d-lineage");
  ul.replaceChildren();
  for (const l of d.lineage) {
    ul.append(el("li", l.known
      ? `${l.id}: ${l.error_class}: ${l.error_message} (failed ${when(l.failed_at)}; ${l.how || l.state || "open"})`
      : `${l.id} (no longer in the dead-letter topic)`));
  }
  if (!d.lineage.length) ul.append(el("li", "not a replay", "muted"));
  if (!quiet) box.scrollIntoView({ block: "nearest" });
}

async function dryRun(action, target) {
  const body = { ...target, dry_run: true };
  $("action-msg").textContent = `${action}: dry run…`;
  const r = await api(`/api/failed/${action}`, body);
  if (!r.ok) {
    $("action-msg").textContent = r.data.error || `HTTP ${r.status}`;
    return;
  }
  const d = r.data;
  const rate = action === "replay" ? Number($("rate").value) || null : null;
  state.pending = { action, target, count: d.count, selection: d.selection, rate };
  let text = `Dry run: ${d.count} would be ${action === "replay" ? "replayed" : "forgotten"}`;
  if (rate && d.count > 1) text += ` at most ${rate} per second`;
  if (d.skipped_poison.length) text += `; ${d.skipped_poison.length} poison skipped`;
  if (d.unknown.length) text += `; not unresolved: ${d.unknown.join(", ")}`;
  $("confirm-text").textContent = text + ".";
  const ids = $("confirm-ids");
  ids.replaceChildren();
  for (const id of d.ids.slice(0, 10)) ids.append(el("li", id));
  if (d.count > 10) ids.append(el("li", `… and ${d.count - 10} more`, "muted"));
  $("confirm-box").dataset.action = action;
  $("confirm-box").dataset.count = d.count;
  $("confirm-go").textContent = `Confirm ${action} of ${d.count}`;
  $("confirm-go").disabled = d.count === 0;
  $("confirm-box").hidden = false;
  $("action-msg").textContent = "";
}

async function confirmAction() {
  const p = state.pending;
  if (!p) return;
  const body = { ...p.target, confirm: { count: p.count, selection: p.selection } };
  if (p.rate) body.rate = p.rate;
  const r = await api(`/api/failed/${p.action}`, body);
  $("confirm-box").hidden = true;
  state.pending = null;
  $("action-msg").textContent = r.ok
    ? `${p.action} of ${r.data.count} started`
    : (r.data.error || `HTTP ${r.status}`);
  await actions();
}

async function actions() {
  let r;
  try { r = await api("/api/actions"); } catch (_) { return; }
  if (!r.ok) {
    $("running").textContent = r.data.error || `HTTP ${r.status}`;
    return;
  }
  const run = r.data.running;
  $("running").textContent = run ? `running: ${run.action} of ${run.count}, ${run.done} done` : "";
  const body = $("actions").tBodies[0];
  body.replaceChildren();
  if (!r.data.actions.length) {
    const tr = el("tr");
    const td = el("td", "no actions recorded", "muted");
    td.colSpan = 7;
    tr.append(td);
    body.append(tr);
  }
  for (const a of r.data.actions) {
    const tr = el("tr");
    tr.dataset.action = a.action;
    tr.dataset.state = a.state;
    const f = a.filter || {};
    const what = (f.ids && f.ids.length) ? f.ids.join(", ")
      : Object.entries(f).filter(([k, v]) => k !== "ids" && v !== null && !(Array.isArray(v) && !v.length))
        .map(([k, v]) => `${k}=${v}`).join(" ") || "every entry";
    tr.append(el("td", when(a.started_at || a.at)), el("td", a.action), el("td", a.count, "num"),
      el("td", a.done ?? "", "num"), el("td", a.by), el("td", a.state + (a.error ? `: ${a.error}` : "")),
      el("td", what + (a.rate ? ` (≤ ${a.rate}/s)` : "")));
    body.append(tr);
  }
}

function refreshAll() {
  load();
  actions();
  // the entry shown may have been replayed or forgotten meanwhile
  if (!$("detail").hidden && $("detail").dataset.id) detail($("detail").dataset.id, true);
}

$("filter-form").addEventListener("submit", (ev) => { ev.preventDefault(); state.page = 1; load(); });
$("prev").addEventListener("click", () => { state.page = Math.max(1, state.page - 1); load(); });
$("next").addEventListener("click", () => { state.page = Math.min(state.pages, state.page + 1); load(); });
$("bulk-replay").addEventListener("click", () => dryRun("replay", { filter: filter() }));
$("bulk-forget").addEventListener("click", () => dryRun("forget", { filter: filter() }));
$("confirm-go").addEventListener("click", confirmAction);
$("confirm-cancel").addEventListener("click", () => { $("confirm-box").hidden = true; state.pending = null; });
onTokenForm(async () => { await whoActs(); refreshAll(); });

const every = Math.max(0.5, Number(new URLSearchParams(location.search).get("every")) || 5);
// /failed#id=<id> (the search page links dead letters so) opens that one's detail.
const linked = new URLSearchParams(location.hash.slice(1)).get("id");
whoActs().catch(() => {}).finally(() => { refreshAll(); if (linked) detail(linked).catch(() => {}); });
setInterval(refreshAll, every * 1000);
