"""The software bill of materials of the container image: CycloneDX 1.5, made from uv.lock.

    python3 scripts/sbom.py            write sbom.cdx.json
    python3 scripts/sbom.py --check    exit 1 when sbom.cdx.json is not what uv.lock says now

It lists what the image installs (the Dockerfile's `uv sync --extra s3 --extra tracing`, without
the build group it removes after building): every package, its version, purl and the hashes of
its distributions. The BOM's serial number and timestamp change with each export and are left
out of the comparison.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SBOM = ROOT / "sbom.cdx.json"
UV = ROOT / ".tools" / "uv" / "bin" / "uv"
EXPORT = [
    "export",
    "--frozen",
    "--format",
    "cyclonedx1.5",
    "--extra",
    "s3",
    "--extra",
    "tracing",
    "--no-default-groups",
]


def export() -> dict:
    done = subprocess.run(  # noqa: S603 (the pinned uv of scripts/install, fixed arguments)
        [str(UV), *EXPORT], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def _comparable(bom: dict) -> dict:
    bom = json.loads(json.dumps(bom))
    bom.pop("serialNumber", None)
    bom.get("metadata", {}).pop("timestamp", None)
    return bom


def main() -> int:
    fresh = export()
    if "--check" in sys.argv[1:]:
        current = json.loads(SBOM.read_text()) if SBOM.exists() else {}
        if _comparable(current) != _comparable(fresh):
            print("sbom.cdx.json is stale: run python3 scripts/sbom.py", file=sys.stderr)
            return 1
        print(f"sbom.cdx.json is current: {len(fresh['components'])} components")
        return 0
    SBOM.write_text(json.dumps(fresh, indent=2) + "\n")
    print(f"wrote {SBOM.name}: {len(fresh['components'])} components")
    return 0


if __name__ == "__main__":
    sys.exit(main())
