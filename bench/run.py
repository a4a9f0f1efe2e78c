#!/usr/bin/env python3
"""Load benchmark: the generated API (`m start`, with authentication, row scope and request logs)
against the hand-written axum baseline (`m-bench baseline`) on the same table and database, run
side by side and alternating, for get-by-id, list-20 and create, on SQLite and PostgreSQL.

Prints req/s, p50/p99 latency, non-2xx responses, and CPU time per request of the server and of
PostgreSQL (from /proc/<pid>/stat before and after each run), plus the generated/baseline ratios.

Usage: python3 bench/run.py [sqlite|postgres|all|rls]
`rls` measures the generated API on PostgreSQL with `M_DB_RLS` off, then on, against a database
owned by an ordinary role (row security does not bind superusers), and prints the on/off ratios.
Environment: M_BENCH_DURATION (default 15s), M_BENCH_CONNS (64), M_BENCH_ROWS (100000),
M_BENCH_PG (postgres://postgres@127.0.0.1:5432), needs `wrk` (Debian package).
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
M = os.path.join(TARGET, "release", "m")
BENCH = os.path.join(TARGET, "release", "m-bench")
DURATION = os.environ.get("M_BENCH_DURATION", "15s")
CONNS = os.environ.get("M_BENCH_CONNS", "64")
ROWS = int(os.environ.get("M_BENCH_ROWS", "100000"))
PG = os.environ.get("M_BENCH_PG", "postgres://postgres@127.0.0.1:5432")
SECRET = "benchmark-secret-benchmark-secret-0123"
TICK = os.sysconf("SC_CLK_TCK")
WORK = "/tmp/m-bench"


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def postgres_ticks():
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "postgres":
                    continue
            total += cpu_ticks(pid)
        except OSError:
            pass
    return total


def wait_port(port):
    for _ in range(200):
        try:
            import socket
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def wrk(script, port, env):
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNS}", f"-d{DURATION}", "--latency", "-s", os.path.join(ROOT, "bench", "lua", script), f"http://127.0.0.1:{port}"],
        env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    lat = dict(re.findall(r"\s+(50|99)%\s+([\d.]+\w+)", out))
    return requests, rps, int(non2xx.group(1)) if non2xx else 0, lat.get("50", "?"), lat.get("99", "?")


def run_backend(backend):
    os.makedirs(WORK, exist_ok=True)
    if backend == "sqlite":
        shutil.rmtree(os.path.join(WORK, "sqlite"), ignore_errors=True)
        url = f"sqlite://{WORK}/sqlite/m.db"
    else:
        subprocess.run(["psql", PG + "/postgres", "-qc", "DROP DATABASE IF EXISTS m_bench WITH (FORCE)"], check=True)
        subprocess.run(["psql", PG + "/postgres", "-qc", "CREATE DATABASE m_bench"], check=True)
        url = PG + "/m_bench"
    ids = os.path.join(WORK, f"ids-{backend}.txt")
    print(f"\n## {backend}: seeding {ROWS} customers", flush=True)
    subprocess.run([BENCH, "seed", url, str(ROWS), ids], check=True)
    if backend == "postgres":
        subprocess.run(["psql", url, "-qc", "VACUUM ANALYZE"], check=True)

    token = subprocess.run([BENCH, "token", SECRET, "bench@example.com"], capture_output=True, text=True, check=True).stdout.strip()
    log = open(os.path.join(WORK, f"server-{backend}.log"), "w")
    gen = subprocess.Popen([M, "start", "--port", "8101"], cwd=WORK, stdout=log, stderr=log,
                           env={**os.environ, "DATABASE_URL": url, "M_JWT_SECRET": SECRET, "M_LOG_LEVEL": "info",
                                "M_RATE_LIMIT_API": "100000000"})
    base = subprocess.Popen([BENCH, "baseline", url, "8102"], stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_port(8101)
        wait_port(8102)
        targets = {
            "baseline": (base.pid, 8102, {"M_BENCH_PREFIX": "/customer", "M_BENCH_LIST_PATH": "/customer", "M_BENCH_TOKEN": ""}),
            "generated": (gen.pid, 8101, {"M_BENCH_PREFIX": "/api/v1/Customer", "M_BENCH_LIST_PATH": "/api/v1/Customer?total=false", "M_BENCH_TOKEN": token}),
        }
        rows = []
        for scenario, script in [("get by id", "get.lua"), ("list 20", "list.lua"), ("create", "create.lua")]:
            result = {}
            for name in ["baseline", "generated"]:
                pid, port, env = targets[name]
                env = {**env, "M_BENCH_IDS": ids}
                s0, p0 = cpu_ticks(pid), postgres_ticks()
                requests, rps, errors, p50, p99 = wrk(script, port, env)
                s1, p1 = cpu_ticks(pid), postgres_ticks()
                ok = max(requests - errors, 1)
                server_us = (s1 - s0) / TICK / ok * 1e6
                # Backends that exit during a run (autovacuum workers) take their ticks with them;
                # a negative sum is reported as unknown.
                pg_us = (p1 - p0) / TICK / ok * 1e6 if backend == "postgres" and p1 >= p0 else float("nan")
                result[name] = (rps, p50, p99, errors, server_us, pg_us)
                rows.append(f"| {backend} | {scenario} | {name} | {rps:,.0f} | {p50} | {p99} | {errors} | {server_us:.0f} | {pg_us:.0f} |")
                print(rows[-1], flush=True)
            b, g = result["baseline"], result["generated"]
            ratio = f"| {backend} | {scenario} | ratio generated/baseline | {g[0] / b[0]:.2f}x req/s | | | | {g[4] / max(b[4], 1e-9):.2f}x server CPU | {g[5] / b[5] if b[5] else float('nan'):.2f}x PG CPU |"
            rows.append(ratio)
            print(ratio, flush=True)
        return rows
    finally:
        for p in (gen, base):
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)


def run_rls():
    """The generated API with M_DB_RLS off, then on, on one database owned by role m_bench."""
    os.makedirs(WORK, exist_ok=True)
    admin = PG + "/postgres"
    subprocess.run(["psql", admin, "-qc", "DROP DATABASE IF EXISTS m_bench_rls WITH (FORCE)"], check=True)
    subprocess.run(["psql", admin, "-qc", "DO $$ BEGIN CREATE ROLE m_bench LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$"], check=True)
    subprocess.run(["psql", admin, "-qc", "CREATE DATABASE m_bench_rls OWNER m_bench"], check=True)
    host = PG.split("@", 1)[1] if "@" in PG else PG.split("://", 1)[1]
    url = f"postgres://m_bench@{host}/m_bench_rls"
    ids = os.path.join(WORK, "ids-rls.txt")
    print(f"\n## postgres, M_DB_RLS off then on: seeding {ROWS} customers", flush=True)
    subprocess.run([BENCH, "seed", url, str(ROWS), ids], check=True)
    subprocess.run(["psql", url, "-qc", "VACUUM ANALYZE"], check=True)
    token = subprocess.run([BENCH, "token", SECRET, "bench@example.com"], capture_output=True, text=True, check=True).stdout.strip()
    env = {"M_BENCH_PREFIX": "/api/v1/Customer", "M_BENCH_LIST_PATH": "/api/v1/Customer?total=false", "M_BENCH_TOKEN": token, "M_BENCH_IDS": ids}
    results = {}
    rows = []
    for rls in ["off", "on"]:
        log = open(os.path.join(WORK, f"server-rls-{rls}.log"), "w")
        gen = subprocess.Popen([M, "start", "--port", "8103"], cwd=WORK, stdout=log, stderr=log,
                               env={**os.environ, "DATABASE_URL": url, "M_JWT_SECRET": SECRET, "M_LOG_LEVEL": "info",
                                    "M_RATE_LIMIT_API": "100000000", "M_DB_RLS": rls})
        try:
            wait_port(8103)
            for scenario, script in [("get by id", "get.lua"), ("list 20", "list.lua"), ("create", "create.lua")]:
                s0, p0 = cpu_ticks(gen.pid), postgres_ticks()
                requests, rps, errors, p50, p99 = wrk(script, 8103, env)
                s1, p1 = cpu_ticks(gen.pid), postgres_ticks()
                ok = max(requests - errors, 1)
                server_us = (s1 - s0) / TICK / ok * 1e6
                pg_us = (p1 - p0) / TICK / ok * 1e6 if p1 >= p0 else float("nan")
                results[(rls, scenario)] = (rps, server_us, pg_us)
                rows.append(f"| postgres | {scenario} | M_DB_RLS={rls} | {rps:,.0f} | {p50} | {p99} | {errors} | {server_us:.0f} | {pg_us:.0f} |")
                print(rows[-1], flush=True)
        finally:
            gen.send_signal(signal.SIGTERM)
            gen.wait(timeout=30)
    for scenario in ["get by id", "list 20", "create"]:
        on, off = results[("on", scenario)], results[("off", scenario)]
        rows.append(f"| postgres | {scenario} | ratio on/off | {on[0] / off[0]:.2f}x req/s | | | | {on[1] / max(off[1], 1e-9):.2f}x server CPU | {on[2] / off[2] if off[2] else float('nan'):.2f}x PG CPU |")
        print(rows[-1], flush=True)
    return rows


def main():
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    subprocess.run(["cargo", "build", "--release", "-p", "m", "-p", "m-bench"], cwd=ROOT, check=True)
    rows = []
    if which == "rls":
        rows += run_rls()
    for backend in (["sqlite", "postgres"] if which == "all" else [] if which == "rls" else [which]):
        rows += run_backend(backend)
    print(f"\nwrk -t2 -c{CONNS} -d{DURATION}; {ROWS} rows; CPU per successful request in microseconds\n")
    print("| database | request | server | req/s | p50 | p99 | non-2xx | server CPU µs/req | PostgreSQL CPU µs/req |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
