// The dashboard: polls /status (every 10 s; ?every=N overrides) and renders it; looks one
// upload up through /lookup/<uuid>. Text only through textContent: nothing from the
// server is parsed as HTML.
"use strict";

const params = new URLSearchParams(location.search);
const EVERY_S = Math.max(0.2, Number(params.get("every")) || 10);
const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
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
    : `Kafka ${k.bootstrap}: unreachable — ${k.error}`;
}

async function refresh(force) {
  try {
    const r = await fetch("/status" + (force ? "?refresh=1" : ""), { cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    render(await r.json());
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
    const r = await fetch("/lookup/" + encodeURIComponent(uuid), { cache: "no-store" });
    data = await r.json();
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
    data.dead_letters_error || (dead.length ? "" : `no dead letters (${data.dead_letters_scanned ?? 0} scanned)`);
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
    );
    body.append(tr);
  }
}

$("refresh-every").textContent = EVERY_S;
$("refresh-now").addEventListener("click", () => refresh(true));
$("lookup-form").addEventListener("submit", lookup);
refresh(false);
setInterval(() => refresh(false), EVERY_S * 1000);
