#!/usr/bin/env python3
"""What TLS costs, TLS off against on, in one run on this machine (single node, real Flink 2.3):

  cold start   agent start → READY=1 and → usable (/overview lists the TaskManager's slot), a fresh
               state dir each run (with TLS: the CAs, the first certificate and the four PKCS12
               stores are made inside the measured time);
  RTO          kill -9 of the JobManager → the test job RUNNING again, restored from a checkpoint,
               and → its first checkpoint after that;
  shuffle      (with --shuffle, root) records/s and CPU of a keyed shuffle between two TaskManagers
               on two hosts (network namespaces joined by a bridge, 192.0.2.1 and .2): the agent's
               JobManager and TaskManager on one, a second TaskManager started with Flink's script
               and the agent's rendered config on the other, so half the records cross the data
               plane (TLS: mutual, host names checked);
  rotation     the job's downtime (no job with all tasks RUNNING, sampled every 100 ms through
               Flink's REST API) for each rotation step, against a plain restart of both
               processes by a reload (a Flink key changed): a leaf rotation (files mode, a new
               certificate of the same CA) and the three steps of a CA rotation (ca mode, the
               agent paces them).

Prints every run, the medians and the ratios. Certificates for files and ca mode are made with
the openssl command line, as a control plane would. Every process this starts is stopped at
the end (SIGINT to the agent stops Flink; a backstop kills anything naming the temp dir).

usage: flock /tmp/fa-bench.lock python3 benches/tls.py [--runs N] [--shuffle] [--only-shuffle]
       (FLINK_HOME; the release build: cargo build --release -p flink-agent, or FLINK_AGENT=path)
Ports 28180-28188.
"""
import argparse, json, os, shutil, signal, socket, ssl, statistics, subprocess, sys, tempfile, threading, time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT = os.environ.get("FLINK_AGENT", os.path.join(ROOT, "target/release/flink-agent"))
JAVA_HOME = os.environ.get("JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64")
ENTRY = "flinkagent.testjobs.KeyedCounter"
PORTS = dict(rest=28180, jobmanager_rpc=28181, blob=28182, taskmanager_rpc=28183, taskmanager_data=28184,
             taskmanager_collect=28185, metrics_query=28186)
METRICS = 28188
REST = PORTS["rest"]


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


class Agent:
    """One agent on a temp dir; `tls` is the [tls] section (None: off). With `ns`, the agent runs
    in that network namespace at `host`."""

    def __init__(self, base, name, flink_home, tls=None, extra="", ns=None, host="127.0.0.1"):
        self.d = os.path.join(base, name)
        os.makedirs(self.d)
        self.flink_home, self.proc, self.ns, self.host = flink_home, None, ns, host
        self.write(tls, extra)

    def write(self, tls, extra=""):
        self.tls = tls
        ports = "\n".join(f"{k} = {v}" for k, v in PORTS.items())
        section = f"[tls]\nenabled = true\nrotation_step_pause_secs = 20\n{tls}\n" if tls is not None else ""
        with open(os.path.join(self.d, "agent.toml"), "w") as f:
            f.write(f"""[agent]
state_dir = "{self.d}/state"
socket = "{self.d}/agent.sock"
[node]
id = "bench"
address = "{self.host}"
bind_address = "{self.host}"
[cluster]
nodes = ["{self.host}"]
[flink]
home = "{self.flink_home}"
java_home = "{JAVA_HOME}"
data_dir = "{self.d}/flink-data"
log_dir = "{self.d}/flink-log"
[advanced]
checkpoint_interval_ms = 1000
{extra}
[object_store]
url = "file://{self.d}/store"
[checkpoints]
rescan_interval_secs = 1
[firewall]
enabled = false
[metrics]
# Not the default 9248: a test's agent may be listening there (tests and benchmarks take
# different locks).
listen = "{self.host}:{METRICS}"
[ports]
{ports}
{section}""")

    def start(self):
        notify = os.path.join(self.d, "notify")
        if os.path.exists(notify):
            os.unlink(notify)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(notify)
        sock.settimeout(0.05)
        t0 = time.monotonic()
        prefix = ["ip", "netns", "exec", self.ns] if self.ns else []
        self.proc = subprocess.Popen([*prefix, AGENT, "run", "--config", os.path.join(self.d, "agent.toml")],
                                     env=dict(os.environ, NOTIFY_SOCKET=notify, FLINK_AGENT_LOG="info"),
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.d, "agent.log"), "a"),
                                     start_new_session=True)
        ready = None
        while ready is None and time.monotonic() < t0 + 240:
            try:
                if b"READY=1" in sock.recv(4096):
                    ready = time.monotonic() - t0
            except socket.timeout:
                pass
        sock.close()
        if ready is None:
            raise SystemExit(f"no READY=1 within 240 s; see {self.d}/agent.log")
        wait("usable", 240, lambda: (self.get("/overview") or {}).get("slots-total", 0) >= 1, 0.05)
        return ready, time.monotonic() - t0

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # stops Flink, then the agent
            self.proc.wait(timeout=180)
        for pid in pids_naming(self.d):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + (0 if self.ns else 60)
        while time.monotonic() < deadline:  # the next cluster needs the ports
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", REST)) != 0:
                    break
            time.sleep(0.2)

    def context(self):
        """An https context with the agent's own client certificate, once TLS is in force."""
        tls = os.path.join(self.d, "state/tls")
        try:
            gen = json.load(open(os.path.join(tls, "in-force.json")))["id"]
        except (OSError, ValueError, KeyError):
            return None
        ctx = ssl.create_default_context(cafile=os.path.join(tls, f"gen-{gen}/rest-roots.pem"))
        ctx.load_cert_chain(os.path.join(tls, "private/agent-client.pem"), os.path.join(tls, "private/agent-client.key"))
        return ctx

    def get(self, path, timeout=0.5):
        if self.ns:
            return self.get_in_ns(path)
        try:
            if self.tls is None:
                url, ctx = f"http://127.0.0.1:{REST}{path}", None
            else:
                url, ctx = f"https://127.0.0.1:{REST}{path}", self.context()
                if ctx is None:
                    return None
            with urllib.request.urlopen(url, timeout=timeout, context=ctx) as r:
                return json.load(r)
        except Exception:
            return None

    def get_in_ns(self, path):
        """Flink's REST API from inside the agent's namespace (curl in it)."""
        tls = os.path.join(self.d, "state/tls")
        if self.tls is None:
            cmd = ["curl", "-sS", "--max-time", "5", f"http://{self.host}:{REST}{path}"]
        else:
            try:
                gen = json.load(open(os.path.join(tls, "in-force.json")))["id"]
            except (OSError, ValueError, KeyError):
                return None
            cmd = ["curl", "-sS", "--max-time", "5", "--cacert", os.path.join(tls, f"gen-{gen}/rest-roots.pem"),
                   "--cert", os.path.join(tls, "private/agent-client.pem"),
                   "--key", os.path.join(tls, "private/agent-client.key"), f"https://{self.host}:{REST}{path}"]
        out = subprocess.run(["ip", "netns", "exec", self.ns, *cmd], capture_output=True, text=True)
        try:
            return json.loads(out.stdout)
        except ValueError:
            return None

    def cli(self, *args):
        out = subprocess.run([AGENT, args[0], "--socket", os.path.join(self.d, "agent.sock"), *args[1:]],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"flink-agent {' '.join(args)}: {out.stdout}{out.stderr}")
        return out.stdout

    def job(self):
        try:
            jobs = json.loads(self.cli("jobs", "--json"))
        except (RuntimeError, ValueError):
            return None
        return jobs[0] if jobs else None


def wait(what, timeout, f, period=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = f()
        if v:
            return v
        time.sleep(period)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def pids_naming(marker):
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in open(f"/proc/{pid}/cmdline", "rb").read() and int(pid) != os.getpid():
                out.append(int(pid))
        except OSError:
            pass
    return out


# --------------------------------------------------------------------- certificates (openssl)

def make_ca(d, name):
    key, pem = os.path.join(d, f"{name}.key"), os.path.join(d, f"{name}.pem")
    run("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    os.chmod(key, 0o600)
    run("openssl", "req", "-x509", "-new", "-key", key, "-subj", f"/CN={name}", "-days", "3650",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", pem)
    return pem, key


def make_leaf(d, name, ca_pem, ca_key, ip="127.0.0.1"):
    key, csr, pem = (os.path.join(d, f"{name}.{x}") for x in ("key", "csr", "pem"))
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName=IP:{ip},DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n")
    run("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    os.chmod(key, 0o600)
    run("openssl", "req", "-new", "-key", key, "-subj", "/CN=bench-node", "-out", csr)
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key, "-CAcreateserial", "-days", "30",
        "-extfile", ext, "-out", pem)
    return pem, key


# --------------------------------------------------------------------- measurements

class Sampler:
    """Samples whether the job runs (all its tasks RUNNING) every 100 ms; records outages."""

    def __init__(self, agent):
        self.agent, self.samples, self.stop = agent, [], threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stop.is_set():
            jobs = (self.agent.get("/jobs/overview", timeout=0.3) or {}).get("jobs", [])
            up = any(j["state"] == "RUNNING" and j["tasks"]["running"] == j["tasks"]["total"] for j in jobs)
            self.samples.append((time.monotonic(), up))
            time.sleep(0.1)

    def outages(self):
        """(start, end) of each stretch without a running job."""
        out, start = [], None
        for t, up in self.samples:
            if not up and start is None:
                start = t
            elif up and start is not None:
                out.append((start, t))
                start = None
        return out

    def close(self):
        self.stop.set()
        self.thread.join()


def settled(agent, after_id=None):
    """Waits until the job runs (under another id than `after_id`) and has checkpointed."""
    def ok():
        j = agent.job() or {}
        return (j.get("state") == "RUNNING" and j.get("flink_job_id") != after_id
                and j.get("last_completed_checkpoint") is not None
                and (after_id is None or (j.get("restored_from") or {}).get("checkpoint_id") is not None
                     and j["last_completed_checkpoint"] > j["restored_from"]["checkpoint_id"])) and j
    return wait("the job running and checkpointing", 240, ok)


def deploy(agent, jar):
    agent.cli("jobs", "deploy", "counter", "--jar", jar, "--entry-class", ENTRY, "--parallelism", "1", "--",
              os.path.join(agent.d, "counts.txt"), "20")
    return settled(agent)


def kill_jm(agent):
    """kill -9 of the JobManager; seconds to the job RUNNING restored and to its next checkpoint."""
    before = agent.job()["flink_job_id"]
    st = json.loads(agent.cli("status", "--json"))
    jm = next(p["pid"] for p in st["processes"] if p["name"] == "jobmanager")
    os.kill(jm, signal.SIGKILL)
    t0 = time.monotonic()
    wait("restored", 240, lambda: (lambda j: j.get("state") == "RUNNING" and j.get("flink_job_id") != before
                                   and j.get("restored_from"))(agent.job() or {}), 0.1)
    running = time.monotonic() - t0
    settled(agent, before)
    return running, time.monotonic() - t0


def timed_steps(agent, change, steps):
    """Runs `change` (edits the config and reloads) and measures the job's outage for each of
    `steps` restarts that follow; returns [(outage s, to the first checkpoint after s)]."""
    sampler = Sampler(agent)
    time.sleep(1)
    before = agent.job()["flink_job_id"]
    change()
    results = []
    for _ in range(steps):
        j = settled(agent, before)
        done = time.monotonic()
        before = j["flink_job_id"]
        results.append(done)
    time.sleep(0.5)
    sampler.close()
    outages = sampler.outages()
    if len(outages) != steps:
        raise RuntimeError(f"expected {steps} outage(s), saw {len(outages)}: {outages}")
    return [(end - start, done - start) for (start, end), done in zip(outages, results)]


# --------------------------------------------------------------------- two hosts (network namespaces)

NETNS = {"hub": "fa-tls-bench-hub", "a": "fa-tls-bench-a", "b": "fa-tls-bench-b"}
HOSTS = {"a": "192.0.2.1", "b": "192.0.2.2"}


def netns_up():
    netns_down()
    run("ip", "netns", "add", NETNS["hub"])
    run("ip", "-n", NETNS["hub"], "link", "add", "br0", "type", "bridge")
    run("ip", "-n", NETNS["hub"], "link", "set", "br0", "up")
    for i, host in enumerate(("a", "b"), start=1):
        ns = NETNS[host]
        run("ip", "netns", "add", ns)
        run("ip", "-n", NETNS["hub"], "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
        run("ip", "-n", NETNS["hub"], "link", "set", f"v{i}", "master", "br0", "up")
        run("ip", "-n", ns, "addr", "add", f"{HOSTS[host]}/24", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")


def netns_down():
    for ns in NETNS.values():
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def start_second_taskmanager(agent, d, keystore=None):
    """Flink's own script in namespace b, with the agent's rendered config for host b (and, with
    TLS, its own keystore: a certificate naming b's address)."""
    conf = os.path.join(d, "conf")
    shutil.copytree(os.path.join(agent.d, "state/flink-conf"), conf)
    lines = []
    for line in open(os.path.join(conf, "config.yaml")):
        key = line.split(":", 1)[0]
        if key in ("taskmanager.host", "taskmanager.bind-host"):
            line = f"{key}: {HOSTS['b']}\n"
        elif keystore and key == "security.ssl.internal.keystore":
            line = f"{key}: {keystore[0]}\n"
        elif keystore and key in ("security.ssl.internal.keystore-password", "security.ssl.internal.key-password"):
            line = f"{key}: {keystore[1]}\n"
        lines.append(line)
    with open(os.path.join(conf, "config.yaml"), "w") as f:
        f.writelines(lines)
    os.makedirs(os.path.join(d, "log"), exist_ok=True)
    return subprocess.Popen(["ip", "netns", "exec", NETNS["b"], os.path.join(agent.flink_home, "bin/taskmanager.sh"),
                             "start-foreground"], env=dict(os.environ, FLINK_CONF_DIR=conf, JAVA_HOME=JAVA_HOME,
                                                           FLINK_LOG_DIR=os.path.join(d, "log"), FLINK_PID_DIR=d),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def shuffle(base, flink_home, jar, tls, ca, windows, secs=20):
    """records/s into the keyed operator, bytes/s received remotely, and CPU seconds of both
    TaskManagers per million records, for each measuring window of `secs`."""
    name = "on" if tls else "off"
    agent = Agent(base, f"shuffle-{name}", flink_home, tls, extra="", ns=NETNS["a"], host=HOSTS["a"])
    d = os.path.join(base, f"shuffle-{name}-tm-b")
    os.makedirs(d)
    tm = None
    try:
        agent.start()
        keystore = None
        if tls:
            pem, key = make_leaf(d, "tm-b", *ca, ip=HOSTS["b"])
            p12, password = os.path.join(d, "tm-b.p12"), "bench-tm-b-keystore"
            run("openssl", "pkcs12", "-export", "-in", pem, "-inkey", key, "-certfile", ca[0], "-name", "flink",
                "-passout", f"pass:{password}", "-out", p12)
            keystore = (p12, password)
        tm = start_second_taskmanager(agent, d, keystore)
        wait("two TaskManagers", 180, lambda: (agent.get("/overview") or {}).get("taskmanagers") == 2, 1)
        agent.cli("jobs", "deploy", "shuffle", "--jar", jar, "--entry-class", "flinkagent.testjobs.Shuffle",
                  "--parallelism", "2", "--", "200")
        jid = wait("the job", 60, lambda: (agent.job() or {}).get("flink_job_id"))
        vid = wait("the keyed vertex", 120, lambda: next((v["id"] for v in (agent.get(f"/jobs/{jid}") or {}).get("vertices", [])
                                                          if v["name"].startswith("keyed") and v["status"] == "RUNNING"), None), 1)
        st = json.loads(agent.cli("status", "--json"))
        pids = [next(p["pid"] for p in st["processes"] if p["name"] == "taskmanager"), tm.pid]
        time.sleep(20)  # warm-up
        out = []
        for _ in range(windows):
            c0, t0, rates, remote = sum(map(cpu_seconds, pids)), time.monotonic(), [], []
            while time.monotonic() < t0 + secs:
                m = agent.get(f"/jobs/{jid}/vertices/{vid}/subtasks/metrics"
                              "?get=numRecordsInPerSecond,numBytesInRemotePerSecond&agg=sum") or []
                vals = {x["id"]: x.get("sum", 0) for x in m}
                rates.append(vals.get("numRecordsInPerSecond", 0))
                remote.append(vals.get("numBytesInRemotePerSecond", 0))
                time.sleep(2)
            cpu = sum(map(cpu_seconds, pids)) - c0
            r = statistics.median(rates)
            out.append((r, statistics.median(remote), cpu / (r * secs / 1e6) if r else float("nan"),
                        cpu / (time.monotonic() - t0)))
            print(f"shuffle TLS {name:3}: {r:10.0f} records/s, {out[-1][1] / 1e6:6.1f} MB/s across hosts, "
                  f"{out[-1][2]:5.2f} CPU s per million records, TaskManagers using {out[-1][3]:4.2f} cores", flush=True)
        return out
    finally:
        agent.stop()
        if tm is not None:
            os.killpg(tm.pid, signal.SIGKILL)
            tm.wait()


def reload(agent):
    report = json.loads(agent.cli("reload", "--json"))
    bad = [c for c in report["concerns"] if c["outcome"] == "failed"]
    if bad:
        raise RuntimeError(f"reload failed: {bad}")
    return report


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--shuffle", action="store_true", help="also the two-host shuffle (root)")
    ap.add_argument("--only-shuffle", action="store_true")
    a = ap.parse_args()
    flink_home = os.environ.get("FLINK_HOME") or sys.exit("set FLINK_HOME (tests/setup/flink.sh prints it)")
    base = tempfile.mkdtemp(prefix="fa-bench-tls-")
    jar = run("bash", os.path.join(ROOT, "tests/jobs/build.sh"), os.path.join(base, "jobs"),
              env=dict(os.environ, FLINK_HOME=flink_home)).strip()
    agents = []
    pki = os.path.join(base, "pki")
    os.makedirs(pki)
    ca_a, ca_b = make_ca(pki, "bench-ca-a"), make_ca(pki, "bench-ca-b")
    ca_mode = lambda ca: f'mode = "ca"\nca_cert_file = "{ca[0]}"\nca_key_file = "{ca[1]}"'
    try:
        if a.shuffle or a.only_shuffle:
            netns_up()
            off = shuffle(base, flink_home, jar, None, None, a.runs)
            on = shuffle(base, flink_home, jar, ca_mode(ca_a), ca_a, a.runs)
            for k, what in enumerate(("records/s", "bytes/s across hosts", "CPU s per million records")):
                o, n = median([x[k] for x in off]), median([x[k] for x in on])
                print(f"  shuffle {what:26}: TLS off {o:12.2f}, on {n:12.2f}, ratio on/off {n / o:.2f}")
            if a.only_shuffle:
                return
        # Cold start, alternating so machine noise hits both alike.
        cold = {"off": [], "on": []}
        for i in range(a.runs):
            for mode in ("off", "on"):
                agent = Agent(base, f"cold-{mode}-{i}", flink_home, None if mode == "off" else 'mode = "self-signed"')
                agents.append(agent)
                ready, usable = agent.start()
                agent.stop()
                cold[mode].append((ready, usable))
                print(f"cold start TLS {mode:3}: READY {ready:5.2f} s, usable {usable:5.2f} s", flush=True)

        # RTO without TLS.
        rto = {"off": [], "on": []}
        off = Agent(base, "rto-off", flink_home)
        agents.append(off)
        off.start()
        deploy(off, jar)
        for _ in range(a.runs):
            time.sleep(3)
            rto["off"].append(kill_jm(off))
            print(f"RTO TLS off: RUNNING restored {rto['off'][-1][0]:5.2f} s, checkpointing {rto['off'][-1][1]:5.2f} s", flush=True)
        off.stop()

        # With TLS (ca mode, CA A): RTO, then the rotation steps against plain restarts.
        on = Agent(base, "tls-on", flink_home, ca_mode(ca_a))
        agents.append(on)
        on.start()
        deploy(on, jar)
        for _ in range(a.runs):
            time.sleep(3)
            rto["on"].append(kill_jm(on))
            print(f"RTO TLS on : RUNNING restored {rto['on'][-1][0]:5.2f} s, checkpointing {rto['on'][-1][1]:5.2f} s", flush=True)

        steps = {"plain restart": [], "leaf rotation": [], "CA 1/3 trust both": [], "CA 2/3 new leaf": [],
                 "CA 3/3 drop old": []}
        for i in range(a.runs):
            def plain(i=i):
                on.write(on.tls, f'[advanced.flink_config]\n"pekko.ask.timeout" = "{31 + i} s"')
                reload(on)
            time.sleep(3)
            steps["plain restart"] += timed_steps(on, plain, 1)
            print(f"plain restart : outage {steps['plain restart'][-1][0]:5.2f} s, checkpointing {steps['plain restart'][-1][1]:5.2f} s", flush=True)
        for i in range(a.runs):
            leaf = make_leaf(pki, f"leaf-{i}", *ca_a)
            bundle = ca_a[0]
            def rotate(leaf=leaf, bundle=bundle):
                on.write(f'mode = "files"\ncert_file = "{leaf[0]}"\nkey_file = "{leaf[1]}"\nca_file = "{bundle}"')
                reload(on)
            time.sleep(3)
            steps["leaf rotation"] += timed_steps(on, rotate, 1)
            print(f"leaf rotation : outage {steps['leaf rotation'][-1][0]:5.2f} s, checkpointing {steps['leaf rotation'][-1][1]:5.2f} s", flush=True)
        for i in range(a.runs):
            target = ca_b if i % 2 == 0 else ca_a
            def rotate(target=target):
                on.write(ca_mode(target))
                reload(on)
            time.sleep(3)
            three = timed_steps(on, rotate, 3)
            for name, r in zip(["CA 1/3 trust both", "CA 2/3 new leaf", "CA 3/3 drop old"], three):
                steps[name].append(r)
                print(f"{name:17}: outage {r[0]:5.2f} s, checkpointing {r[1]:5.2f} s", flush=True)
        on.stop()

        print(f"\nmedians of {a.runs} run(s), {run(AGENT, '--version').strip()}, Flink at {flink_home}, "
              f"{os.cpu_count()} CPUs:")
        for what in ("READY", "usable"):
            k = 0 if what == "READY" else 1
            o, n = median([x[k] for x in cold["off"]]), median([x[k] for x in cold["on"]])
            print(f"  cold start to {what:6}: TLS off {o:5.2f} s, on {n:5.2f} s, ratio on/off {n / o:.2f}")
        for k, what in enumerate(("RUNNING restored", "next checkpoint")):
            o, n = median([x[k] for x in rto["off"]]), median([x[k] for x in rto["on"]])
            print(f"  JobManager kill → {what:16}: TLS off {o:5.2f} s, on {n:5.2f} s, ratio on/off {n / o:.2f}")
        plain_outage = median([x[0] for x in steps["plain restart"]])
        for name, rs in steps.items():
            out, chk = median([x[0] for x in rs]), median([x[1] for x in rs])
            print(f"  {name:17}: job outage {out:5.2f} s (to next checkpoint {chk:5.2f} s), "
                  f"ratio to a plain restart {out / plain_outage:.2f}")
    finally:
        for agent in agents:
            try:
                agent.stop()
            except Exception as e:
                print(f"stopping {agent.d}: {e}", file=sys.stderr)
        for pid in pids_naming(base):
            os.kill(pid, signal.SIGKILL)
        netns_down()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
