#!/usr/bin/env python3
"""Vendor GraphiQL's browser assets into the package, so development mode loads nothing from a CDN.

    python3 scripts/vendor_graphiql.py           # fetch the pinned tarballs, verify, copy, lock
    python3 scripts/vendor_graphiql.py --check   # verify the committed files against the lock

Fetching uses the ordinary npm client (``npm view`` for the registry's integrity, ``npm pack`` for
the tarball). Each tarball's SHA-512 must equal both the integrity pinned below and the one the
registry reports; only then are the listed files copied, byte for byte, into
``src/gateway/web/static/graphiql/vendor/`` with their licences, and ``vendor.lock.json`` records
package, version, integrity, file and SHA-256. The gateway serves those files and a test compares
what it serves with the lock. Standard library only; npm is needed only to re-vendor.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "src" / "gateway" / "web" / "static" / "graphiql" / "vendor"
LOCK = VENDOR / "vendor.lock.json"

# package, version, registry integrity, {file in the tarball: file in VENDOR}
PINS = [
    (
        "graphiql",
        "3.9.0",
        "sha512-rJYFlHdBbug9+YbFSwRVvgfPjCayC7wHecZkx/qB4XLuQPFQZw/yB9pmHFtOJV6RiNBBHro3u1GdocKa3YcGRA==",
        {
            "package/graphiql.min.js": "graphiql.min.js",
            "package/graphiql.min.css": "graphiql.min.css",
            "package/LICENSE": "LICENSE.graphiql",
        },
    ),
    (
        "react",
        "18.3.1",
        "sha512-wS+hAgJShR0KhEvPJArfuPVN1+Hz1t0Y6n5jLrGQbkb4urgPE/0Rve+1kMB1v/oWgHgm4WIcV+i7F2pTVj+2iQ==",
        {
            "package/umd/react.production.min.js": "react.production.min.js",
            "package/LICENSE": "LICENSE.react",
        },
    ),
    (
        "react-dom",
        "18.3.1",
        "sha512-5m4nQKp+rZRb09LNH59GM4BxTh9251/ylbKIbpe7TpGxfJ+9kv6BLkLBXIjjspbgbnIBNqlI23tRnTWT0snUIw==",
        {
            "package/umd/react-dom.production.min.js": "react-dom.production.min.js",
            "package/LICENSE": "LICENSE.react-dom",
        },
    ),
]


def sri_sha512(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def npm(*args: str, cwd: Path) -> str:
    npm_path = shutil.which("npm")
    if npm_path is None:
        sys.exit("vendor_graphiql: npm is needed to fetch the tarballs (apt-get install npm)")
    result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [npm_path, *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        sys.exit(f"vendor_graphiql: npm {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def fetch(work: Path) -> list[dict[str, str]]:
    files = []
    for name, version, pinned, wanted in PINS:
        spec = f"{name}@{version}"
        reported = json.loads(npm("view", spec, "dist.integrity", "--json", cwd=work))
        if reported != pinned:
            sys.exit(f"vendor_graphiql: registry says {reported} for {spec}, pinned {pinned}")
        packed = json.loads(npm("pack", spec, "--json", "--pack-destination", str(work), cwd=work))
        tarball = (work / packed[0]["filename"]).read_bytes()
        if sri_sha512(tarball) != pinned:
            sys.exit(f"vendor_graphiql: {spec}'s tarball does not match its integrity {pinned}")
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
            for member, target in wanted.items():
                extracted = archive.extractfile(member)
                if extracted is None:
                    sys.exit(f"vendor_graphiql: {spec} has no file {member}")
                data = extracted.read()
                (VENDOR / target).write_bytes(data)
                files.append(
                    {
                        "package": name,
                        "version": version,
                        "integrity": pinned,
                        "source": member,
                        "file": target,
                        "sha256": hashlib.sha256(data).hexdigest(),
                    }
                )
    return files


def check() -> int:
    lock = json.loads(LOCK.read_text())
    bad = [
        entry["file"]
        for entry in lock["files"]
        if hashlib.sha256((VENDOR / entry["file"]).read_bytes()).hexdigest() != entry["sha256"]
    ]
    for name in bad:
        print(f"vendor_graphiql: {name} differs from {LOCK.name}", file=sys.stderr)
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify files against the lock")
    if parser.parse_args().check:
        return check()
    VENDOR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        files = fetch(Path(work))
    lock = {
        "comment": "Written by scripts/vendor_graphiql.py; do not edit by hand.",
        "files": files,
    }
    LOCK.write_text(json.dumps(lock, indent=2) + "\n")
    print(f"vendor_graphiql: {len(files)} files in {VENDOR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
