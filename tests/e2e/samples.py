#!/usr/bin/env python3
"""Reads what the sampler of tests/e2e/lib.sh recorded around one event and prints one JSON object.

    samples.py FILE [--job JID] [--event EPOCH_US]

FILE has one line per 200 ms tick: epoch microseconds, Flink's `GET /jobs/overview` (or `-`),
then `<jid> <GET /jobs/<jid>/checkpoints>` per listed job, tab-separated.

Printed (times in milliseconds):
  samples, period_ms {median, max}    how many ticks, how regular
  jobs                                every Flink job id seen, in order of appearance
  states                              sample count per state of the job(s) listed ("none": the
                                      request failed or listed no job)
  violations                          with --job: ticks where the overview was not exactly that
                                      one job RUNNING (first five, "t+ms: what")
  running_gap_ms                      the longest stretch without a RUNNING sample of any job,
                                      measured between RUNNING samples (and the window's ends):
                                      ~200 when nothing was missed
  restored                            "jid:checkpoint" for every job Flink says was restored
  completed {first, last}             counts.completed of the (--job or last) job, first and
                                      last sample that had it
  checkpoints_in_window               checkpoints of any job completed during the window
  checkpoint_gap_ms                   the longest time between consecutive completed checkpoints
                                      (of any job, by acknowledgement time) within the window
  checkpoint_gap_at_event_ms          with --event: the longest gap between consecutive completed
                                      checkpoints from the last one before the event to the end of
                                      the window (null: none completed after the event)
  checkpoint_gap_median_ms            the usual time between completions in the window (about
                                      the checkpoint interval)
"""
import argparse
import json
import statistics
import sys


def load(path):
    samples = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if not parts[0].isdigit():
                continue
            overview = parse(parts[1]) if len(parts) > 1 else None
            checkpoints = {}
            for part in parts[2:]:
                jid, _, body = part.partition(" ")
                checkpoints[jid] = parse(body)
            samples.append((int(parts[0]) / 1000.0, overview, checkpoints))
    return samples


def parse(text):
    if text in ("", "-"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def completions(checkpoints):
    """(jid, checkpoint id, acknowledgement ms) of every completed checkpoint a sample shows."""
    found = set()
    for jid, ck in checkpoints.items():
        if not isinstance(ck, dict):
            continue
        entries = list(ck.get("history") or [])
        latest = (ck.get("latest") or {}).get("completed")
        if latest:
            entries.append(dict(latest, status="COMPLETED"))
        for e in entries:
            if e.get("status") == "COMPLETED" and e.get("latest_ack_timestamp"):
                found.add((jid, e["id"], float(e["latest_ack_timestamp"])))
    return found


def analyse(samples, job=None, event_ms=None):
    if not samples:
        return {"samples": 0}
    times = [t for t, _, _ in samples]
    start, end = times[0], times[-1]
    steps = [b - a for a, b in zip(times, times[1:])] or [0.0]
    jobs, states, violations, running_at = [], {}, [], []
    restored, completed, done = set(), [], set()
    for t, overview, checkpoints in samples:
        listed = (overview or {}).get("jobs") or []
        for j in listed:
            if j.get("jid") not in jobs:
                jobs.append(j.get("jid"))
        for state in [j.get("state") for j in listed] or ["none"]:
            states[state] = states.get(state, 0) + 1
        if any(j.get("state") == "RUNNING" for j in listed):
            running_at.append(t)
        if job is not None:
            got = [(j.get("jid"), j.get("state")) for j in listed]
            if got != [(job, "RUNNING")]:
                violations.append(f"t+{t - start:.0f}ms: {got or 'no answer'}")
        for jid, ck in checkpoints.items():
            if not isinstance(ck, dict):
                continue
            r = (ck.get("latest") or {}).get("restored")
            if r:
                restored.add(f"{jid}:{r.get('id')}")
            if jid == (job or jid) and isinstance(ck.get("counts"), dict):
                completed.append(ck["counts"].get("completed"))
        done |= completions(checkpoints)
    acks = sorted({ack for _, _, ack in done})
    before_window = [a for a in acks if a < start]
    in_window = [a for a in acks if start <= a <= end]
    window = before_window[-1:] + in_window
    gaps = [b - a for a, b in zip(window, window[1:])]
    edges = [start] + running_at + [end]
    at_event = None
    if event_ms is not None:
        # Every gap that ends after the event, from the last completion before it on: a
        # restart's downtime may begin some seconds after the event (a graceful stop first).
        prev = [a for a in acks if a <= event_ms][-1:]
        after = prev + [a for a in acks if event_ms < a <= end]
        if len(after) >= 2:
            at_event = max(b - a for a, b in zip(after, after[1:]))
    return {
        "samples": len(samples),
        "window_ms": round(end - start),
        "period_ms": {"median": round(statistics.median(steps)), "max": round(max(steps))},
        "jobs": jobs,
        "states": states,
        "violations": violations[:5],
        "violation_count": len(violations),
        "running_gap_ms": round(max(b - a for a, b in zip(edges, edges[1:]))) if len(edges) > 1 else 0,
        "restored": sorted(restored),
        "completed": {"first": completed[0] if completed else None,
                      "last": completed[-1] if completed else None},
        "checkpoints_in_window": len(in_window),
        "checkpoint_gap_ms": round(max(gaps)) if gaps else None,
        "checkpoint_gap_at_event_ms": round(at_event) if at_event is not None else None,
        "checkpoint_gap_median_ms": round(statistics.median(gaps)) if gaps else None,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--job", help="the Flink job id every sample must show RUNNING, alone")
    parser.add_argument("--event", type=int, help="when the event happened, epoch microseconds")
    args = parser.parse_args()
    event_ms = args.event / 1000.0 if args.event is not None else None
    json.dump(analyse(load(args.file), args.job, event_ms), sys.stdout)
    print()


if __name__ == "__main__":
    main()
