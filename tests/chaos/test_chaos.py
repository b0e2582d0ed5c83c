"""Chaos: three workers on a private broker, one SIGKILLed every few seconds and the broker
bounced once, while uploads, confirms and enhance requests arrive in batches; then a drain
and a reconciliation of every UUID against storage, the dead letters and the group's offsets.

Seeded: ``CHAOS_SEED=<n>`` replays the same schedule (which uploads are corrupt, confirmed or
enhanced, batch sizes and times, kill times and victims, the broker outage). What the broker
and the workers do in between is timing and cannot be replayed exactly.

The test runs a broker of its own (it stops and starts it), never the suite's shared one.
Workers run with a 6 s group session (INGEST_KAFKA__SESSION_TIMEOUT_S, the broker's floor),
so a SIGKILLed member's partitions move on while the chaos is still going.

On failure the output names the seed, the records no worker ever logged (and whether the group
committed past them), the worker holding each partition still behind, and each worker log's tail.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid as uuid_mod
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from PIL import Image, ImageDraw

import streams
from streams import codec
from streams import headers as dl
from streams.errors import KafkaUnavailable
from streams.events import ImageRecord, UploadReceived
from streams.kafka import read_to_end
from streams.producer import EventProducer, PublishError
from streams.replay import DeadLetters
from streams.settings import Settings
from streams.storage import LocalStorage, sha256_file
from streams.topics import Job, Topics, ensure_topics, partition_for
from streams.uploads import enhance_request, ingest_request, stage_upload
from tests.conftest import WorkerProcess, _process_factory
from tests.support.broker import Broker, BrokerFailed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

PARTITIONS = 6
WORKERS = 3
DRAIN_S = 150.0
QUIET_S = 20.0  # the drain gives up early once nothing has moved for this long
SESSION_TIMEOUT_S = 6.0
CHAOS_CAP_S = 100.0  # the chaos phase never runs longer, whatever the schedule says
MARK_ENV = "CHAOS_RUN_MARK"  # inherited by the workers' exiftool children: scopes the leak check
NOTABLE = {
    "Stream has not started processing": "Stream has not started processing",
    "Restarting dead": "Restarting dead",
    "priority: paused": "priority: paused",
    "priority: paused nothing": "priority: paused nothing",
    "cannot route": "cannot route failed record",
    "Traceback": "Traceback",
    "[ERROR]": "[ERROR]",
    "outcome=ok": "outcome=ok",
    "outcome=retry": "outcome=retry",
    "outcome=dead_letter": "outcome=dead_letter",
    "duplicate delivery": "duplicate delivery",
}


# -- the workers --------------------------------------------------------------------------------
@dataclass
class Kill:
    at_wall: float
    at_s: float
    worker: WorkerProcess


class WorkerPool:
    """``prophoto-ingest worker -v`` subprocesses (conftest's factory, logs in tmp_path)."""

    def __init__(self, tmp_path: Path) -> None:
        self.mark = uuid_mod.uuid4().hex
        self._start, self.started = _process_factory(tmp_path, "worker", ["worker", "-v"])
        self.live: list[WorkerProcess] = []
        self.kills: list[Kill] = []
        self.self_exits: list[tuple[float, WorkerProcess, int]] = []
        self.sigterm: dict[int, int | str] = {}  # pid -> exit code, or what went wrong
        self.exiftool_owner: dict[int, int] = {}  # exiftool pid -> worker pid (sampled)
        self.settings: Settings | None = None

    def spawn(self) -> WorkerProcess:
        assert self.settings is not None
        w = self._start(self.settings, env={MARK_ENV: self.mark})
        self.live.append(w)
        return w

    def kill(self, w: WorkerProcess, at_s: float) -> None:
        self.sample_children()
        w.proc.send_signal(signal.SIGKILL)
        w.proc.wait(15)
        self.live.remove(w)
        self.kills.append(Kill(time.time(), at_s, w))

    def replace_exited(self, at_s: float) -> None:
        """Workers that exited without being killed (e.g. exit 3 while the broker was away)."""
        for w in [w for w in self.live if w.proc.poll() is not None]:
            self.live.remove(w)
            self.self_exits.append((at_s, w, w.proc.returncode))
        while len(self.live) < WORKERS:
            self.spawn()

    def sample_children(self) -> None:
        for w in self.live:
            try:
                kids = psutil.Process(w.proc.pid).children(recursive=True)
            except psutil.Error:
                continue
            for k in kids:
                try:
                    if "exiftool" in " ".join(k.cmdline()):
                        self.exiftool_owner.setdefault(k.pid, w.proc.pid)
                except psutil.Error:
                    continue

    def stop_all(self, timeout: float = 45) -> None:
        """SIGTERM every live worker at once, then wait; SIGKILL what does not stop."""
        self.sample_children()
        for w in self.live:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for w in self.live:
            try:
                self.sigterm[w.proc.pid] = w.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait(10)
                self.sigterm[w.proc.pid] = f"still running {timeout:g} s after SIGTERM, killed"
        self.live = []

    def marked_exiftools(self) -> list[psutil.Process]:
        out = []
        for p in psutil.process_iter(["cmdline"]):
            try:
                if "exiftool" in " ".join(p.info["cmdline"] or []) and \
                        p.environ().get(MARK_ENV) == self.mark:
                    out.append(p)
            except psutil.Error:
                continue
        return out

    def cleanup(self) -> None:
        for w in self.started:
            if w.proc.poll() is None:
                w.proc.kill()
            w.proc.wait(10)
            shutil.rmtree(Path(tempfile.gettempdir()) / f"prophoto-faust-{w.proc.pid}",
                          ignore_errors=True)
        for p in self.marked_exiftools():  # descendants of our workers only
            with contextlib.suppress(psutil.Error):
                p.kill()


@pytest.fixture
def worker_pool(tmp_path: Path, private_broker: Broker) -> Iterator[WorkerPool]:
    pool = WorkerPool(tmp_path)
    yield pool
    pool.cleanup()  # before the broker fixture stops the broker


# -- uploads ----------------------------------------------------------------------------------------
@dataclass
class Upload:
    event: UploadReceived
    corrupt: bool
    sha256: str
    confirm: bool = False
    enhance: bool = False

    @property
    def uuid(self) -> str:
        return self.event.uuid


def camera_jpeg(rng: random.Random, i: int) -> bytes:
    """A 640x480 (sometimes portrait) JPEG with camera EXIF; every one different."""
    size = (640, 480) if rng.random() < 0.8 else (480, 640)
    im = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))  # type: ignore[arg-type]
    d = ImageDraw.Draw(im)
    for _ in range(rng.randint(6, 18)):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        box = [x, y, x + rng.randint(10, 300), y + rng.randint(10, 300)]
        colour = tuple(rng.randrange(256) for _ in range(3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)(box, fill=colour)  # type: ignore[arg-type]
    for x in range(rng.randrange(97), size[0], 97):
        d.line([(x, 0), (x, size[1])], fill=(0, 0, 0))
    exif = Image.Exif()
    exif[0x010F] = rng.choice(["Canon", "NIKON CORPORATION", "SONY", "FUJIFILM"])  # Make
    exif[0x0110] = f"Model {rng.randint(1, 99)}"  # Model
    exif[0x0132] = f"2024:{rng.randint(1, 12):02d}:{rng.randint(1, 28):02d} 10:{i % 60:02d}:00"
    exif[0x013B] = f"Photographer {i}"  # Artist
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=rng.randint(80, 95), exif=exif)
    return buf.getvalue()


def corrupt_bytes(rng: random.Random, i: int) -> bytes:
    if rng.random() < 0.6:  # a truncated camera file (the imaging reports CorruptImage)
        good = camera_jpeg(rng, i)
        return good[: int(len(good) * rng.uniform(0.3, 0.8))]
    return rng.randbytes(rng.randint(2_000, 60_000))  # not an image at all, named .jpg


def stage_all(st: LocalStorage, src_dir: Path, rng: random.Random) -> list[Upload]:
    n = rng.randint(300, 330)
    corrupt = set(rng.sample(range(n), max(1, round(n * rng.uniform(0.04, 0.06)))))
    out: list[Upload] = []
    src_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        data = corrupt_bytes(rng, i) if i in corrupt else camera_jpeg(rng, i)
        src = src_dir / f"IMG_{i:04d}.jpg"
        src.write_bytes(data)
        out.append(Upload(stage_upload(st, src), i in corrupt, hashlib.sha256(data).hexdigest()))
    good = [u for u in out if not u.corrupt]
    for u in rng.sample(good, round(len(good) / 3)):
        u.confirm = True
    for u in rng.sample(good, round(len(good) / 6)):  # independent: some are confirmed too
        u.enhance = True
    return out


# -- the run ----------------------------------------------------------------------------------------
@dataclass
class Run:
    seed: int
    settings: Settings
    topics: Topics
    st: LocalStorage
    uploads: list[Upload]
    accepted: set[str] = field(default_factory=set)  # upload event delivered
    confirmed: set[str] = field(default_factory=set)  # ingest event delivered
    enhanced: set[str] = field(default_factory=set)  # enhance event delivered
    resent: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    last_lag: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    publish_lock: threading.Lock = field(default_factory=threading.Lock)
    broker_down: threading.Event = field(default_factory=threading.Event)

    def publish(self, job: Job, events: list[UploadReceived]) -> list[UploadReceived]:
        """Publish events of one job; returns those not confirmed (the caller sends them again)."""
        topic = self.topics.job(job)
        built = [e if job is Job.PREVIEW else
                 (ingest_request(e) if job is Job.INGEST else enhance_request(e)) for e in events]
        with self.publish_lock:
            if self.broker_down.is_set():
                return events
            p = EventProducer(self.settings.kafka, timeout_s=15)
            for ev in built:
                p.send(topic, ev.key, codec.encode(ev))
            try:
                p.flush()
                delivered = {e.key for e in built}
            except PublishError as exc:
                delivered = exc.delivered_keys
                self.notes.append(f"publish to {topic} failed for {len(built) - len(delivered)}: {exc}")
        done = {"preview": self.accepted, "ingest": self.confirmed, "enhance": self.enhanced}[job.value]
        left = []
        for e in events:
            if e.key in delivered:
                done.add(e.uuid)
            else:
                self.resent[e.uuid] += 1
                left.append(e)
        return left

    def ready(self, u: Upload) -> bool:
        return self.st.preview_path(u.uuid).is_file() and self.st.thumbnail_path(u.uuid).is_file()


class FollowUps:
    """Confirms and enhance requests, sent once the image's preview exists.

    Order: a web app shows the preview, then the user confirms or asks for an enhanced
    version; so a confirm (which moves the upload to permanent storage) or an enhance is
    published only after that image's preview and thumbnail are stored. The system also
    copes with the other order (``source_for`` falls back to the permanent original, and a
    preview that loses the race with the move is retried), but this test drives the order
    the product produces.
    """

    def __init__(self, run: Run, rng: random.Random) -> None:
        self.run = run
        self.rng = rng
        self.pending = {Job.INGEST: [u for u in run.uploads if u.confirm],
                        Job.ENHANCE: [u for u in run.uploads if u.enhance]}

    def send_ready(self, cap: int | None = None) -> None:
        for job in (Job.INGEST, Job.ENHANCE):
            ready = [u for u in self.pending[job] if u.uuid in self.run.accepted and self.run.ready(u)]
            self.rng.shuffle(ready)
            batch = ready[:cap] if cap else ready
            if not batch:
                continue
            left = {e.uuid for e in self.run.publish(job, [u.event for u in batch])}
            sent = {u.uuid for u in batch} - left
            self.pending[job] = [u for u in self.pending[job] if u.uuid not in sent]

    def left(self) -> int:
        return sum(len(v) for v in self.pending.values())


# -- reconciliation -------------------------------------------------------------------------------
def _is_temp(p: Path) -> bool:
    return p.name.startswith(".") and p.name.endswith(".tmp")  # LocalStorage.atomic_path's names


def _short(uuids: list[str] | set[str], n: int = 12) -> str:
    items = sorted(uuids)
    more = f" ... (+{len(items) - n})" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def group_offsets(run: Run) -> dict[tuple[str, int], tuple[int, int]]:
    """(committed, end) of every job and retry topic partition; committed -1 when none."""
    c = Consumer({**run.settings.kafka.confluent_config(), "group.id": run.settings.kafka.group_id,
                  "enable.auto.commit": False})
    try:
        names = [run.topics.job(j) for j in Job] + [run.topics.retry(j) for j in Job]
        tps = [TopicPartition(n, p) for n in names for p in range(PARTITIONS)]
        out: dict[tuple[str, int], tuple[int, int]] = {}
        for tp in c.committed(tps, timeout=15):
            _, hi = c.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=15,
                                            cached=False)
            committed = tp.offset if tp.offset is not None and tp.offset >= 0 else -1
            out[(tp.topic, tp.partition)] = (committed, hi)
        return out
    finally:
        c.close()


def committed_vs_end(run: Run) -> dict[tuple[str, int], tuple[int, int]]:
    """(committed, end) where the group has not committed up to the end."""
    return {tp: (c, e) for tp, (c, e) in group_offsets(run).items() if max(c, 0) != e}


def reconcile(run: Run, pool: WorkerPool, *, final: bool) -> list[str]:  # noqa: C901
    problems: list[str] = []
    st = run.st
    try:
        entries = DeadLetters(run.settings.kafka, run.topics).entries()
        lag = committed_vs_end(run)
        run.last_lag = lag
    except (KafkaUnavailable, KafkaException) as exc:
        run.last_lag = {("(kafka unavailable)", -1): (-1, -1)}
        return [f"Kafka unavailable for the reconciliation: {exc}"]
    by_job: dict[Job, dict[str, list]] = {j: defaultdict(list) for j in Job}
    for e in entries:
        by_job[e.job][e.uuid].append(e)
    uploads = {u.uuid: u for u in run.uploads}

    # 1. every accepted UUID in exactly one terminal state
    lost, both, many, no_reason, half = [], [], [], [], []
    for uid in run.accepted:
        previewed = st.preview_path(uid).is_file() and st.thumbnail_path(uid).is_file()
        dls = by_job[Job.PREVIEW].get(uid, [])
        if previewed and dls:
            both.append(uid)
        elif not previewed and not dls:
            (half if st.preview_path(uid).is_file() or st.thumbnail_path(uid).is_file() else lost).append(uid)
        elif len(dls) > 1:
            many.append(uid)
        elif dls and not dls[0].headers.get(dl.H_REASON):
            no_reason.append(uid)
    if lost:
        problems.append(f"{len(lost)} accepted UUID(s) with neither preview nor dead letter: {_short(lost)}")
    if half:
        problems.append(f"{len(half)} UUID(s) with only one of preview/thumbnail: {_short(half)}")
    if both:
        problems.append(f"{len(both)} UUID(s) both previewed and dead-lettered: {_short(both)}")
    if many:
        problems.append(f"{len(many)} UUID(s) with more than one unresolved preview dead letter: "
                        f"{_short(many)}")
    if no_reason:
        problems.append(f"{len(no_reason)} dead letter(s) without a {dl.H_REASON} header: "
                        f"{_short(no_reason)}")
    never = [u.uuid for u in run.uploads if u.uuid not in run.accepted]
    if never:
        problems.append(f"{len(never)} upload event(s) never delivered by the harness: {_short(never)}")

    # 2. corrupt files are dead letters; no good file is dead-lettered (on any job)
    corrupt_ok = [u.uuid for u in run.uploads if u.corrupt and u.uuid not in by_job[Job.PREVIEW]]
    if corrupt_ok:
        unseen = len(set(corrupt_ok) & set(lost))
        problems.append(f"{len(corrupt_ok)} corrupt upload(s) not dead-lettered ({unseen} of them in no "
                        f"terminal state, above): {_short(corrupt_ok)}")
    for job in Job:
        bad = {uid: es for uid, es in by_job[job].items() if uid in uploads and not uploads[uid].corrupt}
        if bad:
            why = Counter(f"{es[0].error_class.rsplit('.', 1)[-1]}: {es[0].error_message[:80]}"
                          for es in bad.values())
            problems.append(f"{len(bad)} good file(s) dead-lettered on {job.value}: {_short(set(bad))}; "
                            f"errors: {dict(why.most_common(3))}")
        strangers = set(by_job[job]) - set(uploads)
        if strangers:
            problems.append(f"dead letters on {job.value} for unknown keys: {_short(strangers)}")

    # 3. confirmed: original (byte-identical) and metadata in permanent storage, upload gone
    no_orig, bad_meta, upload_left = [], [], []
    for uid in run.confirmed:
        u = uploads[uid]
        orig = st.original_path(uid, u.event.original_filename)
        if not orig.is_file() or sha256_file(orig) != u.sha256:
            no_orig.append(uid)
        try:
            rec = ImageRecord.model_validate_json(st.metadata_path(uid).read_bytes())
            if rec.sha256 != u.sha256 or rec.uuid != uid:
                bad_meta.append(uid)
        except (OSError, ValueError):
            bad_meta.append(uid)
        if st.resolve(u.event.path).exists():
            upload_left.append(uid)
    if no_orig:
        problems.append(f"{len(no_orig)} confirmed UUID(s) without their original (same sha256) in "
                        f"permanent storage: {_short(no_orig)}")
    if bad_meta:
        problems.append(f"{len(bad_meta)} confirmed UUID(s) without valid metadata.json: {_short(bad_meta)}")
    if upload_left:
        problems.append(f"{len(upload_left)} confirmed UUID(s) whose upload file is still there: "
                        f"{_short(upload_left)}")
    unconfirmed_gone = [u.uuid for u in run.uploads if u.uuid not in run.confirmed
                        and not st.resolve(u.event.path).exists()]
    if unconfirmed_gone:
        problems.append(f"{len(unconfirmed_gone)} unconfirmed upload(s) whose file vanished: "
                        f"{_short(unconfirmed_gone)}")

    # 4. every enhance output exists
    no_enh = [uid for uid in run.enhanced if not st.enhanced_path(uid).is_file()]
    if no_enh:
        problems.append(f"{len(no_enh)} enhance request(s) without output: {_short(no_enh)}")

    # 5. storage holds exactly the expected files: no duplicates, no strays, no temp files
    expected: set[Path] = set()
    for u in run.uploads:
        uid = u.uuid
        expected.add(st.root / "uploads" / uid[0:2] / uid[2:4] / f"{uid}.event.json")
        expected.add(st.resolve(u.event.path))  # a confirmed one still there is reported above
        if not u.corrupt:
            expected |= {st.preview_path(uid), st.thumbnail_path(uid)}
        if uid in run.enhanced:
            expected.add(st.enhanced_path(uid))
        if uid in run.confirmed:
            expected |= {st.original_path(uid, u.event.original_filename), st.metadata_path(uid)}
    files = [p for p in st.root.rglob("*") if p.is_file()]
    stray = [p for p in files if not _is_temp(p) and p not in expected]
    if stray:
        shown = ", ".join(str(p.relative_to(st.root)) for p in stray[:10])
        problems.append(f"{len(stray)} unexpected file(s) in storage (duplicates/strays): {shown}")
    if final:
        # A SIGKILL between a temp write and its rename leaves the temp file; the next write
        # of that output (or the duplicate delivery that finds it stored) sweeps it.
        temps = [p for p in files if _is_temp(p)]
        if temps:
            problems.append(f"{len(temps)} temp file(s) left in storage: "
                            + ", ".join(str(p.relative_to(st.root)) for p in temps[:10]))

    # 6. the group's committed offsets are at the end of every job and retry topic
    if lag:
        shown = ", ".join(f"{t}/{p} committed {c} end {e}" for (t, p), (c, e) in sorted(lag.items())[:12])
        problems.append(f"{len(lag)} partition(s) not fully committed: {shown}")
    return problems


JOB_LINE = re.compile(r"job=(\w+) uuid=(\S+) topic=(\S+) partition=(\d+) offset=(\d+) ")
CONTEXT = re.compile(r"priority: paused|Setting newly assigned|Seek stream|out of range|"
                     r"Stream has not started|Restarting dead|Revoking previously")


def _context(text: str, upto: str | None = None, n: int = 8) -> list[str]:
    """The last ``n`` rebalance/pause lines of a log (before the line containing ``upto``)."""
    lines = text.splitlines()
    if upto is not None:
        idx = next((i for i, line in enumerate(lines) if upto in line), len(lines))
        lines = lines[:idx]
    return ["      " + line[:220] for line in lines if CONTEXT.search(line)][-n:]


def never_processed(run: Run, pool: WorkerPool) -> list[str]:
    """Job-topic records for which no worker ever logged a job line, and what became of them."""
    logged: dict[tuple[str, int], dict[int, int]] = defaultdict(dict)  # tp -> offset -> worker
    texts = [w.output() for w in pool.started]
    for i, text in enumerate(texts):
        for m in JOB_LINE.finditer(text):
            logged[(m[3], int(m[4]))].setdefault(int(m[5]), i)
    offsets = group_offsets(run)
    out: list[str] = []
    shown = 0
    for m in read_to_end(run.settings.kafka, [run.topics.job(j) for j in Job]):
        tp, off = (m.topic(), m.partition()), m.offset()
        if off in logged[tp]:
            continue
        committed, end = offsets[tp]
        state = ("committed past it: SKIPPED" if committed > off
                 else f"not consumed (committed {committed})")
        later = sorted(o for o in logged[tp] if o > off)
        nxt = f"; next offset logged: {later[0]} by worker-{logged[tp][later[0]]}" if later else ""
        out.append(f"  {tp[0]}/{tp[1]}@{off} uuid={(m.key() or b'').decode()} {state}, end {end}{nxt}")
        if later and shown < 3:  # what that worker did on its way to the next offset
            shown += 1
            line = f"topic={tp[0]} partition={tp[1]} offset={later[0]} "
            out += _context(texts[logged[tp][later[0]]], line)
    return out


def lag_owners(run: Run, pool: WorkerPool) -> list[str]:
    """For each partition still behind at the end of the drain: the worker holding it."""
    out: list[str] = []
    final = [w for w in pool.started if w.proc.pid in pool.sigterm]
    for (topic, part), (committed, end) in sorted(run.last_lag.items())[:6]:
        needle = f"TopicPartition(topic='{topic}', partition={part})"
        owners = []
        for w in final:
            assigned = [line for line in w.output().splitlines() if "Setting newly assigned" in line]
            if assigned and needle in assigned[-1]:
                owners.append(w)
        out.append(f"  {topic}/{part} committed {committed} end {end}: held by "
                   + (", ".join(f"pid {w.proc.pid}" for w in owners) or "no final worker"))
        for w in owners[:1]:
            out += _context(w.output(), n=6)
    return out


def notable_lines(pool: WorkerPool) -> str:
    total: Counter[str] = Counter()
    per: list[str] = []
    for i, w in enumerate(pool.started):
        text = w.output()
        counts = {k: text.count(pat) for k, pat in NOTABLE.items()}
        total.update(counts)
        flags = {k: v for k, v in counts.items() if v and not k.startswith("outcome")}
        per.append(f"  worker-{i} pid {w.proc.pid} rc {w.proc.returncode}: ok={counts['outcome=ok']} "
                   f"{flags}")
    return "log line counts over all workers: " + str(dict(total)) + "\n" + "\n".join(per)


def diagnostics(run: Run, pool: WorkerPool, broker: Broker, problems: list[str], timeline: list[str]) -> str:
    out = [f"=== chaos diagnostics, seed {run.seed} (replay with CHAOS_SEED={run.seed}) ===",
           *timeline, notable_lines(pool)]
    if pool.self_exits:
        out.append("workers that exited on their own: " + ", ".join(
            f"pid {w.proc.pid} rc {rc} at {t:.0f}s" for t, w, rc in pool.self_exits))
    out.append("SIGKILLs: " + ", ".join(f"{k.at_s:.0f}s pid {k.worker.proc.pid}" for k in pool.kills))
    out.append(f"SIGTERM at the end (pid: exit code): {pool.sigterm}")
    out.extend(f"note: {n}" for n in run.notes)
    # the log lines naming the first offending UUIDs, with their partition
    uuids = []
    for p in problems:
        uuids += re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", p)
    try:
        gaps = never_processed(run, pool)
        n_gaps = sum(1 for g in gaps if not g.startswith("      "))
        out.append(f"job-topic records never logged by any worker: {n_gaps}" if gaps else
                   "every job-topic record was logged by some worker")
        out += gaps[:40]
    except (KafkaUnavailable, KafkaException) as exc:
        out.append(f"(could not read the job topics: {exc})")
    if run.last_lag:
        out.append("partitions behind at the end of the drain:")
        out += lag_owners(run, pool)
    for uid in list(dict.fromkeys(uuids))[:6]:
        out.append(f"-- {uid} (partition {partition_for(uid.encode(), PARTITIONS)}):")
        for i, w in enumerate(pool.started):
            for line in w.output().splitlines():
                if uid in line:
                    out.append(f"   worker-{i}: {line[:300]}")
    for i, w in enumerate(pool.started):
        killed = any(k.worker is w for k in pool.kills)
        lines = w.output().splitlines()[-(10 if killed else 40):]
        out.append(f"-- tail of worker-{i} (pid {w.proc.pid}, {'SIGKILLed' if killed else 'final'}):")
        out.extend("   " + line[:300] for line in lines)
    out.append("-- broker log tail:\n" + broker.log_tail(15))
    return "\n".join(out)


# -- the test ------------------------------------------------------------------------------------------
def test_chaos_kills_and_broker_restart_lose_nothing(  # noqa: C901
    private_broker: Broker, worker_pool: WorkerPool, tmp_path: Path
) -> None:
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 2**31))
    print(f"chaos seed {seed} (replay with CHAOS_SEED={seed}); streams from {streams.__file__}",
          flush=True)
    rngs = {name: random.Random(f"{seed}-{name}")
            for name in ("images", "schedule", "kills", "victims", "followups", "follow-times")}
    sched = rngs["schedule"]
    t0 = time.monotonic()
    timeline: list[str] = []

    def mark(what: str) -> None:
        timeline.append(f"{time.monotonic() - t0:6.1f}s {what}")
        print(timeline[-1], flush=True)

    settings = Settings(  # type: ignore[call-arg]
        kafka={"bootstrap_servers": private_broker.bootstrap, "topic_prefix": "chaos-",
               "group_id": "chaos-group", "partitions": PARTITIONS,
               "session_timeout_s": SESSION_TIMEOUT_S},
        storage={"root": tmp_path / "storage"},
        clickhouse={"path": tmp_path / "traces.chdb"},
        worker={"backoff_base_s": 0.2, "backoff_max_s": 1.0, "tries": 3, "timeout_s": 60},
    )
    topics = Topics.from_settings(settings.kafka)
    ensure_topics(settings.kafka, topics.specs())
    st = LocalStorage(settings.storage.root)
    st.ensure()
    run = Run(seed, settings, topics, st, stage_all(st, tmp_path / "camera", rngs["images"]))
    follow = FollowUps(run, rngs["followups"])
    n_corrupt = sum(u.corrupt for u in run.uploads)
    mark(f"broker {private_broker.bootstrap}; staged {len(run.uploads)} uploads ({n_corrupt} corrupt), "
         f"{len(follow.pending[Job.INGEST])} to confirm, {len(follow.pending[Job.ENHANCE])} to enhance")

    # the seeded schedule
    chaos_s = sched.uniform(60, 75)
    n_batches = sched.randint(14, 20)
    cuts = sorted(sched.sample(range(1, len(run.uploads)), n_batches - 1))
    times = [1.0, *sorted(sched.uniform(1.0, 0.6 * chaos_s) for _ in range(n_batches - 1))]
    bounds = [0, *cuts, len(run.uploads)]
    batches = deque((times[i], [u.event for u in run.uploads[bounds[i]:bounds[i + 1]]])
                    for i in range(n_batches))
    broker_stop_at = sched.uniform(0.3, 0.5) * chaos_s
    broker_down_s = sched.uniform(3, 6)
    first_kill = sched.uniform(5, 8)
    mark(f"schedule: chaos {chaos_s:.0f}s, {n_batches} upload batches, broker stop at "
         f"{broker_stop_at:.0f}s for {broker_down_s:.1f}s, first kill at {first_kill:.1f}s, "
         f"session timeout {SESSION_TIMEOUT_S:g}s")

    bounce_errors: list[str] = []

    def bounce() -> None:
        try:
            with run.publish_lock:
                run.broker_down.set()
            mark("broker: stopping")
            private_broker.stop()
            mark("broker: stopped")
            time.sleep(broker_down_s)
            for attempt in range(1, 4):
                try:
                    private_broker.start()
                    mark("broker: started again")
                    return
                except BrokerFailed as exc:
                    run.notes.append(f"broker start attempt {attempt} failed: {exc}")
                    time.sleep(2)
            bounce_errors.append("the broker did not start again; see the notes")
        except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
            bounce_errors.append(repr(exc))
        finally:
            run.broker_down.clear()

    # -- chaos ---------------------------------------------------------------------------------
    worker_pool.settings = settings
    for _ in range(WORKERS):
        worker_pool.spawn()
    start = time.monotonic()
    next_kill = start + first_kill
    next_follow = start + 2.0
    resend: list[UploadReceived] = []
    bouncer: threading.Thread | None = None
    kills_after_published = 0
    while True:
        now = time.monotonic()
        el = now - start
        worker_pool.sample_children()
        worker_pool.replace_exited(el)
        if now >= next_kill:
            victim = worker_pool.live[rngs["victims"].randrange(len(worker_pool.live))]
            worker_pool.kill(victim, el)
            worker_pool.spawn()
            next_kill = now + rngs["kills"].uniform(3, 5)
            if not batches:
                kills_after_published += 1
        if bouncer is None and el >= broker_stop_at:
            bouncer = threading.Thread(target=bounce, name="broker-bounce", daemon=True)
            bouncer.start()
        if not run.broker_down.is_set():
            while batches and el >= batches[0][0]:
                resend += run.publish(Job.PREVIEW, batches.popleft()[1])
            if resend:
                resend = run.publish(Job.PREVIEW, resend)
            if now >= next_follow:
                follow.send_ready(cap=rngs["followups"].randint(4, 16))
                next_follow = now + rngs["follow-times"].uniform(1.5, 3.5)
        done_publishing = not batches and not resend
        bounced = bouncer is not None and not bouncer.is_alive()
        if el >= chaos_s and done_publishing and bounced and kills_after_published >= 2:
            break
        if el >= CHAOS_CAP_S:
            run.notes.append(f"chaos phase cut at {CHAOS_CAP_S:g} s (published all: {done_publishing})")
            break
        time.sleep(0.25)
    if bouncer is not None:
        bouncer.join(120)
    mark(f"chaos over: {len(worker_pool.kills)} SIGKILLs, {len(worker_pool.self_exits)} self-exits, "
         f"{len(run.accepted)} uploads, {len(run.confirmed)} confirms, {len(run.enhanced)} enhances "
         f"published so far")
    assert not bounce_errors, f"chaos seed {seed}: broker restart failed: {bounce_errors} {run.notes}"

    # -- drain: 3 workers, no more chaos, until the reconciliation holds -----------------------
    drain_start = time.monotonic()
    problems: list[str] = ["not checked"]
    quiet_since: float | None = None
    while time.monotonic() - drain_start < DRAIN_S:
        el = time.monotonic() - start
        worker_pool.sample_children()
        worker_pool.replace_exited(el)
        if resend:
            resend = run.publish(Job.PREVIEW, resend)
        follow.send_ready()
        previous, problems = problems, reconcile(run, worker_pool, final=False)
        if follow.left() or resend:
            problems.append(f"{follow.left()} confirm/enhance request(s) not sent: their preview is "
                            f"missing; {len(resend)} upload event(s) not delivered")
        if not problems:
            break
        # Nothing left to consume or commit, and the same problems: waiting cannot help.
        if not run.last_lag and problems == previous:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= QUIET_S:
                run.notes.append(f"drain ended early: no lag and no change for {QUIET_S:g} s")
                break
        else:
            quiet_since = None
        time.sleep(2.0)
    drained = not problems
    mark(f"drain {'held' if drained else 'did not hold'} after {time.monotonic() - drain_start:.0f}s: "
         f"{len(run.accepted)} uploads, {len(run.confirmed)} confirms, {len(run.enhanced)} enhances")

    # -- stop the workers, then the final reconciliation -----------------------------------------
    if not drained:
        final_problems = list(problems)  # the state before the workers stop
    drain_lag = dict(run.last_lag)
    worker_pool.stop_all()
    after_stop = reconcile(run, worker_pool, final=True)
    if not drained:
        run.last_lag = drain_lag  # the diagnostics name who held what was behind
    if drained:
        final_problems = after_stop
    else:
        final_problems += [p for p in after_stop if p not in final_problems and "temp file" in p]
    deadline = time.monotonic() + 10  # exiftool notices its closed stdin
    left = worker_pool.marked_exiftools()
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = worker_pool.marked_exiftools()
    if left:
        killed = {k.worker.proc.pid for k in worker_pool.kills}
        desc = []
        for p in left:
            owner = worker_pool.exiftool_owner.get(p.pid)
            how = "SIGKILLed" if owner in killed else ("stopped" if owner else "unknown")
            desc.append(f"pid {p.pid} (worker {owner}, {how})")
        final_problems.append(f"{len(left)} exiftool process(es) outlived their worker: "
                              + ", ".join(desc[:10]))
    mark(f"final reconciliation: {len(final_problems)} problem(s); total {time.monotonic() - t0:.0f}s")
    run.notes.append(f"exiftool children seen under {len(set(worker_pool.exiftool_owner.values()))} "
                     f"of {len(worker_pool.started)} workers: {len(worker_pool.exiftool_owner)}")
    if run.resent:
        run.notes.append(f"harness re-sent {sum(run.resent.values())} event(s) after publish errors: "
                         f"{_short(set(run.resent))}")
    report = diagnostics(run, worker_pool, private_broker, final_problems, timeline)
    if final_problems:
        print(report, flush=True)
    else:
        print("\n".join([*timeline, notable_lines(worker_pool), *(f"note: {n}" for n in run.notes)]),
              flush=True)
    assert not final_problems, (
        f"chaos seed {seed} (CHAOS_SEED={seed}): {len(final_problems)} reconciliation failure(s):\n  - "
        + "\n  - ".join(final_problems)
    )
