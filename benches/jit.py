#!/usr/bin/env python3
"""What the agent's JIT thresholds (`supervisor.delay_c2`, see agent/src/supervisor/jit.rs) cost
a running job: the same CPU-bound job on the same single-node cluster with them and without.

Each run starts the agent on a new state dir (with `delay_c2 = true`, then `false`, alternating
so that machine noise hits both alike), deploys the Shuffle test job (an unthrottled sequence,
200-byte records, keyed, counted, discarded; parallelism 1) and reads Flink's numRecordsIn
counter of the keyed operator: records/s over the first 20 s after the counter first shows (the
REST API fetches metrics every 10 s, so some seconds after the operator started: warm-up, where
C2 comes later with the thresholds) and over the next `--secs` (steady state). Prints both per
run, medians per variant, and last the steady-state ratio with/without (1.0: the lever costs a
running job nothing).

usage: benches/jit.py [--runs N] [--secs S] [--agent BIN]   (FLINK_HOME, the agent built in release)
"""
import argparse, os, shutil, statistics, subprocess, sys, tempfile, time

import startup
from rto import build_job, get, wait

REST = startup.PORTS["rest"]


def records(jid, vid):
    """The keyed operator's numRecordsIn, and when Flink read it. The REST API serves metrics it
    fetches from the TaskManager at most every 10 s, when a request finds them older: the request
    before a new value shows is the one that had it fetched."""
    def read():
        m = get(REST, f"/jobs/{jid}/vertices/{vid}/subtasks/metrics?get=numRecordsIn&agg=sum", timeout=2) or []
        return next((x.get("sum", 0) for x in m if x["id"] == "numRecordsIn"), 0)
    old, asked = read(), time.monotonic()
    while True:
        time.sleep(0.25)
        now, value = time.monotonic(), read()
        if value != old:
            return value, asked
        asked = now


def measure(flink_home, jar, delay_c2, secs):
    p, d, _, _ = startup.run_agent(flink_home, extra=f"[supervisor]\ndelay_c2 = {str(delay_c2).lower()}\n")
    try:
        subprocess.run([startup.AGENT, "jobs", "deploy", "shuffle", "--jar", jar, "--entry-class",
                        "flinkagent.testjobs.Shuffle", "--parallelism", "1", "--socket", f"{d}/agent.sock",
                        "--", "200"], check=True)
        jid = wait("job", 60, lambda: next((j["id"] for j in (get(REST, "/jobs") or {}).get("jobs", [])
                                             if j["status"] == "RUNNING"), None))
        vid = wait("keyed vertex", 120, lambda: next((v["id"] for v in (get(REST, f"/jobs/{jid}") or {}).get("vertices", [])
                                                      if v["name"].startswith("keyed") and v["status"] == "RUNNING"), None))
        windows, (n0, t0) = [], records(jid, vid)
        for length in (20, secs):
            time.sleep(max(0.0, t0 + length - time.monotonic()))
            n1, t1 = records(jid, vid)
            windows.append((n1 - n0) / (t1 - t0))
            n0, t0 = n1, t1
        return windows
    finally:
        startup.stop_agent(p, d)
        startup.wait_port_free(REST)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--secs", type=int, default=60, help="the steady-state window, after 20 s of warm-up")
    ap.add_argument("--agent", help="the agent binary to measure (default: the release build)")
    a = ap.parse_args()
    startup.AGENT = a.agent or startup.AGENT
    flink_home = os.environ.get("FLINK_HOME") or sys.exit("set FLINK_HOME (tests/setup/flink.sh prints it)")
    build = tempfile.mkdtemp(prefix="fa-bench-jit-")
    try:
        jar = build_job(build, flink_home)
        got = {True: [], False: []}
        for i in range(a.runs):
            for delay in (True, False):
                warm, steady = measure(flink_home, jar, delay, a.secs)
                got[delay].append((warm, steady))
                print(f"run {i + 1}, delay_c2 = {str(delay).lower():5}: first 20 s {warm:9.0f} records/s, "
                      f"next {a.secs} s {steady:9.0f} records/s", flush=True)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    med = {k: [statistics.median(x[i] for x in v) for i in (0, 1)] for k, v in got.items()}
    for k in (True, False):
        print(f"delay_c2 = {str(k).lower():5}, median of {a.runs}: first 20 s {med[k][0]:9.0f} records/s, "
              f"steady {med[k][1]:9.0f} records/s")
    print(f"steady state, with the thresholds / without: {med[True][1] / med[False][1]:.2f} "
          f"(first 20 s: {med[True][0] / med[False][0]:.2f})")


if __name__ == "__main__":
    main()
