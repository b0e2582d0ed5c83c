// The dashboard: polls /status (every 10 s; ?every=N overrides) and renders it; looks one
// upload up through /lookup/<uuid>. Text only through textContent: nothing from the
// server is parsed as HTML. A service with a token answers 401 until the page sends it:
// the page asks once and keeps it for this browser tab (sessionStorage).
"use strict";

const params = new URLSearchParams(location.search);
const EVERY_S = Math.max(0.2, Number(params.get("every")) || 10);

function bytes(n) {
  if (n === null || n === undefined) return "–";
  return (n / (1024 * 1024)).toFixed(0) + " MB";
}

function secs(x) {
  if (x === null || x === undefined) return "–";
  if (x < 10) return x.toFixed(1) + " s";
  if (x < 120) return Math.round(x) + " s";
  if (x < 7200) return Math.round(x / 60) + " min";
  return (x / 3600).toFixed(1) + " h";
}

function render(s) {
  for (const b of document.querySelectorAll("#health-bar .badge")) {
    const on = b.dataset.state === s.worker.status;
    b.classList.toggle("active", on);
    b.setAttribute("aria-current", on ? "true" : "false");
  }
  $("health-bar").dataset.status = s.worker.status;
  $("hint").textContent = s.worker.hint;
  $("checked-at").textContent = new Date(s.checked_at).toLocaleTimeString();
  $("checked-at").dateTime = s.checked_at;
  $("sample-age").textContent = secs(s.sample_age_s);
  $("count-pending").textContent = s.jobs.pending;
  $("count-ingest-pending").textContent = s.jobs.ingest_pending;
  $("count-failed").textContent = s.jobs.failed;
  $("count-members").textContent = s.group.members.length;
  $("failed-note").textContent = "Failed: " + s.jobs.note;

  const body = $("topics").tBodies[0];
  body.replaceChildren();
  for (const [name, t] of Object.entries(s.topics)) {
    const tr = el("tr");
    tr.dataset.topic = name;
    tr.append(el("td", name), el("td", t.kind));
    const st = el("td");
    st.append(el("span", t.status, "pill " + t.status));
    tr.append(st, el("td", t.totals.lag, "num pending"), el("td", secs(t.totals.oldest_lag_s), "num"));
    const parts = el("td");
    const box = el("div", null, "parts");
    for (const p of t.partitions) {
      const pill = el("span", p.partition, "pill " + p.status);
      pill.title = `partition ${p.partition}: ${p.status}, lag ${p.lag}; ${p.reason}`;
      box.append(pill);
    }
    parts.append(box);
    tr.append(parts);
    const op = el("td", null, "operator");
    if (t.kind === "job") {
      const paused = Boolean(t.paused_by_operator);
      const b = el("button", paused ? "Continue" : "Pause", "pause-toggle");
      b.type = "button";
      b.dataset.action = paused ? "continue" : "pause";
      b.addEventListener("click", () => togglePause(name, b.dataset.action, b));
      const c = el("button", "Clear backlog", "clear-start");
      c.type = "button";
      c.addEventListener("click", () => clearBacklog(name));
      op.append(b, " ", c);
      if (paused) op.append(el("div", t.paused_by_operator, "paused-note"));
    }
    tr.append(op);
    body.append(tr);
  }

  $("group-id").textContent = s.group.id;
  $("group-state").textContent = s.group.state;
  const ul = $("members");
  ul.replaceChildren();
  if (s.group.members.length === 0) ul.append(el("li", "no members", "muted"));
  for (const m of s.group.members) {
    const assigned = m.assigned.map((a) => `${a.topic} [${a.partitions.join(", ")}]`).join("; ");
    ul.append(el("li", `${m.client_id} @ ${m.host} — ${assigned || "nothing assigned"}`));
  }
  const k = s.kafka;
  $("kafka").textContent = k.reachable
    ? `Kafka ${k.bootstrap}: cluster ${k.cluster_id}, ${k.brokers} broker(s), round ${secs(k.round_s)}`
    : `Kafka ${k.bootstrap}: unreachable — ${k.error}` +
      (k.last_good_age_s !== null && k.last_good_age_s !== undefined
        ? `; last good sample ${secs(k.last_good_age_s)} old` : "; no good sample yet");

  const reasons = $("reasons");
  reasons.replaceChildren();
  for (const [name, t] of Object.entries(s.topics)) {
    for (const p of t.partitions) {
      if (p.status === "idle") continue;
      const li = el("li");
      li.dataset.partition = `${name}/${p.partition}`;
      li.append(el("span", p.status, "pill " + p.status), el("span", ` ${name}/${p.partition}: ${p.reason}`));
      reasons.append(li);
    }
  }
  if (!reasons.children.length) reasons.append(el("li", "every partition is idle", "muted"));

  renderWorkers(s.workers || []);
  renderLatency(s.preview_latency);
}

// POSTs go through common.js's api(): token, CSRF and the same-origin check.
const post = (path, body) => api(path, body);

async function togglePause(topic, action, button) {
  button.disabled = true;
  $("pause-msg").textContent = `${action} ${topic}…`;
  try {
    const r = await post(`/api/topics/${action}`, { topic });
    $("pause-msg").textContent = r.ok
      ? `${action === "pause" ? "paused" : "continued"} ${r.data.topics.join(", ")}`
      : (r.data.error || `HTTP ${r.status}`);
  } catch (err) {
    $("pause-msg").textContent = err.message;
  }
  await refresh(true);
}

async function clearBacklog(topic) {
  // Two steps, as on the failed page: the dry run's count, then a confirm that carries it.
  const msg = $("pause-msg");
  msg.replaceChildren(`clear ${topic}: dry run…`);
  const dry = await post("/api/topics/clear", { topic, dry_run: true });
  if (!dry.ok) { msg.replaceChildren(dry.data.error || `HTTP ${dry.status}`); return; }
  const go = el("button", `Confirm: skip ${dry.data.total} record(s) of ${topic}`, "clear-confirm");
  go.type = "button";
  go.addEventListener("click", async () => {
    go.disabled = true;
    const r = await post("/api/topics/clear", { topic, confirm: { total: dry.data.total } });
    msg.replaceChildren(r.ok ? `cleared ${r.data.cleared} record(s) of ${topic}`
                             : (r.data.error || `HTTP ${r.status}`));
    await refresh(true);
  });
  msg.replaceChildren(`${dry.data.total} record(s) waiting on ${topic} would be skipped (the workers must be stopped). `, go);
}

function renderWorkers(workers) {
  const body = $("workers").tBodies[0];
  body.replaceChildren();
  if (workers.length === 0) {
    const tr = el("tr");
    const td = el("td", "no worker has sent a heartbeat", "muted");
    td.colSpan = 9;
    tr.append(td);
    body.append(tr);
  }
  for (const w of workers) {
    const tr = el("tr");
    tr.dataset.worker = w.id;
    tr.dataset.state = w.state;
    const state = w.state === "gone" ? `gone (last seen ${secs(w.last_seen_s)} ago)` : w.state;
    const paused = (w.paused || []).map((p) => `${p.topic} [${p.partitions.join(", ")}]: ${p.reason}`);
    const jobs = (w.in_flight || []).map((j) => `${j.uuid} ${j.topic}/${j.partition}@${j.offset}, running ${secs(j.running_s)}`);
    tr.append(
      el("td", w.id), el("td", state, "worker-state"), el("td", w.version || ""),
      el("td", w.started_at ? new Date(w.started_at).toLocaleString() : ""),
      el("td", (w.topics || []).join(" > ")), el("td", w.concurrency ?? "", "num"),
      el("td", w.jobs_done ?? "", "num"), el("td", bytes(w.rss_bytes), "num"),
    );
    const detail = el("td");
    for (const line of jobs) detail.append(el("div", line, "in-flight"));
    for (const line of paused) detail.append(el("div", "held: " + line, "paused"));
    if (w.stopping) detail.append(el("div", "stopping: " + w.stopping, "paused"));
    tr.append(detail);
    body.append(tr);
  }
}

function renderLatency(lat) {
  for (const [key, id] of [["last_5m", "lat-5m"], ["last_60m", "lat-60m"]]) {
    const row = $(id);
    const v = lat ? lat[key] : null;
    const cells = row.querySelectorAll("td");
    const vals = v ? [v.count, secs(v.p50_s), secs(v.p95_s), secs(v.max_s)] : ["–", "–", "–", "–"];
    vals.forEach((x, i) => { cells[i].textContent = String(x); });
  }
}

async function refresh(force) {
  try {
    const r = await api("/status" + (force ? "?refresh=1" : ""));
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    render(r.data);
  } catch (err) {
    for (const b of document.querySelectorAll("#health-bar .badge")) {
      b.classList.toggle("active", b.dataset.state === "unknown");
    }
    $("health-bar").dataset.status = "unknown";
    $("hint").textContent = "the status service did not answer: " + err.message;
  }
}

function table(tbl, rows, columns) {
  const head = tbl.tHead;
  head.replaceChildren();
  const hr = el("tr");
  for (const c of columns) hr.append(el("th", c));
  head.append(hr);
  const body = tbl.tBodies[0];
  body.replaceChildren();
  for (const row of rows) {
    const tr = el("tr");
    for (const c of columns) {
      const v = row[c];
      tr.append(el("td", v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : v));
    }
    body.append(tr);
  }
}

async function lookup(ev) {
  ev.preventDefault();
  const uuid = $("lookup-input").value.trim();
  $("lookup-result").hidden = false;
  $("lookup-error").textContent = "looking up…";
  for (const id of ["attempts-error", "dead-letters-error"]) $(id).textContent = "";
  $("attempts").tBodies[0].replaceChildren();
  $("dead-letters").tBodies[0].replaceChildren();
  let data;
  try {
    const r = await api("/lookup/" + encodeURIComponent(uuid));
    data = r.data;
    if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  } catch (err) {
    $("lookup-error").textContent = err.message;
    return;
  }
  $("lookup-error").textContent = "";
  const attempts = data.attempts || [];
  if (data.attempts_error) $("attempts-error").textContent = data.attempts_error;
  else if (attempts.length === 0) $("attempts-error").textContent = "no attempts recorded";
  table($("attempts"), attempts, attempts.length ? Object.keys(attempts[0]) : []);

  const dead = data.dead_letters || [];
  $("dead-letters-error").textContent =
    data.dead_letters_error || (dead.length ? "" : "no dead letters");
  const body = $("dead-letters").tBodies[0];
  for (const d of dead) {
    const h = d.headers;
    const tr = el("tr");
    tr.dataset.offset = d.offset;
    tr.append(
      el("td", d.topic), el("td", d.partition, "num"), el("td", d.offset, "num"),
      el("td", d.timestamp ? new Date(d.timestamp * 1000).toLocaleString() : ""),
      el("td", `${h["kafka_dlt-exception-fqcn"] || ""}: ${h["kafka_dlt-exception-message"] || ""}`),
      el("td", h["x-ingest-dlq-reason"] || ""), el("td", h["x-ingest-attempts"] || "", "num"),
      el("td", d.state || ""),
    );
    body.append(tr);
  }
}

onTokenForm(() => refresh(true));
$("refresh-every").textContent = EVERY_S;
$("refresh-now").addEventListener("click", () => refresh(true));
$("lookup-form").addEventListener("submit", lookup);
refresh(false);
setInterval(() => refresh(false), EVERY_S * 1000);
