"""Where one query's CPU goes in the gateway: serial requests in one process, under cProfile.

    .venv/bin/python -m bench.profile Q2

Seeds (or reuses) the bench's database on durable PostgreSQL, builds the gateway in production
mode in this process with the bench's settings, sends the query by hash for 200 different
patients over the app's ASGI interface (no sockets, so the figures are the app's alone), and
prints the app's CPU per request (process time, the profiler off; the median of several
chunks) and the cProfile functions with the most cumulative and own time (the profiler on; its
overhead inflates them, so read them as proportions). The database's CPU is not here:
``bench.run`` counts it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import statistics
import time

import httpx

from bench.run import (
    OPERATIONS,
    WORK,
    build_requests,
    callers,
    gateway_environment,
    prepare_database,
)


async def _run(args: argparse.Namespace) -> None:
    from gateway.dev.embedded import EmbeddedPostgres
    from gateway.dev.identity import DevIdentity
    from gateway.guards.trusted_documents import build_manifest
    from resolvers import build_schema

    WORK.mkdir(parents=True, exist_ok=True)
    identity = DevIdentity.load_or_create(WORK / "identity")
    cluster = EmbeddedPostgres(WORK / "profile", fast=False)
    server_url = cluster.start()
    if os.cpu_count() and os.cpu_count() > 1:  # the app on core 0, PostgreSQL on core 1
        from bench.cpu import pin, postmaster_pid

        os.sched_setaffinity(0, {0})
        pin(postmaster_pid(cluster.data), "1")
    try:
        admin_url, app_url = await prepare_database(server_url, 200, 40, 50, identity.issuer)
        people = await callers(admin_url, 200)
        tokens = {p["subject"]: identity.token(p["subject"], ttl=3600) for p in people}
        support = identity.token("support-0001", ttl=3600)
        built = build_manifest([OPERATIONS], build_schema()._schema)
        (WORK / "profile-manifest.json").write_text(json.dumps(built))
        manifest = {o["name"]: o["id"] for o in built["operations"]}
        environment = gateway_environment(app_url, identity, WORK / "profile-manifest.json", 10)
        os.environ.update({**environment, "GATEWAY_LOG_LEVEL": "warning"})
        from gateway.app import create_app_from_environment

        app = create_app_from_environment()
        raw = build_requests("gateway", 0, args.query, people, tokens, support, manifest, 200)
        requests = []
        for request in raw:
            head, _, body = request.partition(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            headers = dict(line.split(": ", 1) for line in lines[1:])
            headers.pop("Content-Length", None)
            requests.append((headers, body))
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://gateway") as client,
        ):

            async def send(count: int) -> None:
                for index in range(count):
                    headers, body = requests[index % len(requests)]
                    response = await client.post("/graphql", content=body, headers=headers)
                    if response.status_code != 200 or b'"errors"' in response.content:
                        raise SystemExit(f"{response.status_code}: {response.text[:500]}")

            await send(400)  # warm-up
            chunks = []
            for _ in range(args.chunks):
                started = time.process_time()
                await send(args.requests)
                chunks.append((time.process_time() - started) / args.requests * 1000)
            chunks.sort()
            plain = statistics.median(chunks)
            profiler = cProfile.Profile()
            profiler.enable()
            await send(args.requests)
            profiler.disable()
        print(
            f"{args.query}: {plain:.2f} ms of CPU per request (app and in-process client; median "
            f"of {args.chunks} x {args.requests} requests, "
            f"min {chunks[0]:.2f}, max {chunks[-1]:.2f})"
        )
        for order in ("cumulative", "tottime"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(args.top)
            print(out.getvalue())
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("query", nargs="?", default="Q2")
    parser.add_argument("--requests", type=int, default=200, help="per chunk")
    parser.add_argument("--chunks", type=int, default=7)
    parser.add_argument("--top", type=int, default=45)
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
