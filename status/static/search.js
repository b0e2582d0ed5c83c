// The search page: asks /api/search and lists where each hit is (pending record, dead letter,
// trace row) and how much of each source was read. Text only through textContent.
"use strict";

function when(t) {
  if (t === null || t === undefined || t === "") return "";
  const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
  return isNaN(d) ? String(t) : d.toLocaleString();
}

function sourceLine(name, s) {
  const li = el("li");
  let text;
  if (name === "pending") {
    text = `pending: read ${s.read} of ${s.waiting} waiting records on ${s.partitions} partition(s)` +
      (s.as_of ? `, offsets as of ${when(s.as_of)}` : "");
  } else if (name === "dead_letters") {
    text = s.error ? "dead letters: not searched" : `dead letters: compared ${s.scanned} of ${s.total}`;
  } else {
    text = s.searched ? (s.error ? "traces: " + s.error : `traces: ${s.rows} row(s)`) : "traces: not searched";
  }
  li.append(el("strong", text));
  if (s.note) li.append(el("span", " — " + s.note, "muted"));
  li.dataset.source = name;
  li.dataset.complete = String(s.complete);
  return li;
}

function what(h) {
  if (h.state === "pending") return [h.type, when(h.timestamp)].filter(Boolean).join(", ");
  if (h.state === "dead letter") return `${h.error_class}, ${h.resolution}` + (h.source ? `, from ${h.source}` : "");
  return [h.job, h.method, h.success ? "ok" : (h.failure_reason || "failed"), when(h.timestamp)]
    .filter(Boolean).join(", ");
}

function render(d) {
  $("results").hidden = false;
  $("hit-count").textContent = `${d.hits.length} for ${d.field} “${d.q}”` + (d.cached ? " (cached)" : "");
  $("partial").hidden = !d.partial;
  const ul = $("sources");
  ul.replaceChildren();
  for (const name of ["pending", "dead_letters", "traces"]) ul.append(sourceLine(name, d.sources[name]));
  const body = $("hits").querySelector("tbody");
  body.replaceChildren();
  for (const h of d.hits) {
    const tr = el("tr");
    tr.dataset.state = h.state;
    if (h.uuid) tr.dataset.uuid = h.uuid;
    const where = h.topic === null || h.topic === undefined ? "" : `${h.topic}/${h.partition}@${h.offset}`;
    const link = el("td");
    if (h.link) {
      const a = el("a", "open in failed jobs");
      a.href = h.link;
      link.append(a);
    }
    tr.append(el("td", h.state), el("td", h.uuid, "uuid"), el("td", where), el("td", what(h)), link);
    body.append(tr);
  }
  if (!d.hits.length) {
    const tr = el("tr");
    const td = el("td", "nothing found", "muted");
    td.colSpan = 5;
    tr.append(td);
    body.append(tr);
  }
}

async function run() {
  const q = new URLSearchParams({ field: $("s-field").value, q: $("s-q").value.trim() });
  history.replaceState(null, "", "/search?" + q.toString());
  $("search-error").textContent = "";
  let r;
  try {
    r = await api("/api/search?" + q.toString());
  } catch (err) {
    if (!(err instanceof NeedsToken)) $("search-error").textContent = String(err);
    return;
  }
  if (!r.ok) {
    $("search-error").textContent = r.data.error || `HTTP ${r.status}`;
    return;
  }
  render(r.data);
}

$("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); run(); });
onTokenForm(() => { if ($("s-q").value.trim()) run(); });

const start = new URLSearchParams(location.search);
if (start.get("field")) $("s-field").value = start.get("field");
if (start.get("q")) { $("s-q").value = start.get("q"); run(); }
