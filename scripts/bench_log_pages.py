"""Server memory under ten concurrent full ListDeliveryLogs pages (issue #13).

Not a test: seeds ``--rows`` attempts of ``--size``-byte events into a fresh
SQLite database, starts ``<webhooks> serve`` on it (any build: pass another
checkout's ``webhooks`` executable with ``--webhooks`` to compare), and makes
ten concurrent ``ListDeliveryLogs(page_size=500)`` calls with a read key. It
prints the serve process's peak RSS growth (VmHWM), the bytes received and
the wall time.

    .venv/bin/python scripts/bench_log_pages.py --webhooks /path/to/other/.venv/bin/webhooks
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_hardening_pages import seed_big_events
from webhooks.v1 import admin_pb2, admin_pb2_grpc


def _hwm_kib(pid: int) -> int:
    match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    assert match
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--webhooks", default=str(Path(sys.executable).parent / "webhooks"))
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--size", type=int, default=250_000)
    parser.add_argument("--listen", default="127.0.0.1:45051")
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        run = [args.webhooks]
        subprocess.run([*run, "db", "upgrade", "--database-url", url], check=True)
        org = subprocess.run(
            [*run, "orgs", "create", "Bench", "--database-url", url],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        key = subprocess.run(
            [
                *run,
                "keys",
                "create",
                "--org",
                org,
                "--scope",
                "webhooks:read",
                "--database-url",
                url,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        engine = sa.create_engine(url)
        seed_big_events(engine, org, args.rows, args.size)
        engine.dispose()
        serve = subprocess.Popen(
            [
                *run,
                *("serve", "--database-url", url, "--grpc-listen", args.listen),
                *("--metrics-listen", "", "--log-level", "WARNING"),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert serve.stderr is not None
            while "serving gRPC" not in serve.stderr.readline():
                pass
            time.sleep(1.0)
            before = _hwm_kib(serve.pid)
            options = [("grpc.max_receive_message_length", 512 * 1024 * 1024)]
            with grpc.insecure_channel(args.listen, options=options) as channel:
                stub = admin_pb2_grpc.WebhookAdminStub(channel)

                def call(_: int) -> int:
                    page = stub.ListDeliveryLogs(
                        admin_pb2.ListDeliveryLogsRequest(page_size=500),
                        metadata=(("authorization", f"Bearer {key}"),),
                        timeout=300,
                    )
                    return page.ByteSize()

                started = time.perf_counter()
                with ThreadPoolExecutor(args.calls) as pool:
                    sizes = list(pool.map(call, range(args.calls)))
                elapsed = time.perf_counter() - started
            after = _hwm_kib(serve.pid)
        finally:
            serve.terminate()
            serve.wait(timeout=30)
    print(
        f"{args.webhooks}: {args.calls} concurrent pages of up to 500 x {args.size} B: "
        f"page {sizes[0] / 1e6:.1f} MB, serve peak RSS {before / 1024:.0f} -> "
        f"{after / 1024:.0f} MiB (+{(after - before) / 1024:.0f} MiB), {elapsed:.2f} s"
    )


if __name__ == "__main__":
    main()
