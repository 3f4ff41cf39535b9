"""A partner asks a patient for consent (docs/PARTNERS.md, "Consent"): the link to the patient
web app's consent page, and the check of what the patient comes back with. Only the standard
library.

    python examples/partner/consent.py link --app URL --partner ID --redirect-uri URI \
        --scope patient/Consultation.rs [--scope ...]
    python examples/partner/consent.py outcome --returned URL --state=STATE
    python examples/partner/consent.py redeem --gateway URL --token TOKEN --code=CODE \
        --state=STATE [--manifest FILE_OR_URL]

(``--code=`` and ``--state=`` with ``=``: a code may begin with ``-``.)

``link`` prints ``{"link": ..., "state": ...}``: send the patient to the link, and keep the state
with the patient's session on your side (it is unguessable, one per link). ``outcome`` reads the
address the patient came back to: it prints ``{"consent": "granted"}`` or ``{"consent":
"declined"}``, or exits 1 with one line when the state is not the one given (a forged return:
ignore it). Use a state once: forget it after its first return, so that a return replayed later
finds nothing to match. A granted return carries a one-time ``code``: ``redeem`` sends it with
your own token and the state your session kept (``RedeemConsentCode``; a code stolen from a
browser and brought back in another session redeems to nothing) and prints the patient who
approved, the only way to know who answered; never link a patient's account at your side on the
strength of the return alone.
"""

from __future__ import annotations

import argparse
import hmac
import json
import secrets
import sys
from urllib.parse import parse_qs, urlencode, urlsplit


def link(app: str, partner: str, scopes: list[str], redirect_uri: str) -> tuple[str, str]:
    state = secrets.token_hex(24)
    query = urlencode(
        {
            "partner": partner,
            "scope": " ".join(scopes),
            "redirect_uri": redirect_uri,
            "state": state,
        }
    )
    return f"{app.rstrip('/')}/consent?{query}", state


def outcome(returned: str, state: str) -> str:
    query = parse_qs(urlsplit(returned).query)
    came_back = (query.get("state") or [""])[0]
    if not hmac.compare_digest(came_back.encode(), state.encode()):
        raise ValueError("the state does not match the one sent: ignore this return")
    if query.get("consent") == ["granted"]:
        return "granted"  # and query["code"]: redeem it
    if query.get("error") == ["access_denied"]:
        return "declined"
    raise ValueError("the return carries no outcome")


def redeem(gateway: str, token: str, code: str, state: str, manifest: str | None) -> dict | None:
    """The patient who approved, from the code (None when the consent does not let you see
    them: ask for patient/Patient.rs)."""
    from client import Gateway, Refused, load_manifest  # the partner's client, beside this file

    try:
        hashes = load_manifest(manifest or gateway.rstrip("/") + "/app/manifest.json")
        body = Gateway(gateway, token, hashes).run(
            "RedeemConsentCode", {"code": code, "state": state}
        )
    except Refused as refused:
        raise ValueError(str(refused)) from None
    if body.get("errors"):
        raise ValueError(body["errors"][0]["message"])
    return body["data"]["redeemConsentCode"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    asking = commands.add_parser("link", help="the consent page's link, and its state")
    asking.add_argument("--app", required=True, help="the patient web app, e.g. URL/app")
    asking.add_argument("--partner", required=True, help="your partner ID (graphql_id)")
    asking.add_argument("--redirect-uri", required=True, help="one of your registered URIs")
    asking.add_argument("--scope", action="append", required=True, help="repeat for each")
    checking = commands.add_parser("outcome", help="what the patient came back with")
    checking.add_argument("--returned", required=True, help="the address they came back to")
    checking.add_argument("--state", required=True, help="the state kept for the link")
    redeeming = commands.add_parser("redeem", help="who approved: the code, redeemed once")
    redeeming.add_argument("--gateway", required=True)
    redeeming.add_argument("--token", required=True, help="your client-credentials token")
    redeeming.add_argument("--code", required=True)
    redeeming.add_argument("--state", required=True, help="the state your session kept")
    redeeming.add_argument("--manifest", help="file or URL (default: GATEWAY/app/manifest.json)")
    args = parser.parse_args()
    if args.command == "link":
        url, state = link(args.app, args.partner, args.scope, args.redirect_uri)
        print(json.dumps({"link": url, "state": state}))
        return 0
    try:
        if args.command == "redeem":
            patient = redeem(args.gateway, args.token, args.code, args.state, args.manifest)
            print(json.dumps({"patient": patient}))
        else:
            print(json.dumps({"consent": outcome(args.returned, args.state)}))
    except ValueError as refused:
        print(f"consent: {refused}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
