"""A partner's integration, as small as it can be and complete (docs/PARTNERS.md).

It reads, for every patient who consented to the partner, their consultations and recordings
through the reviewed partner operations, sent by hash as production requires; it pages, it
retries what should be retried (429 and 503, after ``Retry-After``), it reports fields the
token or a consent does not cover instead of failing, and it treats a consultation that is no
longer there (a revoked consent) as gone. Only the standard library.

    python examples/partner/client.py --gateway URL --token TOKEN [--manifest FILE_OR_URL]

The token is the partner's client-credentials token (in development: ``gateway token --data-dir
DIR --subject partner-0001 --scope "patient/Consultation.rs patient/Recording.rs"``). The
manifest holds the operations' hashes: the operator gives it to partners with each release of
the gateway (a development instance serves it at ``/app/manifest.json``, the default).

Prints one JSON line per consultation, then a summary line; exit 0, or 1 with one line on stderr
when the gateway refuses the client itself (a bad token, an operation it does not know).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

PAGE = 2  # small, to show paging; up to 100
ATTEMPTS = 5


class Refused(Exception):
    """The gateway refused this client (not a field, not a moment of load)."""


class Gateway:
    def __init__(self, url: str, token: str, hashes: dict[str, str]) -> None:
        self.url = url.rstrip("/") + "/graphql"
        self.token = token
        self.hashes = hashes
        self.retries = 0

    def run(self, operation: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The operation's response body, after retrying what may be retried."""
        body = json.dumps(
            {
                "extensions": {
                    "persistedQuery": {"version": 1, "sha256Hash": self.hashes[operation]}
                },
                "variables": variables or {},
            }
        ).encode()
        for attempt in range(ATTEMPTS):
            request = urllib.request.Request(  # noqa: S310 - the gateway's own URL
                self.url,
                data=body,
                headers={
                    "authorization": f"Bearer {self.token}",
                    "content-type": "application/json",
                    "accept": "application/json",
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                    return json.loads(response.read())
            except urllib.error.HTTPError as error:
                payload = json.loads(error.read() or b"{}")
                code = (payload.get("errors") or [{}])[0].get("extensions", {}).get("code")
                if error.code in (429, 503) and attempt + 1 < ATTEMPTS:
                    wait = int(error.headers.get("retry-after") or 1)
                    print(f"{operation}: {code}, retrying in {wait} s", file=sys.stderr)
                    self.retries += 1
                    time.sleep(wait)
                    continue
                message = (payload.get("errors") or [{}])[0].get("message", "")
                raise Refused(f"{operation}: HTTP {error.code} {code}: {message}") from None
        raise Refused(f"{operation}: still refused after {ATTEMPTS} attempts")


def withheld(body: dict[str, Any]) -> list[str]:
    """The paths of fields the scopes do not cover (FORBIDDEN at a path: data, not failure)."""
    paths = []
    for error in body.get("errors", []):
        if error.get("extensions", {}).get("code") != "FORBIDDEN" or "path" not in error:
            raise Refused(f"unexpected error: {error}")
        paths.append(".".join(str(part) for part in error["path"]))
    return paths


def load_manifest(source: str) -> dict[str, str]:
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=30) as response:  # noqa: S310
            manifest = json.loads(response.read())
    else:
        with open(source, encoding="utf-8") as file:
            manifest = json.load(file)
    if manifest.get("format") != "apollo-persisted-query-manifest":
        raise Refused(f"{source}: not a persisted query manifest")
    return {
        op["name"]: op["id"]
        for op in manifest["operations"]
        if "partner" in op.get("roles", ["partner"])
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", required=True, help="e.g. http://127.0.0.1:8000")
    parser.add_argument("--token", required=True)
    parser.add_argument("--manifest", help="file or URL (default: GATEWAY/app/manifest.json)")
    args = parser.parse_args()
    try:
        hashes = load_manifest(args.manifest or args.gateway.rstrip("/") + "/app/manifest.json")
        gateway = Gateway(args.gateway, args.token, hashes)
        me = gateway.run("PartnerMe")["data"]["me"]
        scopes = set(me["scopes"] or [])
        # The richest operation the token's scopes are written for.
        operation = (
            "PartnerConsultationsWithRecordings"
            if "patient/Recording.rs" in scopes
            else "PartnerConsultations"
        )
        consultations, fields_withheld, after = 0, 0, None
        recordings: list[str] = []
        while True:
            body = gateway.run(operation, {"first": PAGE, "after": after})
            fields_withheld += len(withheld(body))
            page = body["data"]["consultations"]
            for edge in page["edges"]:
                node = edge["node"]
                if node is None:  # not ours to see any more
                    continue
                consultations += 1
                segments = node.get("recordings") or []
                recordings += [r["id"] for r in segments if r is not None]
                print(
                    json.dumps(
                        {
                            "consultation": node["id"],
                            "scheduledAt": node["scheduledAt"],
                            "status": node["status"],
                            "recordings": len(segments),
                        }
                    )
                )
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        playable = 0
        for recording_id in recordings[:3]:
            found = gateway.run("PartnerRecording", {"id": recording_id})
            fields_withheld += len(withheld(found))
            if found["data"]["recording"] and found["data"]["recording"]["playbackUrl"]:
                playable += 1
    except Refused as refused:
        print(f"partner client: {refused}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "partner": me["subject"],
                "scopes": sorted(scopes),
                "operation": operation,
                "consultations": consultations,
                "recordings": len(recordings),
                "playable": playable,
                "fieldsWithheld": fields_withheld,
                "retries": gateway.retries,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
