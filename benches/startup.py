#!/usr/bin/env python3
"""Cold start to a usable cluster: flink-agent vs Flink's own bin/start-cluster.sh, side by side.

"Usable" is the same for both: Flink's /overview lists one TaskManager with its slots. For the
agent we also record when it sent READY=1 (it listens to systemd's notify protocol on a socket
this script owns). First starts on a new state dir (through Flink's scripts, as under a new
config), then second starts on one that a first start left (the learned JVM commands and the
class-data archives). Then the agent's own footprint on an idle cluster: RSS and CPU over a window,
next to the TaskManager's RSS. Prints medians and the ratio; asserts nothing.

usage: benches/startup.py [--runs N] [--idle-secs S] [--agent BIN]   (FLINK_HOME, the agent built in release)
"""
import argparse, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT = os.path.join(ROOT, "target/release/flink-agent")
PORTS = dict(rest=28081, jobmanager_rpc=28123, blob=28124, taskmanager_rpc=28122, taskmanager_data=28121,
             taskmanager_collect=28125, metrics_query=28126)
METRICS = 28128


def overview_ready(port, deadline):
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/overview", timeout=1) as r:
                o = json.load(r)
                if o.get("taskmanagers") == 1 and o.get("slots-total", 0) >= 1:
                    return time.monotonic()
        except Exception:
            pass
        time.sleep(0.05)
    raise SystemExit("cluster did not become usable in time")


def write_config(d, flink_home, extra=""):
    ports = "\n".join(f"{k} = {v}" for k, v in PORTS.items())
    with open(os.path.join(d, "agent.toml"), "w") as f:
        f.write(f"""[agent]
state_dir = "{d}/state"
socket = "{d}/agent.sock"
[flink]
home = "{flink_home}"
data_dir = "{d}/data"
log_dir = "{d}/log"
[object_store]
url = "file://{d}/store"
[metrics]
# Not the default 9248: a test's agent may be listening there (tests and benchmarks take
# different locks).
listen = "127.0.0.1:{METRICS}"
[ports]
{ports}
{extra}""")


def run_agent(flink_home, d=None, extra=""):
    """Starts the agent on a new state dir (`extra`: more of its config), or again on `d` (its
    learned JVM commands and class-data archives in place)."""
    if d is None:
        d = tempfile.mkdtemp(prefix="fa-bench-")
        write_config(d, flink_home, extra)
    notify_path = os.path.join(d, "notify")
    if os.path.exists(notify_path):
        os.unlink(notify_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify_path)
    sock.settimeout(0.05)
    env = dict(os.environ, NOTIFY_SOCKET=notify_path, FLINK_AGENT_LOG="warn")
    t0 = time.monotonic()
    p = subprocess.Popen([AGENT, "run", "--config", f"{d}/agent.toml"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ready_at = None
    deadline = t0 + 180
    while ready_at is None and time.monotonic() < deadline:
        try:
            if b"READY=1" in sock.recv(4096):
                ready_at = time.monotonic()
        except socket.timeout:
            pass
    usable_at = overview_ready(PORTS["rest"], deadline)
    return p, d, ready_at - t0, usable_at - t0


def stop_agent(p, d, remove=True):
    # SIGINT stops Flink with the agent (SIGTERM would leave it running for the next agent).
    p.send_signal(signal.SIGINT)
    p.wait(timeout=120)
    if remove:
        shutil.rmtree(d, ignore_errors=True)


def wait_archives(d, timeout=300):
    """Seconds until the agent has made both class-data archives (it does once the JVMs settle)."""
    t0 = time.monotonic()
    jvm = os.path.join(d, "state/flink-conf.jvm")
    while time.monotonic() - t0 < timeout:
        if os.path.isdir(jvm) and sum(n.endswith(".jsa") for n in os.listdir(jvm)) >= 2:
            return time.monotonic() - t0
        time.sleep(1)
    raise SystemExit("no class-data archives in time")


def run_scripts(flink_home):
    """Flink's own way: start-cluster.sh with the same rendered configuration."""
    d = tempfile.mkdtemp(prefix="fa-bench-")
    write_config(d, flink_home)
    conf = os.path.join(d, "conf")
    os.makedirs(conf)
    out = subprocess.run([AGENT, "render", "--config", f"{d}/agent.toml"], check=True, capture_output=True, text=True).stdout
    with open(os.path.join(conf, "config.yaml"), "w") as f:
        f.write(out.split("\n", 1)[1])
    for name in os.listdir(os.path.join(flink_home, "conf")):
        if name.startswith(("log4j", "logback")):
            shutil.copy(os.path.join(flink_home, "conf", name), conf)
    with open(os.path.join(conf, "masters"), "w") as f:
        f.write(f"localhost:{PORTS['rest']}\n")
    with open(os.path.join(conf, "workers"), "w") as f:
        f.write("localhost\n")
    for sub in ("data/checkpoints", "data/tmp", "log"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    env = dict(os.environ, FLINK_CONF_DIR=conf, FLINK_LOG_DIR=os.path.join(d, "log"), FLINK_PID_DIR=d)
    t0 = time.monotonic()
    subprocess.run([os.path.join(flink_home, "bin/start-cluster.sh")], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    usable = overview_ready(PORTS["rest"], t0 + 180) - t0
    subprocess.run([os.path.join(flink_home, "bin/stop-cluster.sh")], env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port_free(PORTS["rest"])
    shutil.rmtree(d, ignore_errors=True)
    return usable


def wait_port_free(port, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.2)


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def footprint(flink_home, idle_secs):
    p, d, _, _ = run_agent(flink_home)
    try:
        st = json.loads(subprocess.run([AGENT, "status", "--json", "--socket", f"{d}/agent.sock"],
                                       capture_output=True, text=True).stdout)
        tm = next(x["pid"] for x in st["processes"] if x["name"] == "taskmanager")
        hz = os.sysconf("SC_CLK_TCK")
        c0, t0 = proc_cpu_ticks(p.pid), time.monotonic()
        rss = []
        end = t0 + idle_secs
        while time.monotonic() < end:
            rss.append(proc_rss_kib(p.pid))
            time.sleep(1)
        cpu = (proc_cpu_ticks(p.pid) - c0) / hz / (time.monotonic() - t0) * 100
        return max(rss) / 1024, cpu, proc_rss_kib(tm) / 1024
    finally:
        stop_agent(p, d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--idle-secs", type=int, default=60)
    ap.add_argument("--agent", help="the agent binary to measure (default: the release build)")
    a = ap.parse_args()
    global AGENT
    AGENT = a.agent or AGENT
    flink_home = os.environ.get("FLINK_HOME") or sys.exit("set FLINK_HOME (tests/setup/flink.sh prints it)")
    agent_ready, agent_usable, scripts = [], [], []
    for i in range(a.runs):
        # Alternate so that machine noise hits both sides alike.
        p, d, ready, usable = run_agent(flink_home)
        stop_agent(p, d)
        wait_port_free(PORTS["rest"])
        agent_ready.append(ready)
        agent_usable.append(usable)
        scripts.append(run_scripts(flink_home))
        print(f"run {i + 1}: agent READY {ready:.2f} s, usable {usable:.2f} s; start-cluster.sh usable {scripts[-1]:.2f} s", flush=True)
    # The second start under the same config: the learned JVM commands (no scripts) and the
    # class-data archives the first start left.
    p, d, _, _ = run_agent(flink_home)
    made = wait_archives(d)
    stop_agent(p, d, remove=False)
    wait_port_free(PORTS["rest"])
    second, scripts2 = [], []
    for i in range(a.runs):
        p, _, _, usable = run_agent(flink_home, d)
        stop_agent(p, d, remove=False)
        wait_port_free(PORTS["rest"])
        second.append(usable)
        scripts2.append(run_scripts(flink_home))
        print(f"second start {i + 1}: agent usable {usable:.2f} s; start-cluster.sh usable {scripts2[-1]:.2f} s", flush=True)
    shutil.rmtree(d, ignore_errors=True)
    ma, mu, ms = (statistics.median(x) for x in (agent_ready, agent_usable, scripts))
    m2, ms2 = statistics.median(second), statistics.median(scripts2)
    print(f"cold start, median of {a.runs}: agent READY {ma:.2f} s, agent usable {mu:.2f} s, "
          f"start-cluster.sh usable {ms:.2f} s; ratio agent/scripts = {mu / ms:.2f}")
    print(f"second start (learned commands, class-data archives made {made:.0f} s after the first "
          f"was ready), median of {a.runs}: agent usable {m2:.2f} s, start-cluster.sh usable {ms2:.2f} s; "
          f"ratio agent/scripts = {m2 / ms2:.2f} (goal <= 0.6)")
    rss, cpu, tm_rss = footprint(flink_home, a.idle_secs)
    print(f"idle footprint over {a.idle_secs} s: agent max RSS {rss:.1f} MiB (goal <= 15), "
          f"agent CPU {cpu:.2f}% of one core (goal < 0.5), TaskManager RSS {tm_rss:.0f} MiB")


if __name__ == "__main__":
    main()
