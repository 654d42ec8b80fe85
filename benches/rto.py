#!/usr/bin/env python3
"""RTO: from `kill -9` of the JobManager to the job RUNNING again, restored from a checkpoint.

Two clusters, one after the other, on the same machine and the same Flink distribution:

- the agent: `flink-agent run` (release build) on a temp config, the test job KeyedCounter
  deployed through the CLI with a 1 s checkpoint interval. Each run kills the JobManager's JVM
  with SIGKILL and records, relative to the kill, when
    gone       the JVM is gone (reaped or a zombie),
    new pid    a new JobManager process exists (the agent reacted),
    jvm        that process is the JVM (the launcher scripts are done),
    rest       the JobManager's REST API answers,
    tm         a TaskManager is registered with its slots,
    jar        the job's jar is uploaded (/jars lists it),
    submitted  a new job id is listed,
    running    every task of it is RUNNING (past INITIALIZING: state restored); afterwards
               /jobs/:id/checkpoints must show `latest.restored` (the run fails otherwise);
- the anchor: Flink's own ZooKeeper HA (Debian's `zookeeper`), two JobManagers (leader and hot
  standby) and one TaskManager started with Flink's scripts; the leader is killed with SIGKILL
  and the same end point is timed on the standby (phases: leader elected, job listed, running).

The agent runs once per `--variants` entry: `cds` (class-data sharing on; the kills start once
the agent has made both archives) and `no-cds`, so that lever shows on its own.

Prints per-phase medians of `--runs` kills for both and the ratio agent/anchor (goal <= 0.5).
Every process this starts is killed by process group at the end, also on errors and Ctrl-C.

usage: benches/rto.py [--runs N] [--variants cds,no-cds] [--skip-anchor] [--skip-agent] [--agent BIN] [--keep]
       (FLINK_HOME, the agent built with `cargo build --release -p flink-agent`)
"""
import argparse, glob, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time
import urllib.request, uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT = os.path.join(ROOT, "target/release/flink-agent")
JAVA_HOME = os.environ.get("JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64")
ENTRY = "flinkagent.testjobs.KeyedCounter"
JM_CLASS = "StandaloneSessionClusterEntrypoint"
# 20170-20179: the agent's cluster; 20180-20199: the anchor; 22181: ZooKeeper.
AGENT_PORTS = dict(rest=20170, jobmanager_rpc=20171, blob=20172, taskmanager_rpc=20173, taskmanager_data=20174,
                   taskmanager_collect=20175, metrics_query=20176)
AGENT_METRICS = 20178
ANCHOR_JMS = [dict(rest=20180, rpc=20181, blob=20182), dict(rest=20185, rpc=20186, blob=20187)]
ZK_PORT = 22181
AGENT_PHASES = ["gone", "new pid", "jvm", "rest", "tm", "jar", "submitted", "running"]
ANCHOR_PHASES = ["leader", "submitted", "running"]
POLL = 0.05


def get(port, path, timeout=0.5):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return json.load(r)
    except Exception:
        return None


def post(port, path, body, content_type="application/json", timeout=60):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST",
                                 headers={"Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


def wait(what, timeout, f, period=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = f()
        # 0 is an answer (an index); None, False and [] are not.
        if not (v is None or v is False or v == []):
            return v
        time.sleep(period)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def alive(pid):
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def pids_with(marker, main_class=None):
    """Pids whose command line mentions `marker` (and `main_class`, if given)."""
    out = []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        c = b" ".join(cmdline(int(e)))
        if marker.encode() in c and (main_class is None or main_class.encode() in c):
            out.append(int(e))
    return out


def children(parent):
    """Pids whose parent is `parent` (the agent's Flink processes)."""
    out = []
    for e in os.listdir("/proc"):
        try:
            with open(f"/proc/{e}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == parent:
                    out.append(int(e))
        except (OSError, ValueError):
            pass
    return out


def all_running(port, jid):
    """True when every task of job `jid` runs: past INITIALIZING, i.e. its state is restored.

    Whether it was restored from a checkpoint is asked afterwards (`restored_from`): Flink's REST
    caches checkpoint statistics for up to 3 s (rest.cache.checkpoint-statistics.timeout), so
    polling them for the end point would time the cache, not the recovery."""
    job = get(port, f"/jobs/{jid}")
    if not job or job.get("state") != "RUNNING":
        return False
    return bool(job.get("vertices")) and all(v.get("status") == "RUNNING" for v in job["vertices"])


def restored_from(port, jid):
    """The checkpoint id job `jid` was restored from; raises if Flink says it was not."""
    cp = wait(f"job {jid} restored from a checkpoint", 15,
              lambda: ((get(port, f"/jobs/{jid}/checkpoints") or {}).get("latest") or {}).get("restored"),
              period=0.5)
    return cp.get("id")


def live_jobs(port):
    return [j["id"] for j in (get(port, "/jobs") or {}).get("jobs", []) if j["status"] not in
            ("FAILED", "CANCELED", "FINISHED")]


class Procs:
    """Process groups this benchmark started; `kill_all` ends every one of them."""

    def __init__(self):
        self.groups = []

    def start(self, argv, log, env=None, cwd=None):
        with open(log, "ab") as out:
            p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        self.groups.append(p.pid)
        return p

    def kill_all(self, marker):
        for g in self.groups:
            try:
                os.killpg(g, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # Flink JVMs lead their own groups; they name the temp dir on their command line.
        for pid in pids_with(marker):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while pids_with(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.groups.clear()


def build_job(d, flink_home):
    out = subprocess.run(["bash", os.path.join(ROOT, "tests/jobs/build.sh"), os.path.join(d, "jobs-build")],
                         env=dict(os.environ, FLINK_HOME=flink_home), check=True, capture_output=True, text=True)
    return out.stdout.strip()


# ---------------------------------------------------------------- the agent

def agent_config(d, flink_home, cds=True):
    ports = "\n".join(f"{k} = {v}" for k, v in AGENT_PORTS.items())
    path = os.path.join(d, "agent.toml")
    with open(path, "w") as f:
        f.write(f"""[agent]
state_dir = "{d}/state"
socket = "{d}/agent.sock"
[node]
id = "bench"
address = "127.0.0.1"
bind_address = "127.0.0.1"
[cluster]
id = "bench"
nodes = ["127.0.0.1"]
[flink]
home = "{flink_home}"
java_home = "{JAVA_HOME}"
data_dir = "{d}/flink-data"
log_dir = "{d}/flink-log"
[advanced]
checkpoint_interval_ms = 1000
[object_store]
url = "file://{d}/store"
[checkpoints]
rescan_interval_secs = 1
[firewall]
enabled = false
[supervisor]
class_data_sharing = {str(cds).lower()}
[metrics]
# Not the default 9248: a test's agent may be listening there (tests and benchmarks take
# different locks).
listen = "127.0.0.1:{AGENT_METRICS}"
[ports]
{ports}
""")
    return path


def cli(d, *args):
    out = subprocess.run([AGENT, args[0], "--socket", os.path.join(d, "agent.sock"), *args[1:]],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"flink-agent {' '.join(args)}: {out.stdout}{out.stderr}")
    return out.stdout


def agent_job(d):
    try:
        jobs = json.loads(cli(d, "jobs", "--json"))
    except (RuntimeError, ValueError):
        return None
    return jobs[0] if jobs else None


def measure_agent_kill(d, rest, agent_pid):
    """Kills the JobManager JVM once; returns {phase: seconds after the kill}."""
    old = wait("the JobManager JVM", 60, lambda: pids_with(d, JM_CLASS))[0]
    old_jobs = set(live_jobs(rest))
    old_jars = {j["id"] for j in (get(rest, "/jars") or {}).get("files", [])}
    os.kill(old, signal.SIGKILL)
    t0 = time.monotonic()
    seen, new, jid = {}, None, None
    while "running" not in seen:
        now = time.monotonic() - t0
        if now > 180:
            raise RuntimeError(f"no recovery within 180 s; phases seen: {seen}")
        if "gone" not in seen and not alive(old):
            seen["gone"] = now
        if new is None:
            new = next((p for p in children(agent_pid) if p != old and alive(p) and _is_jm(p)), None)
            if new is not None:
                seen["new pid"] = now
        if new is not None and "jvm" not in seen and JM_CLASS.encode() in b" ".join(cmdline(new)):
            seen["jvm"] = now
        if "jvm" in seen:
            if "rest" not in seen and get(rest, "/overview", timeout=0.3) is not None:
                seen["rest"] = now
            if "rest" in seen:
                if "tm" not in seen and any(t.get("slotsNumber", 0) >= 1 for t in
                                            (get(rest, "/taskmanagers") or {}).get("taskmanagers", [])):
                    seen["tm"] = now
                if "jar" not in seen and {j["id"] for j in (get(rest, "/jars") or {}).get("files", [])} - old_jars:
                    seen["jar"] = now
                if jid is None:
                    jid = next((j for j in live_jobs(rest) if j not in old_jobs), None)
                    if jid is not None:
                        seen["submitted"] = now
                if jid is not None and all_running(rest, jid):
                    seen["running"] = now
        time.sleep(POLL)
    seen["restored from"] = restored_from(rest, jid)
    # Phases observed in one poll share its timestamp; a phase the agent skipped (no upload)
    # counts as reached when the next one is.
    for i in range(len(AGENT_PHASES) - 2, -1, -1):
        seen.setdefault(AGENT_PHASES[i], seen[AGENT_PHASES[i + 1]])
    return seen


def _is_jm(pid):
    """The agent launches the JobManager either through bin/jobmanager.sh or as the JVM."""
    c = b" ".join(cmdline(pid))
    return b"jobmanager.sh" in c or b"standalonesession" in c or JM_CLASS.encode() in c


def run_agent(base, name, flink_home, jar, runs, procs, cds):
    d = os.path.join(base, name)
    os.makedirs(d)
    config = agent_config(d, flink_home, cds)
    agent = procs.start([AGENT, "run", "--config", config], os.path.join(d, "agent.log"),
                        env=dict(os.environ, FLINK_AGENT_LOG="info"))
    rest = AGENT_PORTS["rest"]
    wait("the agent ready", 180, lambda: (get(rest, "/overview") or {}).get("slots-total", 0) >= 1)
    cli(d, "jobs", "deploy", "counter", "--jar", jar, "--entry-class", ENTRY, "--parallelism", "1", "--",
        os.path.join(d, "counts.txt"), "20")
    if cds:
        # Recovery with the archives the agent makes once the first JVMs have settled.
        t = time.monotonic()
        wait("both class-data archives", 300, lambda: len(glob.glob(os.path.join(d, "state/flink-conf.jvm/*.jsa"))) >= 2,
             period=1)
        print(f"{name}: both class-data archives made {time.monotonic() - t:.0f} s after the job was deployed", flush=True)
    results = []
    for i in range(runs):
        # A durable checkpoint newer than the last restore, then a settled cluster.
        wait("a durable checkpoint", 120, lambda: (agent_job(d) or {}).get("state") == "RUNNING"
             and (agent_job(d) or {}).get("last_durable_checkpoint") is not None)
        time.sleep(3)
        r = measure_agent_kill(d, rest, agent.pid)
        results.append(r)
        print(f"{name} run {i + 1}: " + ", ".join(f"{p} {r[p]:.2f}" for p in AGENT_PHASES)
              + f" (restored from checkpoint {r['restored from']})", flush=True)
    return results


# ---------------------------------------------------------------- the anchor

def start_zookeeper(base, procs):
    d = os.path.join(base, "zk")
    os.makedirs(os.path.join(d, "data"))
    with open(os.path.join(d, "zoo.cfg"), "w") as f:
        f.write(f"tickTime=2000\ndataDir={d}/data\nclientPort={ZK_PORT}\nclientPortAddress=127.0.0.1\n"
                "admin.enableServer=false\n4lw.commands.whitelist=ruok\nmaxSessionTimeout=60000\n")
    procs.start([os.path.join(JAVA_HOME, "bin/java"), f"-Dzookeeper.log.dir={d}", "-cp",
                 "/usr/share/java/zookeeper.jar", "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                 os.path.join(d, "zoo.cfg")], os.path.join(d, "zk.log"))

    def ruok():
        try:
            with socket.create_connection(("127.0.0.1", ZK_PORT), timeout=1) as s:
                s.sendall(b"ruok")
                return s.recv(4) == b"imok"
        except OSError:
            return False
    wait("ZooKeeper", 60, ruok)


def anchor_conf(base, flink_home):
    """The agent's rendered config (same memory, state backend, checkpointing) with Flink's HA."""
    d = os.path.join(base, "anchor")
    conf = os.path.join(d, "conf")
    os.makedirs(conf)
    rendered = subprocess.run([AGENT, "render", "--config", os.path.join(base, "agent", "agent.toml")],
                              check=True, capture_output=True, text=True).stdout
    keys = {}
    for line in rendered.splitlines():
        if line and not line.startswith("#"):
            k, v = line.split(": ", 1)
            keys[k] = v
    for k in ("rest.port", "jobmanager.rpc.port", "blob.server.port", "heartbeat.timeout",
              "taskmanager.rpc.port", "taskmanager.data.port", "taskmanager.collect-sink.port",
              "metrics.internal.query-service.port"):
        keys.pop(k, None)
    keys.update({
        "env.log.dir": f"{d}/log",
        "execution.checkpointing.dir": f"file://{d}/checkpoints",
        "execution.checkpointing.savepoint-dir": f"file://{d}/savepoints",
        "io.tmp.dirs": f"{d}/tmp",
        # Flink's default is /tmp, where every killed JobManager's upload dir would stay.
        "web.tmpdir": f"{d}/tmp",
        "high-availability.type": "zookeeper",
        "high-availability.zookeeper.quorum": f"127.0.0.1:{ZK_PORT}",
        "high-availability.storageDir": f"file://{d}/ha",
        "high-availability.cluster-id": "rto-anchor",
        "high-availability.zookeeper.client.session-timeout": "6000",
        "heartbeat.interval": "2000",
        "heartbeat.timeout": "8000",
        "taskmanager.rpc.port": "20190",
        "taskmanager.data.port": "20191",
        "taskmanager.collect-sink.port": "20192",
        "metrics.internal.query-service.port": "20193-20199",
    })
    with open(os.path.join(conf, "config.yaml"), "w") as f:
        f.writelines(f"{k}: {v}\n" for k, v in sorted(keys.items()))
    for name in os.listdir(os.path.join(flink_home, "conf")):
        if name.startswith(("log4j", "logback")):
            shutil.copy(os.path.join(flink_home, "conf", name), conf)
    for sub in ("tmp", "checkpoints"):
        os.makedirs(os.path.join(d, sub))
    return d, conf


def start_anchor_jm(d, conf, flink_home, i, procs):
    jm = ANCHOR_JMS[i]
    log = os.path.join(d, f"log-jm{i}")
    os.makedirs(log, exist_ok=True)
    env = dict(os.environ, FLINK_CONF_DIR=conf, FLINK_LOG_DIR=log, FLINK_PID_DIR=log, JAVA_HOME=JAVA_HOME)
    return procs.start([os.path.join(flink_home, "bin/jobmanager.sh"), "start-foreground",
                        "-D", f"rest.port={jm['rest']}", "-D", f"jobmanager.rpc.port={jm['rpc']}",
                        "-D", f"blob.server.port={jm['blob']}"], os.path.join(log, "console.log"), env=env)


def anchor_leader(d, pids):
    """Index of the JobManager whose Dispatcher was granted leadership (per its log)."""
    for i, p in enumerate(pids):
        if p is None or not alive(p):
            continue
        for f in glob.glob(os.path.join(d, f"log-jm{i}", "*.log")):
            with open(f, errors="replace") as fh:
                if "DefaultDispatcherRunner was granted leadership" in fh.read():
                    return i
    return None


def upload_and_run(port, jar, output):
    boundary = uuid.uuid4().hex
    with open(jar, "rb") as f:
        data = f.read()
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"jarfile\"; filename=\"test-jobs.jar\"\r\n"
            f"Content-Type: application/x-java-archive\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    up = post(port, "/jars/upload", body, f"multipart/form-data; boundary={boundary}")
    jar_id = up["filename"].rsplit("/", 1)[-1]
    run = post(port, f"/jars/{jar_id}/run", json.dumps({"entryClass": ENTRY, "parallelism": 1,
                                                          "programArgsList": [output, "20"]}).encode())
    return run["jobid"]


def run_anchor(base, flink_home, jar, runs, procs):
    start_zookeeper(base, procs)
    d, conf = anchor_conf(base, flink_home)
    pids = [start_anchor_jm(d, conf, flink_home, i, procs).pid for i in range(2)]
    tm_log = os.path.join(d, "log-tm")
    os.makedirs(tm_log)
    procs.start([os.path.join(flink_home, "bin/taskmanager.sh"), "start-foreground"],
                os.path.join(tm_log, "console.log"),
                env=dict(os.environ, FLINK_CONF_DIR=conf, FLINK_LOG_DIR=tm_log, FLINK_PID_DIR=tm_log,
                         JAVA_HOME=JAVA_HOME))
    leader = wait("an anchor leader", 120, lambda: anchor_leader(d, pids), period=0.5)
    lport = ANCHOR_JMS[leader]["rest"]
    wait("the anchor TaskManager", 120, lambda: (get(lport, "/overview") or {}).get("slots-total", 0) >= 1)
    jid = upload_and_run(lport, jar, os.path.join(d, "counts.txt"))
    results = []
    for i in range(runs):
        wait("a completed checkpoint", 120, lambda: ((get(ANCHOR_JMS[leader]["rest"], f"/jobs/{jid}/checkpoints")
                                                      or {}).get("counts") or {}).get("completed", 0) >= 2)
        # The standby must be up (it may have just been restarted as the new standby).
        wait("the standby's REST", 120, lambda: get(ANCHOR_JMS[1 - leader]["rest"], "/overview"))
        time.sleep(3)
        os.killpg(pids[leader], signal.SIGKILL)
        t0 = time.monotonic()
        standby = 1 - leader
        port = ANCHOR_JMS[standby]["rest"]
        seen = {}
        while "running" not in seen:
            now = time.monotonic() - t0
            if now > 180:
                raise RuntimeError(f"anchor: no recovery within 180 s; phases seen: {seen}")
            if "leader" not in seen and anchor_leader(d, [p if k == standby else None for k, p in enumerate(pids)]) == standby:
                seen["leader"] = now
            if "leader" in seen:
                if "submitted" not in seen and jid in live_jobs(port):
                    seen["submitted"] = now
                if "submitted" in seen and all_running(port, jid):
                    seen["running"] = now
            time.sleep(POLL)
        seen["restored from"] = restored_from(port, jid)
        results.append(seen)
        print(f"anchor run {i + 1}: " + ", ".join(f"{p} {seen[p]:.2f}" for p in ANCHOR_PHASES)
              + f" (restored from checkpoint {seen['restored from']})", flush=True)
        # The killed JobManager comes back as the new standby (fresh log dir, so the leader
        # search only sees its new grant).
        old = leader
        shutil.rmtree(os.path.join(d, f"log-jm{old}"))
        pids[old] = start_anchor_jm(d, conf, flink_home, old, procs).pid
        leader = standby
    return results


# ---------------------------------------------------------------- report

def medians(results, phases):
    return {p: statistics.median(r[p] for r in results) for p in phases}


def table(title, results, phases):
    m = medians(results, phases)
    print(f"\n{title} (median of {len(results)} kills; seconds after kill -9; step = since previous phase)")
    prev = 0.0
    # In time order: the TaskManager may register before or after the job is submitted.
    for p in sorted(phases, key=lambda p: m[p]):
        print(f"  {p:<10} {m[p]:6.2f}   step {m[p] - prev:5.2f}")
        prev = m[p]
    return m["running"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-anchor", action="store_true")
    ap.add_argument("--skip-agent", action="store_true")
    ap.add_argument("--variants", default="cds,no-cds",
                    help="agent runs, comma-separated: cds (class-data sharing on), no-cds")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs) for inspection")
    ap.add_argument("--agent", help="the agent binary to measure (default: the release build); "
                    "compare two builds by running each")
    a = ap.parse_args()
    global AGENT
    AGENT = a.agent or AGENT
    flink_home = os.environ.get("FLINK_HOME") or sys.exit("set FLINK_HOME (tests/setup/flink.sh prints it)")
    if not os.access(AGENT, os.X_OK):
        sys.exit(f"no {AGENT}: run `cargo build --release -p flink-agent`")
    base = tempfile.mkdtemp(prefix="fa-rto-")
    procs = Procs()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    agents, anchor = {}, None
    variants = [v for v in a.variants.split(",") if v]
    try:
        jar = build_job(base, flink_home)
        for v in [] if a.skip_agent else variants:
            if v not in ("cds", "no-cds"):
                sys.exit(f"unknown variant {v!r}")
            # The first variant's dir is `agent`: the anchor renders its config from there.
            name = "agent" if v == variants[0] else f"agent-{v}"
            agents[v] = run_agent(base, name, flink_home, jar, a.runs, procs, v == "cds")
            procs.kill_all(base)
        if not a.skip_anchor:
            if a.skip_agent:
                # The anchor's config is the agent's rendered one plus HA.
                os.makedirs(os.path.join(base, "agent"))
                agent_config(os.path.join(base, "agent"), flink_home)
            anchor = run_anchor(base, flink_home, jar, a.runs, procs)
    finally:
        procs.kill_all(base)
        left = subprocess.run(["pgrep", "-f", base], capture_output=True, text=True).stdout.split()
        if left:
            print(f"WARNING: processes left behind: {left}", file=sys.stderr)
        if a.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    totals = {v: table(f"agent ({v})", r, AGENT_PHASES) for v, r in agents.items()}
    h_total = table("anchor: ZooKeeper HA, hot standby", anchor, ANCHOR_PHASES) if anchor else None
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nload average at the end: {load} ({os.cpu_count()} CPUs)")
    if "cds" in totals and "no-cds" in totals:
        print(f"class-data sharing alone: RTO {totals['no-cds']:.2f} s → {totals['cds']:.2f} s "
              f"(ratio {totals['cds'] / totals['no-cds']:.2f})")
    for v, total in totals.items():
        if h_total:
            print(f"RTO median: agent ({v}) {total:.2f} s, anchor {h_total:.2f} s; "
                  f"ratio agent/anchor = {total / h_total:.2f} (goal <= 0.5)")


if __name__ == "__main__":
    main()
