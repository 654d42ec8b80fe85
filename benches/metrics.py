#!/usr/bin/env python3
"""What monitoring costs the agent, on a real cluster with 20 declared jobs.

One single-node cluster (20 slots) runs 20 small stateful jobs (tests/jobs KeyedCounter, one
element a second, a checkpoint every 10 s). Then, on that same agent:

0. the agent with no jobs, metrics off, then on (scraped every 15 s);
1. with the 20 jobs, metrics off (`[metrics] listen = "off"`): the agent's max RSS and CPU over a window;
2. with the 20 jobs, metrics on and scraped every 15 s (Prometheus's default), same window;
3. scrape cost: N scrapes back to back, the time per scrape as the scraper sees it and the
   agent's CPU per scrape.

Each switch is a reload (only the metrics concern acts). Prints each figure and,
last, the ratio of idle CPU and RSS with metrics on to off. Goals: RSS < 15 MiB, idle CPU < 0.5%
of a core. Asserts nothing.

usage: flock /tmp/fa-bench.lock python3 benches/metrics.py [--window S] [--scrapes N]
       (FLINK_HOME, the agent built in release; javac for the job)
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
AGENT = os.path.join(TARGET, "release/flink-agent")
JOBS = 20
METRICS_PORT = 28209
PORTS = dict(rest=28200, jobmanager_rpc=28201, blob=28202, taskmanager_rpc=28203, taskmanager_data=28204,
             taskmanager_collect=28205, metrics_query=28206, prometheus_jobmanager=28210,
             prometheus_taskmanager=28211)
TICK = os.sysconf("SC_CLK_TCK")


def write_config(d, flink_home, listen):
    ports = "\n".join(f"{k} = {v}" for k, v in PORTS.items())
    with open(os.path.join(d, "agent.toml"), "w") as f:
        f.write(f"""[agent]
state_dir = "{d}/state"
socket = "{d}/agent.sock"
[flink]
home = "{flink_home}"
data_dir = "{d}/data"
log_dir = "{d}/log"
[plan]
memory_mib = 8192
[advanced]
number_of_task_slots = {JOBS}
checkpoint_interval_ms = 10000
[object_store]
url = "file://{d}/store"
[firewall]
enabled = false
[metrics]
listen = "{listen}"
[ports]
{ports}
""")


def cli(d, *args, check=True):
    r = subprocess.run([AGENT, "--config", f"{d}/agent.toml", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"flink-agent {' '.join(args)}: {r.stdout}{r.stderr}")
    return r


def status(d):
    r = cli(d, "--json", "status", check=False)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return None


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def scrape():
    t = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5) as r:
        body = r.read()
    return time.monotonic() - t, body


def idle(pid, window, scrape_every=None):
    """Max RSS (MiB) and CPU (% of one core) of the agent over `window` seconds."""
    t0, c0 = time.monotonic(), cpu_ticks(pid)
    rss, next_scrape = [], t0
    while time.monotonic() - t0 < window:
        if scrape_every and time.monotonic() >= next_scrape:
            scrape()
            next_scrape += scrape_every
        rss.append(rss_kib(pid))
        time.sleep(1)
    elapsed = time.monotonic() - t0
    return max(rss) / 1024, (cpu_ticks(pid) - c0) / TICK / elapsed * 100


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--window", type=int, default=60)
    ap.add_argument("--scrapes", type=int, default=200)
    a = ap.parse_args()
    flink_home = os.environ.get("FLINK_HOME") or subprocess.check_output(
        ["bash", os.path.join(ROOT, "tests/setup/flink.sh")], text=True).strip()
    d = tempfile.mkdtemp(prefix="fa-bench-metrics-")
    os.makedirs(f"{d}/store")
    write_config(d, flink_home, "off")
    jar = subprocess.check_output(["bash", os.path.join(ROOT, "tests/jobs/build.sh"), f"{d}/jobs"],
                                  text=True, env=dict(os.environ, FLINK_HOME=flink_home)).strip()
    p = subprocess.Popen([AGENT, "run", "--config", f"{d}/agent.toml"], env=dict(os.environ, FLINK_AGENT_LOG="warn"),
                         stdout=subprocess.DEVNULL, stderr=open(f"{d}/agent.log", "w"), start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not ((s := status(d)) and s.get("ready")):
            if time.monotonic() > deadline or p.poll() is not None:
                raise SystemExit(f"agent not ready; see {d}/agent.log")
            time.sleep(1)
        # The agent alone, no jobs: what metrics cost on top of supervision.
        bare_off = idle(p.pid, a.window)
        write_config(d, flink_home, f"127.0.0.1:{METRICS_PORT}")
        cli(d, "reload")
        bare_on = idle(p.pid, a.window, scrape_every=15)
        write_config(d, flink_home, "off")
        cli(d, "reload")
        print(f"no jobs, metrics off: agent max RSS {bare_off[0]:.1f} MiB, CPU {bare_off[1]:.3f}% of a core over {a.window} s")
        print(f"no jobs, metrics on, scraped every 15 s: agent max RSS {bare_on[0]:.1f} MiB, CPU {bare_on[1]:.3f}% of a core")
        for i in range(JOBS):
            cli(d, "jobs", "deploy", f"job-{i:02d}", "--jar", jar, "--entry-class",
                "flinkagent.testjobs.KeyedCounter", "--", f"{d}/counts-{i}.txt", "1")
        deadline = time.monotonic() + 300
        while True:
            s = status(d) or {}
            durable = [j for j in (s.get("checkpoints") or {}).get("jobs", {}).values() if j.get("last_durable")]
            running = [j for j in s.get("jobs", []) if j["state"] == "RUNNING"]
            if len(running) == JOBS and len(durable) >= JOBS:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{len(running)} running, {len(durable)} durable; see {d}/agent.log")
            time.sleep(2)
        print(f"{JOBS} declared jobs running, each with a durable checkpoint")

        off_rss, off_cpu = idle(p.pid, a.window)
        print(f"{JOBS} jobs, metrics off: agent max RSS {off_rss:.1f} MiB, CPU {off_cpu:.3f}% of a core over {a.window} s")

        write_config(d, flink_home, f"127.0.0.1:{METRICS_PORT}")
        cli(d, "reload")
        on_rss, on_cpu = idle(p.pid, a.window, scrape_every=15)
        print(f"{JOBS} jobs, metrics on, scraped every 15 s: agent max RSS {on_rss:.1f} MiB, CPU {on_cpu:.3f}% of a core")

        _, body = scrape()
        series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
        c0, times = cpu_ticks(p.pid), []
        for _ in range(a.scrapes):
            times.append(scrape()[0])
        cpu_ms = (cpu_ticks(p.pid) - c0) / TICK * 1000 / a.scrapes
        times.sort()
        print(f"scrape ({series} series, {len(body)} bytes): median {statistics.median(times) * 1000:.2f} ms, "
              f"p99 {times[int(len(times) * 0.99) - 1] * 1000:.2f} ms, agent CPU {cpu_ms:.2f} ms per scrape "
              f"({a.scrapes} scrapes)")
        goal = lambda rss, cpu: "met" if rss < 15 and cpu < 0.5 else "MISSED"
        print(f"goals (RSS < 15 MiB, idle CPU < 0.5% of a core) with metrics on: no jobs {goal(*bare_on)}, "
              f"{JOBS} jobs {goal(on_rss, on_cpu)} (their checkpoints upload every 10 s: not idle)")
        print(f"ratio on/off: idle CPU {bare_on[1] / max(bare_off[1], 1e-9):.2f}x (no jobs), "
              f"{on_cpu / max(off_cpu, 1e-9):.2f}x ({JOBS} jobs); RSS {bare_on[0] / bare_off[0]:.2f}x, {on_rss / off_rss:.2f}x")
    finally:
        cli(d, "shutdown", check=False)
        try:
            p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()


if __name__ == "__main__":
    sys.exit(main())
