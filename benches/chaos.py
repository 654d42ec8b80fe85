#!/usr/bin/env python3
"""Seeded fault injection on a single node: faults in random order and overlap, invariants checked
after every one, figures printed as a table at the end.

The node: `flink-agent run` on a temp config, checkpoints every second to a real S3 server
(`moto_server`) reached through a fault proxy this runner controls, and the repository's
KeyedCounter job (a sequence n = 0, 1, 2, ... keyed by n % 4, a per-key count in keyed state,
every element appended to a file as "key count n"). The runner plays systemd's part for the
agent only: after it kills the agent it starts a new one on the same config (as Restart=always
would); everything else must heal by itself.

Faults (`--kinds` to choose; each drawn from `random.Random(seed)`, so a seed replays the run):
  kill-jm, kill-tm, kill-agent    SIGKILL of the JobManager, the TaskManager, the agent
  hang-jm, hang-tm, hang-agent    SIGSTOP for 2-15 s, then SIGCONT
  s3-outage, s3-slow, s3-drop,    the object store refuses connections / crawls / resets
  s3-5xx, s3-blackhole            connections mid-transfer / answers 503 / swallows every byte
                                  and answers nothing (a silently dead link), for 5-20 s
  disk-full                       Flink's data dir (a small tmpfs of its own) filled for 2-15 s
                                  (needs root: skipped with a line saying so otherwise)
  reload-good, reload-bad         a valid config change, and an invalid one (must be refused
                                  naming the field, the last good config kept)
  jobs-restart                    `jobs stop` (savepoint) then `jobs start`
  store-corrupt                   the newest published checkpoint's data overwritten with other
                                  bytes or deleted behind the agent's back, then node-replaced:
                                  the new node must skip it (restore verification), restore
                                  from the newest intact one, and withdraw the damaged one (no
                                  longer published as it was, not named durable by `status`)
  node-replaced                   agent and Flink killed, the state and data dirs wiped (a new
                                  disk), the agent started again on the same config
A timed fault has another fault injected in its window with probability 0.3 (overlap).

Invariants, after every fault (the run fails, exit 1, on any violation):
  - the job runs again (every task RUNNING, its output moving on) within --recovery-bound s;
  - the newest checkpoint completed when the job runs again is durable within --durable-bound s;
  - a restore is from a checkpoint no older than the newest durable one before the fault, and
    (unless the disk was replaced) no older than the newest one Flink completed before it;
  - the output is continuous: each line's count matches its position in the sequence (state
    and source position restored together), and no n in [0, max] is missing;
  - a completed checkpoint never leaves the node (Flink's dir and the agent's staging) unless
    one at least as new is durable or still on the node (sampled every 250 ms);
  - every Flink JVM on the node is one the agent reports (no orphans); the API answers; the
    agent's RSS and open files stay bounded.
At the end: every published manifest's files exist with their SHA-256, retention holds, and the
S3 secret key shows nowhere: the agent's and Flink's logs, `status`, `config`, the metrics, the
command line and environment of every process on the node.

usage: benches/chaos.py [--seed S] [--faults N] [--duration SECS] [--nodes 1|3] [--kinds a,b]
                        [--agent BIN] [--keep]
       (FLINK_HOME; the agent built with `cargo build --release -p flink-agent` unless --agent)
       --nodes 3 runs the three-node runner, `agent/benches/chaos3.rs` (its faults and
       invariants are described there; root: it builds network namespaces).
"""
import argparse, collections, glob, hashlib, json, os, random, re, select, shutil, signal, socket, statistics
import subprocess, sys, tempfile, threading, time, urllib.error, urllib.parse, urllib.request

from rto import JAVA_HOME, JM_CLASS, Procs, build_job, cmdline, get, pids_with, wait

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY = "flinkagent.testjobs.KeyedCounter"
TM_CLASS = "TaskManagerRunner"
JOB = "counter"
BUCKET = "chaos"
RATE = 20
PORTS = dict(rest=20270, jobmanager_rpc=20271, blob=20272, taskmanager_rpc=20273, taskmanager_data=20274,
             taskmanager_collect=20275, metrics_query=20276)
REST = PORTS["rest"]
INSTANT = ["kill-jm", "kill-tm", "kill-agent", "reload-good", "reload-bad", "jobs-restart", "node-replaced",
           "store-corrupt"]
TIMED = ["hang-jm", "hang-tm", "hang-agent", "s3-outage", "s3-slow", "s3-drop", "s3-5xx", "s3-blackhole",
         "disk-full"]
# What may land inside another fault's window (a disk swap inside a window proves nothing more).
OVERLAP = ["kill-jm", "kill-tm", "kill-agent", "reload-good", "reload-bad", "jobs-restart"]
PROXY_MODES = {"s3-outage": "down", "s3-slow": "slow", "s3-drop": "drop", "s3-5xx": "5xx",
               "s3-blackhole": "blackhole"}
RSS_BOUND_MIB = 96
FDS_BOUND = 256


# ---------------------------------------------------------------- the object store and its proxy

class FaultProxy:
    """A TCP proxy in front of the S3 server whose mode the runner flips: `pass`, `down` (every
    connection reset at once), `slow` (each chunk held 300 ms), `drop` (connections reset at a
    random point mid-transfer), `5xx` (every request answered 503 SlowDown), `blackhole` (bytes
    swallowed, nothing answered, nothing closed: a link that silently died).

    One thread per connection serves both directions with `select`, so a reset (SO_LINGER 0,
    close) really sends RST: a socket another thread is blocked on would not be released."""

    def __init__(self, upstream, rng):
        self.upstream, self.rng, self.mode = upstream, rng, "pass"
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def set_mode(self, mode):
        self.mode = mode

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        mode = self.mode
        if mode == "down":
            return _reset(client)
        if mode == "5xx":
            return _answer_503(client)
        try:
            server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
        except OSError:
            return _reset(client)
        peer = {client: server, server: client}
        try:
            while self.mode not in ("down", "5xx"):
                ready, _, _ = select.select([client, server], [], [], 0.2)
                for src in ready:
                    data = src.recv(65536)
                    if not data or (self.mode == "drop" and self.rng.random() < 0.3):
                        raise ConnectionResetError
                    if self.mode == "blackhole":
                        continue
                    if self.mode == "slow":
                        time.sleep(0.3)
                    peer[src].sendall(data)
        except OSError:
            pass
        _reset(client)
        _reset(server)


def _reset(sock):
    """Closes with RST, as a dropped link or a crashed server does."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    except OSError:
        pass


def _answer_503(client):
    try:
        client.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = client.recv(4096)
            if not chunk:
                break
            head += chunk
        body = b"<Error><Code>SlowDown</Code><Message>chaos</Message></Error>"
        client.sendall(b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    except OSError:
        pass
    _reset(client)


def s3(port, method, path, data=None):
    # moto (auth off) answers anonymous reads of the agent's objects 403: any signature passes.
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=data, headers={
        "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, "
                         "SignedHeaders=host, Signature=0"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def s3_keys(port):
    """Every key in the bucket with its size, straight from the server (not through the proxy)."""
    keys, token = {}, None
    while True:
        q = f"/{BUCKET}?list-type=2&max-keys=1000" + (f"&continuation-token={urllib.parse.quote(token)}"
                                                        if token else "")
        xml = s3(port, "GET", q).decode()
        for m in re.finditer(r"<Key>([^<]+)</Key>.*?<Size>(\d+)</Size>", xml, re.S):
            keys[m.group(1)] = int(m.group(2))
        t = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", xml)
        if not t:
            return keys
        token = t.group(1)


def savepoint_id(metadata):
    """The checkpoint id in a `_metadata` header (magic 0x4960672d, version, id; big-endian),
    or None while the file is being written."""
    try:
        with open(metadata, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    if len(head) < 16 or int.from_bytes(head[:4], "big") != 0x4960672D:
        return None
    return int.from_bytes(head[8:16], "big")


def published_problems(port, manifest_key):
    """The files of a published checkpoint that are missing or do not match its manifest
    (HTTPError 404 when the manifest itself is gone)."""
    base = manifest_key[: -len("manifest.json")] + "data/"
    manifest = json.loads(s3(port, "GET", f"/{BUCKET}/{manifest_key}"))
    problems = []
    for f in manifest["files"]:
        try:
            body = s3(port, "GET", f"/{BUCKET}/{urllib.parse.quote(base + f['path'])}")
        except urllib.error.HTTPError as e:
            if e.code != 404:
                raise
            problems.append(f"published {manifest_key}: {f['path']} is missing")
            continue
        if len(body) != f["size"] or hashlib.sha256(body).hexdigest() != f["sha256"]:
            problems.append(f"published {manifest_key}: {f['path']} does not match its manifest")
    return problems


def durable_ids(keys):
    pattern = re.compile(r"/jobs/" + JOB + r"/chk-(\d+)/manifest\.json$")
    return {int(m.group(1)) for m in map(pattern.search, keys) if m}


# ---------------------------------------------------------------- the node

class Node:
    def __init__(self, base, args, procs, proxy):
        self.d, self.args, self.procs, self.proxy = base, args, procs, proxy
        self.flink_home = os.environ["FLINK_HOME"]
        self.data = os.path.join(base, "flink-data")
        self.state = os.path.join(base, "state")
        self.output = os.path.join(base, "counts.txt")
        self.config = os.path.join(base, "agent.toml")
        self.tmpfs = False
        # Distinctive, so the sweep at the end finds any copy (moto, auth off, takes any key).
        self.secret = "chaos-" + os.urandom(12).hex()
        self.agent = None
        self.restarts_by_runner = 0

    def write_config(self, rescan=1, retain=3):
        """Writes the agent's config atomically (the agent may read it at any moment)."""
        creds = os.path.join(self.d, "s3-credentials.toml")
        with open(creds, "w") as f:
            f.write(f'aws_access_key_id = "testing"\naws_secret_access_key = "{self.secret}"\n')
        os.chmod(creds, 0o600)
        ports = "\n".join(f"{k} = {v}" for k, v in PORTS.items())
        text = f"""[agent]
state_dir = "{self.state}"
socket = "{self.d}/agent.sock"
[node]
id = "chaos"
address = "127.0.0.1"
bind_address = "127.0.0.1"
[cluster]
id = "chaos"
nodes = ["127.0.0.1"]
[flink]
home = "{self.flink_home}"
java_home = "{JAVA_HOME}"
data_dir = "{self.data}"
log_dir = "{self.d}/flink-log"
[advanced]
checkpoint_interval_ms = 1000
# Faults come faster than a production budget allows; the budget is not what this measures.
[advanced.restart_strategy]
type = "failure-rate"
max_failures_per_interval = 1000
failure_rate_interval_secs = 60
delay_secs = 1
[object_store]
url = "s3://{BUCKET}/flink"
region = "us-east-1"
endpoint = "http://127.0.0.1:{self.proxy.port}"
allow_http = true
credentials_file = "{creds}"
[checkpoints]
retain = {retain}
rescan_interval_secs = {rescan}
[firewall]
enabled = false
[supervisor]
max_restarts = 1000
restart_window_secs = 60
[ports]
{ports}
"""
        tmp = self.config + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, self.config)

    def cli(self, *args, timeout=60):
        out = subprocess.run([self.args.agent, args[0], "--socket", os.path.join(self.d, "agent.sock"),
                              "--timeout", str(timeout), *args[1:]], capture_output=True, text=True,
                             timeout=timeout + 10)
        return out.returncode, out.stdout + out.stderr

    def status(self, timeout=5):
        rc, out = self.cli("status", "--json", timeout=timeout)
        try:
            return json.loads(out) if rc == 0 else None
        except ValueError:
            return None

    def start_agent(self):
        self.agent = self.procs.start([self.args.agent, "run", "--config", self.config],
                                      os.path.join(self.d, "agent.log"), env=dict(os.environ, FLINK_AGENT_LOG="debug"))

    def flink_pids(self):
        """Flink JVMs of this node (class-data dumps, which the agent runs and reaps, aside)."""
        return [p for p in pids_with(self.d) if b"-Xshare:dump" not in b" ".join(cmdline(p))
                and any(c.endswith(b"java") for c in cmdline(p)[:1])]

    def jvm(self, kind):
        """The JobManager's or TaskManager's JVM, found on the node (the API may be the thing
        that is down)."""
        main_class = JM_CLASS if kind == "jobmanager" else TM_CLASS
        return next((p for p in self.flink_pids() if main_class.encode() in b" ".join(cmdline(p))), None)


# ---------------------------------------------------------------- what the runner watches

class Watcher:
    """Samples, every 250 ms, the completed checkpoints on the node (Flink's `chk-N/_metadata`
    and the agent's staged copies) and the durable ones (manifests on the server); records any
    checkpoint that left the node while nothing at least as new was durable or still on it."""

    def __init__(self, node, moto_port):
        self.node, self.moto = node, moto_port
        self.local, self.durable = set(), set()
        self.newest_completed = 0
        # Bumped when the disk is replaced: a sample taken before that is of the old disk.
        self.generation = 0
        self.violations = []
        self.paused = threading.Event()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True).start()

    def local_ids(self):
        ids = set()
        for p in glob.glob(os.path.join(self.node.data, "checkpoints", "*", "chk-*", "_metadata")):
            ids.add(int(p.split("chk-")[-1].split("/")[0]))
        for p in glob.glob(os.path.join(self.node.state, "**", "chk-*", "staged.json"), recursive=True):
            ids.add(int(p.split("chk-")[-1].split("/")[0]))
        # `jobs stop`'s savepoints: their id continues the checkpoints' and is only in the file.
        for p in glob.glob(os.path.join(self.node.data, "savepoints", "savepoint-*", "_metadata")):
            sid = savepoint_id(p)
            if sid is not None:
                ids.add(sid)
        return ids

    def _run(self):
        while not self.stop.is_set():
            if not self.paused.is_set():
                try:
                    with self.lock:
                        generation = self.generation
                    local = self.local_ids()
                    durable = durable_ids(s3_keys(self.moto))
                    with self.lock:
                        if generation != self.generation:
                            # Sampled across a disk replacement (slow under load: fault 73 of
                            # seed 20261129 was such a sample, stored after the replacement).
                            continue
                        # Skipping a superseded checkpoint is fine while a newer one is still on
                        # the node; losing the newest before it is durable is not.
                        newest_kept = max(local | durable, default=0)
                        for gone in self.local - local:
                            if gone > newest_kept and not self.paused.is_set():
                                self.violations.append(f"checkpoint {gone} left the node while nothing as new was "
                                                       f"durable or on the node (newest durable "
                                                       f"{max(durable, default=0)})")
                        self.local, self.durable = local, durable
                        self.newest_completed = max([self.newest_completed, *local])
                except (OSError, ValueError):
                    pass
            time.sleep(0.25)

    def snapshot(self):
        """(newest completed on the node, newest durable)."""
        with self.lock:
            return self.newest_completed, max(self.durable, default=0)

    def forget_node(self):
        """The disk was replaced: what was on it is gone on purpose."""
        with self.lock:
            self.local, self.newest_completed = set(), 0
            self.generation += 1


def read_output(path):
    """(max n, missing n count, lines whose count does not match their n, torn lines, rewinds)."""
    seen, mismatched, torn, rewinds, last = set(), [], 0, 0, -1
    try:
        with open(path, errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) != 3 or not line.endswith("\n") or not all(x.isdigit() for x in parts):
                    torn += 1
                    continue
                key, count, n = map(int, parts)
                if key != n % 4 or count != n // 4 + 1:
                    mismatched.append(line.strip())
                if n < last:
                    rewinds += 1
                last = n
                seen.add(n)
    except FileNotFoundError:
        pass
    top = max(seen, default=-1)
    return top, top + 1 - len(seen), mismatched, torn, rewinds


def restored_checkpoint(since_ms):
    """(Flink job id, checkpoint id) the running job was restored from after `since_ms`, or None."""
    for j in (get(REST, "/jobs") or {}).get("jobs", []):
        if j["status"] != "RUNNING":
            continue
        r = ((get(REST, f"/jobs/{j['id']}/checkpoints") or {}).get("latest") or {}).get("restored")
        if r and r.get("restore_timestamp", 0) >= since_ms:
            return j["id"], r["id"]
    return None


def running_everywhere():
    """The declared job's Flink job, when it and every task of it is RUNNING."""
    for j in (get(REST, "/jobs") or {}).get("jobs", []):
        if j["status"] != "RUNNING":
            continue
        detail = get(REST, f"/jobs/{j['id']}")
        if detail and detail.get("vertices") and all(v.get("status") == "RUNNING" for v in detail["vertices"]):
            return j["id"]
    return None


# ---------------------------------------------------------------- faults

class Chaos:
    def __init__(self, node, watcher, rng, args):
        self.node, self.proxy, self.watcher, self.rng, self.args = node, node.proxy, watcher, rng, args
        self.figures = collections.defaultdict(lambda: dict(injected=0, recovered=0, times=[], restores=0))
        self.violations = []
        self.totals = collections.Counter()
        self.max_rss = self.max_fds = 0
        self.reload_flip = False
        self.agent_hung = False
        self.pending_start = False
        # Faults injected inside the current one's window: they recover when it does.
        self.overlapped = []
        # store-corrupt: the checkpoint it damaged, and the newest intact one left.
        self.damaged = None

    # -- one fault
    def inject(self, kind, window):
        n = self.node
        if kind in ("kill-jm", "kill-tm"):
            pid = n.jvm("jobmanager" if kind == "kill-jm" else "taskmanager")
            if pid:
                os.kill(pid, signal.SIGKILL)
        elif kind == "kill-agent":
            os.kill(n.agent.pid, signal.SIGKILL)
            n.agent.wait()
            time.sleep(0.5)
            n.start_agent()
            n.restarts_by_runner += 1
        elif kind == "reload-good":
            self.reload_flip = not self.reload_flip
            n.write_config(rescan=2 if self.reload_flip else 1)
            rc, out = n.cli("reload", timeout=30)
            if rc != 0 and not self.agent_hung:
                self.violate(f"reload-good: a valid reload was refused (exit {rc}): {out.strip()[:300]}")
        elif kind == "reload-bad":
            n.write_config(rescan=2 if self.reload_flip else 1, retain=-1)
            rc, out = n.cli("reload", timeout=30)
            n.write_config(rescan=2 if self.reload_flip else 1)
            self.totals["bad reloads"] += 1
            if rc == 0:
                self.violate(f"reload-bad: an invalid config was accepted: {out.strip()[:300]}")
            elif "checkpoints.retain" in out:
                self.totals["bad reloads refused naming the field"] += 1
            elif not self.agent_hung:
                self.violate(f"reload-bad: the refusal does not name checkpoints.retain: {out.strip()[:300]}")
        elif kind == "jobs-restart":
            rc, out = n.cli("jobs", "stop", JOB, timeout=120)
            rc2, out2 = n.cli("jobs", "start", JOB, timeout=120)
            if rc == 0 and rc2 != 0 and self.proxy.mode != "pass" and "stays stopped" in out2:
                # The agent refuses to start a job the store still records as stopped, and says
                # so: the operator (this runner) starts it again once the store is back.
                self.totals["starts refused during a store fault, retried after it"] += 1
                self.pending_start = True
            elif (rc != 0 or rc2 != 0) and not self.agent_hung:
                self.violate(f"jobs-restart: stop exit {rc} ({out.strip()[:200]}), "
                             f"start exit {rc2} ({out2.strip()[:200]})")
        elif kind == "store-corrupt":
            self.damaged = self.damage_newest()
            self.inject("node-replaced", 0)
        elif kind == "node-replaced":
            self.watcher.paused.set()
            os.kill(n.agent.pid, signal.SIGKILL)
            n.agent.wait()
            for pid in n.flink_pids():
                os.kill(pid, signal.SIGKILL)
            wait("the node's JVMs gone", 30, lambda: not n.flink_pids())
            shutil.rmtree(n.state, ignore_errors=True)
            for e in os.listdir(n.data) if os.path.isdir(n.data) else []:
                p = os.path.join(n.data, e)
                shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
            self.watcher.forget_node()
            self.watcher.paused.clear()
            n.start_agent()
            n.restarts_by_runner += 1
        elif kind in ("hang-jm", "hang-tm", "hang-agent"):
            pid = n.agent.pid if kind == "hang-agent" else n.jvm("jobmanager" if kind == "hang-jm" else "taskmanager")
            if pid:
                os.kill(pid, signal.SIGSTOP)
            self.agent_hung = kind == "hang-agent"
            self.during(window, kind)
            self.agent_hung = False
            if pid:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        elif kind in PROXY_MODES:
            self.proxy.set_mode(PROXY_MODES[kind])
            self.during(window, kind)
            self.proxy.set_mode("pass")
            if self.pending_start:
                self.pending_start = False
                deadline = time.monotonic() + 60
                while n.cli("jobs", "start", JOB, timeout=60)[0] != 0:
                    if time.monotonic() > deadline:
                        self.violate(f"jobs start refused 60 s after the {kind} ended")
                        break
                    time.sleep(1)
        elif kind == "disk-full":
            filler = os.path.join(n.data, "chaos-filler")
            st = os.statvfs(n.data)
            with open(filler, "wb") as f:
                try:
                    os.posix_fallocate(f.fileno(), 0, st.f_bavail * st.f_frsize)
                except OSError:
                    pass
            self.during(window, kind)
            os.remove(filler)

    def damage_newest(self):
        """Overwrites (same size, other bytes) or deletes a data file of the newest published
        checkpoint, straight on the server; returns (its id, the newest intact one, what)."""
        moto = self.watcher.moto
        keys = s3_keys(moto)
        ids = sorted(durable_ids(keys))
        newest = ids[-1]
        files = sorted(k for k in keys if f"/jobs/{JOB}/chk-{newest}/data/" in k)
        victim = self.rng.choice(files)
        path = f"/{BUCKET}/{urllib.parse.quote(victim)}"
        if self.rng.random() < 0.5:
            s3(moto, "PUT", path, bytes(b ^ 0x5A for b in s3(moto, "GET", path)))
            what = "overwritten"
        else:
            s3(moto, "DELETE", path)
            what = "deleted"
        print(f"    chk-{newest}: {victim.rsplit('/data/', 1)[-1]} {what}", flush=True)
        return newest, max(ids[:-1], default=0), what

    def during(self, window, kind):
        """Waits out a timed fault's window, injecting a second fault in it now and then."""
        t_end = time.monotonic() + window
        if self.rng.random() < 0.3:
            choices = [k for k in OVERLAP if k in self.args.kinds
                       and not (kind == "hang-agent" and k in ("kill-agent", "reload-good", "reload-bad",
                                                               "jobs-restart"))
                       and not (kind in ("hang-jm", "hang-tm") and k == "jobs-restart")]
            if choices:
                time.sleep(self.rng.uniform(0, window / 2))
                second = self.rng.choice(choices)
                print(f"    overlap: {second} inside {kind}", flush=True)
                self.figures[second]["injected"] += 1
                self.figures[second]["overlapped"] = self.figures[second].get("overlapped", 0) + 1
                self.inject(second, 0)
                self.overlapped.append(second)
        time.sleep(max(0.0, t_end - time.monotonic()))

    # -- after each fault
    def violate(self, what):
        print(f"    VIOLATION: {what}", flush=True)
        self.violations.append(what)

    def recover(self, kind, injected_ms, completed_before, durable_before, top_before, t0):
        """Waits for the job to run and its output to move on; checks what it was restored from."""
        deadline = time.monotonic() + self.args.recovery_bound
        while time.monotonic() < deadline:
            if running_everywhere() and read_output(self.node.output)[0] > top_before + RATE:
                break
            time.sleep(0.25)
        else:
            self.violate(f"{kind}: the job did not run again within {self.args.recovery_bound:.0f} s")
            return None
        took = time.monotonic() - t0
        if kind == "store-corrupt":
            # At once: retention would retire an unwithdrawn damaged checkpoint a few
            # checkpoints later, hiding it.
            self.check_withdrawn(self.damaged[0])
        self.catch_up(kind, t0)
        # Flink's REST caches checkpoint statistics for 3 s: ask about the restore after that.
        time.sleep(3.5)
        restored = restored_checkpoint(injected_ms)
        if kind == "store-corrupt":
            damaged, intact, what = self.damaged
            # What the new node could restore: the newest checkpoint the runner left intact.
            durable_before = intact
            if restored and restored[1] == damaged:
                self.violate(f"store-corrupt: restored from checkpoint {damaged}, whose data was {what}")
            elif restored:
                self.totals["damaged checkpoints skipped by the restore"] += 1
        if restored:
            self.figures[kind]["restores"] += 1
            cp = restored[1]
            if cp < durable_before:
                self.totals["durable checkpoints lost"] += durable_before - cp
                self.violate(f"{kind}: restored from {cp}, older than the newest durable {durable_before}")
            if kind not in ("node-replaced", "store-corrupt") and cp < completed_before:
                self.totals["completed checkpoints lost"] += completed_before - cp
                self.violate(f"{kind}: restored from {cp}, older than the newest completed {completed_before}")
        return took

    def check_withdrawn(self, damaged):
        """Once the job runs again on the new disk (its restore met the damaged checkpoint): the
        store no longer publishes it as it was (withdrawn, or published again whole by the
        restored job, whose checkpoint ids go on from the one it restored), and `status` names it
        as the newest durable one only then."""
        port = self.watcher.moto
        st = ((self.node.status() or {}).get("checkpoints") or {}).get("jobs", {}).get(JOB, {})
        keys = [k for k in s3_keys(port) if k.endswith(f"/jobs/{JOB}/chk-{damaged}/manifest.json")]
        try:
            problems = published_problems(port, keys[0]) if keys else None
        except urllib.error.HTTPError as e:
            if e.code != 404:
                raise
            problems = None  # withdrawn, or retired by retention, meanwhile
        if problems:
            self.violate(f"store-corrupt: damaged checkpoint {damaged} still published: {problems[0]}")
        elif problems is None and st.get("last_durable") == damaged:
            self.violate(f"store-corrupt: status names the withdrawn checkpoint {damaged} as the newest durable")
        else:
            self.totals["damaged checkpoints withdrawn or replaced whole"] += 1

    def catch_up(self, kind, t0):
        """Times how long after the fault's end the newest checkpoint completed once the job runs
        again became durable (bounded from the moment it runs again)."""
        target = self.watcher.snapshot()[0] if kind not in ("node-replaced", "store-corrupt") else 1
        deadline = time.monotonic() + self.args.durable_bound
        while self.watcher.snapshot()[1] < target:
            if time.monotonic() > deadline:
                self.violate(f"{kind}: checkpoint {target} (completed when the job ran again) not durable "
                             f"{self.args.durable_bound:.0f} s later (durable: {self.watcher.snapshot()[1]})")
                return
            time.sleep(0.1)
        self.figures[kind].setdefault("durable", []).append(time.monotonic() - t0)

    def check_node(self, kind):
        n = self.node
        top, missing, mismatched, torn, rewinds = read_output(n.output)
        self.totals["output gaps"] = missing
        self.totals["torn lines"], self.totals["replays"] = torn, rewinds
        if missing:
            self.violate(f"{kind}: {missing} values of n in [0, {top}] never reached the output")
        if mismatched:
            self.violate(f"{kind}: counts that do not match their position: {mismatched[:3]}")
        # No orphans: every JVM of the node is one the agent supervises (a launch settles first).
        orphans, answered = [], False
        for _ in range(40):
            st = n.status()
            if st is None:
                time.sleep(0.5)
                continue
            answered = True
            known = {p.get("pid") for p in st.get("processes", [])}
            orphans = [p for p in n.flink_pids() if p not in known]
            if not orphans:
                break
            time.sleep(0.5)
        if not answered:
            self.totals["API failures"] += 1
            self.violate(f"{kind}: the API did not answer for 20 s")
        if orphans:
            self.totals["orphan processes"] += len(orphans)
            self.violate(f"{kind}: JVMs the agent does not report: {orphans}")
        for v in self.watcher.violations:
            self.totals["left the node before durable"] += 1
            self.violate(v)
        self.watcher.violations.clear()
        try:
            with open(f"/proc/{n.agent.pid}/status") as f:
                rss = int(next(line for line in f if line.startswith("VmRSS")).split()[1]) // 1024
            fds = len(os.listdir(f"/proc/{n.agent.pid}/fd"))
        except (OSError, StopIteration):
            rss = fds = 0
        self.max_rss, self.max_fds = max(self.max_rss, rss), max(self.max_fds, fds)
        if rss > RSS_BOUND_MIB or fds > FDS_BOUND:
            self.violate(f"{kind}: the agent holds {rss} MiB and {fds} files (bounds {RSS_BOUND_MIB}, {FDS_BOUND})")

    def step(self, i, kind):
        window = (self.rng.uniform(5, 20) if kind in PROXY_MODES else
                  self.rng.uniform(2, 15) if kind in TIMED else 0)
        # Faults land on a working node: something durable to lose.
        wait("a durable checkpoint", 120, lambda: self.watcher.snapshot()[1] > 0)
        completed_before, durable_before = self.watcher.snapshot()
        top_before = read_output(self.node.output)[0]
        print(f"[{i}] {kind}" + (f" for {window:.1f} s" if window else "")
              + f" (newest completed {completed_before}, durable {durable_before}, output n {top_before})", flush=True)
        self.figures[kind]["injected"] += 1
        injected_ms = int(time.time() * 1000)
        self.inject(kind, window)
        t0 = time.monotonic()
        took = self.recover(kind, injected_ms, completed_before, durable_before, top_before, t0)
        self.check_node(kind)
        if took is None:
            return False
        for k in [kind, *self.overlapped]:
            self.figures[k]["recovered"] += 1
        self.overlapped.clear()
        self.figures[kind]["times"].append(took)
        print(f"    running again {took:.1f} s after the fault ended", flush=True)
        return True

    # -- at the end
    def check_store(self, moto_port, retain):
        """Every published checkpoint re-read file by file. The job still runs, so retention may
        retire an older checkpoint between the listing and the reads (manifest first, then its
        files): such a one is counted, not failed. The newest is never retired, and a file missing
        while its manifest is still listed is a published checkpoint that is not whole."""
        def listed():
            return sorted(k for k in s3_keys(moto_port)
                          if k.endswith("/manifest.json") and f"/jobs/{JOB}/chk-" in k)

        manifests = listed()
        newest = max(manifests, key=lambda k: int(k.split("/chk-")[-1].split("/")[0]), default=None)
        verified = retired = 0
        for m in manifests:
            try:
                problems = published_problems(moto_port, m)
            except urllib.error.HTTPError as e:
                if e.code != 404:
                    raise
                problems = [f"published {m}: its manifest is missing"]
            if problems and m != newest and m not in listed():
                retired += 1
                continue
            for problem in problems:
                self.violate(problem)
            verified += 1
        self.totals["published checkpoints verified"] = verified
        self.totals["published checkpoints retired by retention while being verified"] = retired
        # Between a publish and its retention pass there is one more than `retain`, and with a
        # checkpoint a second (and the store slow under load) two listings 5 s apart can both
        # fall into such a window: what retention failed is a checkpoint it should have deleted
        # that is still published in every listing over 5 s.
        def expired():
            ids = sorted((int(k.split("/chk-")[-1].split("/")[0]) for k in listed()), reverse=True)
            return set(ids[retain:])
        stuck = expired()
        for _ in range(10):
            if not stuck:
                break
            time.sleep(0.5)
            stuck &= expired()
        if stuck:
            self.violate(f"retention: checkpoints {sorted(stuck)} still published 5 s after "
                         f"{retain} newer ones were")

    def check_secrets(self):
        """The S3 secret appears nowhere the agent writes or shows: its log, Flink's logs,
        `status`, `config`, its metrics, the command line and environment of every process."""
        n, found = self.node, []
        texts = {"status --json": n.cli("status", "--json")[1], "config": n.cli("config")[1]}
        st = n.status() or {}
        if st.get("metrics_listen"):
            try:
                url = st["metrics_listen"]
                url = url if url.startswith("http") else f"http://{url}/metrics"
                with urllib.request.urlopen(url, timeout=5) as r:
                    texts["metrics"] = r.read().decode(errors="replace")
            except OSError as e:
                self.violate(f"secrets: the metrics endpoint did not answer: {e}")
        for path in [os.path.join(n.d, "agent.log"), *glob.glob(os.path.join(n.d, "flink-log", "*"))]:
            with open(path, errors="replace") as f:
                texts[path] = f.read()
        for pid in [n.agent.pid, *n.flink_pids()]:
            for part in ("cmdline", "environ"):
                try:
                    with open(f"/proc/{pid}/{part}", "rb") as f:
                        texts[f"/proc/{pid}/{part}"] = f.read().decode(errors="replace")
                except OSError:
                    pass
        with open(os.path.join(n.d, "s3-credentials.toml")) as f:
            if n.secret not in f.read():  # the control: the search finds it where it belongs
                self.violate("secrets: the sweep does not find the secret in its own file")
        found = [where for where, text in texts.items() if n.secret in text]
        self.totals["places searched for the secret"] = len(texts)
        self.totals["places the secret was found"] = len(found)
        if found:
            self.violate(f"secrets: the S3 secret key shows in {found}")

    def table(self):
        print("\n| fault | injected | recovered | overlapped | restores | running again: mean s | max s "
              "| durable again: max s |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for kind in INSTANT + TIMED:
            f = self.figures.get(kind)
            if not f:
                continue
            t = f["times"]
            print(f"| {kind} | {f['injected']} | {f['recovered']} | {f.get('overlapped', 0)} | {f['restores']} | "
                  + (f"{statistics.mean(t):.1f} | {max(t):.1f} | " if t else "- | - | ")
                  + (f"{max(f['durable']):.1f} |" if f.get("durable") else "- |"))
        print()
        for k in ["completed checkpoints lost", "durable checkpoints lost", "output gaps", "orphan processes",
                  "left the node before durable", "API failures", "bad reloads",
                  "bad reloads refused naming the field", "starts refused during a store fault, retried after it",
                  "damaged checkpoints skipped by the restore",
                  "damaged checkpoints withdrawn or replaced whole", "published checkpoints verified",
                  "published checkpoints retired by retention while being verified",
                  "places searched for the secret", "places the secret was found", "replays", "torn lines"]:
            print(f"{k}: {self.totals[k]}")
        needed = (self.node.restarts_by_runner - self.figures["kill-agent"]["injected"]
                  - self.figures["node-replaced"]["injected"] - self.figures["store-corrupt"]["injected"])
        print(f"agent restarts needed: {needed} (the runner restarted it {self.node.restarts_by_runner} times, "
              "each after killing it)")
        print(f"agent max RSS {self.max_rss} MiB, max open files {self.max_fds}")


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--faults", type=int, default=20)
    ap.add_argument("--duration", type=float, default=None, help="stop injecting after this many seconds")
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--kinds", default=",".join(INSTANT + TIMED))
    ap.add_argument("--recovery-bound", type=float, default=180)
    ap.add_argument("--durable-bound", type=float, default=30)
    ap.add_argument("--agent", default=os.path.join(ROOT, "target/release/flink-agent"))
    ap.add_argument("--keep", action="store_true")
    args, rest = ap.parse_known_args()
    if args.nodes == 3:
        # The three-node runner needs the namespaces and the cluster harness of the Rust tests.
        forward = ["--faults", str(args.faults), "--recovery-bound", str(int(args.recovery_bound)),
                   "--durable-bound", str(int(args.durable_bound))]
        forward += ["--seed", str(args.seed)] if args.seed is not None else []
        forward += ["--duration", str(int(args.duration))] if args.duration else []
        forward += ["--kinds", args.kinds] if args.kinds != ap.get_default("kinds") else []
        os.execvp("cargo", ["cargo", "bench", "-q", "-p", "flink-agent", "--bench", "chaos3", "--"] + forward + rest)
    if args.nodes != 1 or rest:
        sys.exit(f"--nodes: 1 or 3; unknown arguments: {rest}" if rest else "--nodes: 1 or 3")
    args.kinds = args.kinds.split(",")
    unknown = set(args.kinds) - set(INSTANT + TIMED)
    if unknown:
        sys.exit(f"--kinds: unknown {sorted(unknown)}; known: {','.join(INSTANT + TIMED)}")
    if "disk-full" in args.kinds and os.geteuid() != 0:
        print("disk-full: skipped (mounting a small filesystem for Flink's data dir needs root)", flush=True)
        args.kinds.remove("disk-full")
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    print(f"seed {seed} (replay: --seed {seed} --faults {args.faults} --kinds {','.join(args.kinds)})", flush=True)
    rng = random.Random(seed)

    base = tempfile.mkdtemp(prefix="fa-chaos-")
    procs = Procs()
    node = chaos = None
    try:
        moto_server = subprocess.run(["bash", os.path.join(ROOT, "tests/setup/moto.sh")], check=True,
                                     capture_output=True, text=True).stdout.strip()
        with socket.create_server(("127.0.0.1", 0)) as s:
            moto_port = s.getsockname()[1]
        procs.start([moto_server, "-H", "127.0.0.1", "-p", str(moto_port)], os.path.join(base, "moto.log"))
        wait("moto", 30, lambda: _listening(moto_port))
        s3(moto_port, "PUT", f"/{BUCKET}")
        jar = build_job(base, os.environ["FLINK_HOME"])
        node = Node(base, args, procs, FaultProxy(moto_port, rng))
        os.makedirs(node.data)
        if os.geteuid() == 0:
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "chaos-data", node.data], check=True)
            node.tmpfs = True
        node.write_config()
        node.start_agent()
        wait("the agent ready", 240, lambda: (get(REST, "/overview") or {}).get("slots-total", 0) >= 1)
        rc, out = node.cli("jobs", "deploy", JOB, "--jar", jar, "--entry-class", ENTRY, "--parallelism", "1",
                           "--", node.output, str(RATE), timeout=120)
        if rc != 0:
            raise RuntimeError(f"jobs deploy: {out}")
        watcher = Watcher(node, moto_port)
        chaos = Chaos(node, watcher, rng, args)
        wait("the job running", 120, running_everywhere)
        started = time.monotonic()
        for i in range(1, args.faults + 1):
            if args.duration and time.monotonic() - started > args.duration:
                break
            if not chaos.step(i, rng.choice(args.kinds)):
                break
        # Settle: durability catches up, retention applies, then the store is audited.
        time.sleep(5)
        chaos.check_node("end")
        wait("the newest completed checkpoint durable", 60,
             lambda: watcher.snapshot()[1] >= watcher.snapshot()[0] - 2, period=1)
        time.sleep(3)
        chaos.check_store(moto_port, 3)
        chaos.check_secrets()
        watcher.stop.set()
        chaos.table()
        print(f"\nseed {seed}: {sum(f['injected'] for f in chaos.figures.values())} faults in "
              f"{time.monotonic() - started:.0f} s, {len(chaos.violations)} violations")
        return 1 if chaos.violations else 0
    finally:
        # A second Ctrl-C must not leave the node, the server or the tmpfs behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node and node.agent:
            try:
                os.kill(node.agent.pid, signal.SIGINT)  # SIGINT: the agent stops Flink too
                node.agent.wait(timeout=60)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        procs.kill_all(base)
        if node and node.tmpfs:
            subprocess.run(["umount", "-l", node.data])
        if args.keep or (chaos and chaos.violations):
            # A violation's evidence (agent and Flink logs, the output file) stays.
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
