#!/usr/bin/env python3
"""Fault drills, each during a flash sale: does every accepted request get its answer?

    .venv/bin/python bench/drills.py [--drill kill-worker,term-web,restart-redis,
        restart-mariadb,stop-beat] [--fault-at 20] [flash-sale options]

Each drill is a bench/flash_sale.py sale (own cluster, own database, dropped
afterwards) with one fault injected --fault-at seconds into the sale:

  kill-worker      kill -9 of one Celery worker's process group (the worker and
                   its prefork children); after 5 s `cluster scale` starts a
                   replacement, as an operator (or Kubernetes) would.
  term-web         SIGTERM to one web process: it drains (sockets told to
                   reconnect, transports dropped); buyers reconnect through nginx
                   to the other one, re-join and re-send. Then `cluster scale`
                   brings the web count back.
  restart-redis    `redis-cli shutdown nosave`, then redis-server started again
                   (no persistence: the Celery queue, the request ledger, rate
                   limits and presence are lost). SHARED SERVICE: other people's
                   tests use it; it is always restarted (try/finally).
  restart-mariadb  `mysqladmin shutdown`, then mariadbd started again and
                   waited for. SHARED SERVICE, same care.
  stop-beat        SIGTERM to beat, 60 s without it (no sweeps, no re-queue of
                   overdue requests, no reconciliation), then `cluster scale`
                   starts it again.

The drills set TASK_VISIBILITY_TIMEOUT_SECONDS=10 and REQUEUE_AFTER_SECONDS=10
(defaults 60 and 30) so that the product's own recovery paths act within a
drill. For each drill: requests accepted vs answered (and which were not), the
audit verdict, seats sold twice, and the time to recover: from the fault until
answers flow again at half the rate of the 10 s before it (3 s average). The
buyers' client recovers only as API.md says (re-send after a reconnect, same
request_id); a request accepted and then lost while the socket stayed up is
reported as lost, not papered over by the bench. Written to
bench/results/<ts>-drills/<drill>/ and a summary in bench/results/<ts>-drills/.
"""
import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import flash_sale  # noqa: E402
import report as rpt  # noqa: E402
from flash_sale import Sale  # noqa: E402
from report import summarize  # noqa: E402
from runs import results_dir, say, stop_cleanly_on_signals  # noqa: E402

from deploy.local.launcher import pid_alive  # noqa: E402

REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port",
               "6379", "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
               "--logfile", "/var/log/redis/ci.log"]
MARIADB_START = ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec",
                 "/usr/sbin/mariadbd"]


def _wait(check, timeout, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False


def _ok(cmd):
    return subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0


def redis_up():
    with contextlib.suppress(Exception):
        return subprocess.run(["redis-cli", "ping"], capture_output=True, text=True,
                              timeout=5).stdout.strip() == "PONG"
    return False


def mariadb_up():
    with contextlib.suppress(Exception):
        return _ok(["mysqladmin", "-uroot", "ping"])
    return False


class Fault:
    at = 20.0
    name = ""

    def __init__(self, at):
        self.at = at


class KillWorker(Fault):
    name = "kill-worker"

    def inject(self, sale):
        st = sale.cluster.state()
        victim = st["workers"][0]
        t = time.time()
        os.killpg(victim["pid"], signal.SIGKILL)
        sale.note(f"kill -9 worker pid {victim['pid']} (and its prefork children)")
        time.sleep(5)
        sale.cluster.scale(workers=len(st["workers"]))
        t_back = time.time()
        sale.note(f"replacement worker started after {t_back - t:.1f}s")
        return {"t_fault": t, "t_restored": t_back, "victim_pid": victim["pid"]}


class TermWeb(Fault):
    name = "term-web"

    def inject(self, sale):
        st = sale.cluster.state()
        victim = st["web"][0]
        t = time.time()
        os.kill(victim["pid"], signal.SIGTERM)
        sale.note(f"SIGTERM web pid {victim['pid']}")
        gone = _wait(lambda: not pid_alive(victim["pid"]), 60)
        t_gone = time.time()
        sale.note(f"web pid {victim['pid']} {'exited' if gone else 'still there'} after "
                  f"{t_gone - t:.1f}s")
        sale.cluster.scale(web=len(st["web"]))
        t_back = time.time()
        sale.note(f"web count restored after {t_back - t:.1f}s")
        return {"t_fault": t, "t_drained": t_gone, "t_restored": t_back,
                "victim_pid": victim["pid"]}


def _restart(sale, what, stop, is_up, start, down_timeout, up_timeout, pause=0.0):
    """Stop a shared service, then start it again whatever happened (try/finally)."""
    t = time.time()
    try:
        subprocess.run(stop, capture_output=True, timeout=120)
        _wait(lambda: not is_up(), down_timeout)
        sale.note(f"{what} shut down in {time.time() - t:.1f}s")
        time.sleep(pause)
    finally:
        if not is_up():
            subprocess.run(start, capture_output=True, timeout=30)
        back = _wait(is_up, up_timeout)
    t_back = time.time()
    sale.note(f"{what} {'answering' if back else 'NOT answering'} again "
              f"{t_back - t:.1f}s after the shutdown")
    return {"t_fault": t, "t_restored": t_back, "restored": back}


class RestartRedis(Fault):
    name = "restart-redis"

    def inject(self, sale):
        return _restart(sale, "Redis (nosave)", ["redis-cli", "shutdown", "nosave"], redis_up,
                        REDIS_START, 10, 60, pause=2)


class RestartMariaDB(Fault):
    name = "restart-mariadb"

    def inject(self, sale):
        return _restart(sale, "MariaDB", ["mysqladmin", "-uroot", "shutdown"], mariadb_up,
                        MARIADB_START, 30, 120)


class StopBeat(Fault):
    name = "stop-beat"
    pause = 60.0

    def inject(self, sale):
        st = sale.cluster.state()
        t = time.time()
        os.kill(st["beat"]["pid"], signal.SIGTERM)
        sale.note(f"beat (pid {st['beat']['pid']}) stopped for {self.pause:.0f}s")
        time.sleep(self.pause)
        sale.cluster.scale(workers=len(st["workers"]))   # restarts an exited beat
        t_back = time.time()
        sale.note(f"beat started again after {t_back - t:.1f}s")
        return {"t_fault": t, "t_restored": t_back}


DRILLS = {c.name: c for c in (KillWorker, TermWeb, RestartRedis, RestartMariaDB, StopBeat)}


def recovery(series, t0, fault_log, window=10, need=0.5):
    """Seconds from the fault until answers flow at `need` of the rate before it (3 s mean)."""
    if not fault_log.get("t_fault"):
        return None, None
    names = ("hold_answered", "pay_answered", "release_answered")
    per = {s: sum(c.get(n, 0) for n in names) for s, c in series.items()}
    f = int(fault_log["t_fault"] - t0)
    before = [per.get(s, 0) for s in range(f - window, f)]
    base = sum(before) / len(before) if before else 0
    if base <= 0:
        return None, base
    last = max(per) if per else f
    dip = False
    for s in range(f, last + 1):
        mean3 = sum(per.get(x, 0) for x in range(s, s + 3)) / 3
        if mean3 < need * base:
            dip = True
        elif dip or s > f + 2:
            return (s - f if dip else 0), base
    return None, base


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    flash_sale.add_arguments(parser)
    parser.add_argument("--drill", default=",".join(DRILLS),
                        help=f"comma-separated, from: {', '.join(DRILLS)}")
    parser.add_argument("--fault-at", type=float, default=20.0,
                        help="seconds into the sale (default 20)")
    parser.add_argument("--beat-pause", type=float, default=60.0)
    parser.set_defaults(seats=30000, buyers=1000, duration=60, drain=60, db_limit_seconds=0)
    args = parser.parse_args()
    stop_cleanly_on_signals()
    names = [d.strip() for d in args.drill.split(",") if d.strip()]
    unknown = [d for d in names if d not in DRILLS]
    if unknown:
        raise SystemExit(f"unknown drill(s): {unknown}")
    out = results_dir("drills")
    command = " ".join([".venv/bin/python", "bench/drills.py", *sys.argv[1:]])
    summary = []
    for name in names:
        fault = DRILLS[name](args.fault_at)
        if name == "stop-beat":
            fault.pause = args.beat_pause
        d_out = out / name
        d_out.mkdir()
        say(f"=== drill {name} ===")
        env = {"TASK_VISIBILITY_TIMEOUT_SECONDS": "10", "REQUEUE_AFTER_SECONDS": "10"}
        sale = Sale(args, d_out, name=f"drill {name}", fault=fault, extra_env=env)
        try:
            result = sale.run()
        finally:
            # Whatever happened, the shared services must be up again.
            if not redis_up():
                say("Redis is down after the drill: starting it")
                subprocess.run(REDIS_START, capture_output=True, timeout=30)
            if not mariadb_up():
                say("MariaDB is down after the drill: starting it")
                subprocess.run(MARIADB_START, capture_output=True, timeout=30)
                _wait(mariadb_up, 120)
        priv = result.get("_series") or {}
        rec, base = recovery(priv.get("series", {}), priv.get("t0", 0), result["fault"])
        result["recovery_s"] = rec
        result["answers_per_s_before_fault"] = round(base, 1) if base else base
        summarize(result, d_out, f"Drill: {name}", command)
        lost = result["unanswered"]
        line = {"drill": name, "accepted": result["accepted"], "answered": result["answered"],
                "unanswered": lost, "audit_clean": result["audit"]["clean"],
                "audit_problems": result["audit"]["problems"],
                "seats_sold_twice": result["seats_sold_twice"],
                "recovery_s": rec, "answers_per_s_before_fault": result[
                    "answers_per_s_before_fault"],
                "fault": {k: v for k, v in result["fault"].items()},
                "resend_refusals": len(result.get("resend_refusals") or []),
                "reconnects": result["clients"]["counts"].get("reconnects", 0),
                "shed": result["clients"]["counts"].get("shed", 0),
                "verdict": "PASS" if (lost == 0 and result["audit"]["clean"]
                                      and result["seats_sold_twice"] == 0) else "FAIL",
                "notes": result["notes"]}
        if lost:
            line["gap"] = (f"{lost} accepted requests never answered "
                           f"(kinds: {sorted({u['kind'] for u in result['unanswered_sample']})})")
        summary.append(line)
        say(f"drill {name}: {line['verdict']}: accepted {line['accepted']}, answered "
            f"{line['answered']}, unanswered {lost}, audit "
            f"{'clean' if line['audit_clean'] else 'PROBLEMS'}, recovery {rec}s")
    rpt.dump(out / "drills.json", summary)
    rows = [(s["drill"], f"{s['verdict']}: accepted {s['accepted']}, answered {s['answered']}, "
                         f"unanswered {s['unanswered']}; audit "
                         f"{'clean' if s['audit_clean'] else 'PROBLEMS'}; sold twice "
                         f"{s['seats_sold_twice']}; recovery {s['recovery_s']} s; reconnects "
                         f"{s['reconnects']}; shed {s['shed']}"
             + (f"; **gap: {s['gap']}**" if s.get("gap") else "")) for s in summary]
    rpt.write_markdown(out / "drills.md", "Fault drills",
                       [("Command", f"```\n{command}\n```"), ("Results", rows),
                        ("Per drill", "Each drill's folder has report.md, report.json and "
                                      "plot.png; notes list what the drill did when.")])
    print("\n== drills ==")
    for k, v in rows:
        print(f"  {k}: {v}")
    print(f"  written: {out / 'drills.json'}, drills.md")
    sys.exit(0 if all(s["verdict"] == "PASS" for s in summary) else 1)


if __name__ == "__main__":
    main()
