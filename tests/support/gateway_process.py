"""The ``gateway`` command as a user runs it: a process of its own, no inherited settings."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx


def run_gateway(*args: str, env: dict | None = None, timeout: float = 120) -> Any:
    """Run the ``gateway`` command as a user would: its own process, no inherited settings."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    environ = {
        k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_") and k != "DATABASE_URL"
    }
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=timeout,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )


@contextlib.contextmanager
def gateway_serve(env: Any, identity: Any = None, **variables: str) -> Iterator[tuple[Any, str]]:
    """The real ``gateway serve`` in a process of its own, production settings from the
    environment (``variables`` add to them), ready when this yields (process, base URL). Its
    request log (stdout) is dropped; its stderr is kept for the test to read. ``identity``
    (default ``env.identity``) must be one serve accepts (``production_identity``)."""
    identity = identity or env.identity
    import os
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_") and k != "DATABASE_URL"
    }
    environ.update(
        {
            "DATABASE_URL": env.app_url,
            "GATEWAY_JWT_ISSUER": identity.issuer,
            "GATEWAY_JWT_AUDIENCE": identity.audience,
            "GATEWAY_JWKS_FILE": str(identity.jwks_file),
            "GATEWAY_MEDIA_SIGNING_KEYS": identity.media_keys(),
            "GATEWAY_MEDIA_ROOT": str(env.media_root),
            "GATEWAY_FREE_FORM_DOCUMENTS": "everyone",
            "GATEWAY_DB_STATEMENT_TIMEOUT_MS": "60000",
            **variables,
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline, "gateway serve did not become ready"
            time.sleep(0.1)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)
