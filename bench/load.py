"""A small, bounded HTTP/1.1 load generator: keep-alive connections, a fixed number of requests,
per-request latency. Runs in its own process (pinned to its own core by run.py). Every response's
status and body are kept, by request index, so that run.py can check each timed answer after the
clock has stopped."""

from __future__ import annotations

import asyncio
import json
import sys
import time


def post_request(port: int, path: str, body: dict, headers: dict[str, str]) -> bytes:
    """One HTTP/1.1 POST of a JSON body, as bytes on the wire."""
    payload = json.dumps(body).encode()
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
    ]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def _one_connection(
    host: str,
    port: int,
    requests: list[tuple[int, bytes]],
    latencies: list[float],
    statuses: dict[int, int],
    answers: dict[int, tuple[int, bytes]],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while requests:
            index, request = requests.pop()
            started = time.perf_counter()
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
            answers[index] = (status, body)
    finally:
        writer.close()


async def run(host: str, port: int, requests: list[bytes], concurrency: int) -> dict:
    pending = list(reversed(list(enumerate(requests))))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    answers: dict[int, tuple[int, bytes]] = {}
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _one_connection(host, port, pending, latencies, statuses, answers)
            for _ in range(concurrency)
        )
    )
    elapsed = time.perf_counter() - started
    return {
        "elapsed": elapsed,
        "latencies": latencies,
        "statuses": statuses,
        # [status, body] by request index: every answer, checked by run.py after timing.
        "answers": [
            [status, body.decode("utf-8", "replace")]
            for status, body in (answers.get(i, (0, b"")) for i in range(len(requests)))
        ],
    }


def main() -> None:
    spec = json.loads(sys.stdin.read())
    requests = [bytes.fromhex(item) for item in spec["requests"]]
    result = asyncio.run(run(spec["host"], spec["port"], requests, spec["concurrency"]))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
