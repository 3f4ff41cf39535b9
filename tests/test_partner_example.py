"""The partner example (``examples/partner/client.py``) runs as a partner would run it: against a
development instance (``gateway dev``, a token from ``gateway token``), and against a gateway as
production runs it (the repository's manifest, trusted documents only) through revocation and
rate limiting. Its output is checked against the database, not against itself."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from gateway import create_app
from tests.support.actors import Grants, new_partner, partner_token
from tests.support.gateway_process import run_gateway
from tests.support.server import serving
from tests.test_dev_instance import Dev

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "examples" / "partner" / "client.py"
CONSENT = ROOT / "examples" / "partner" / "consent.py"
MANIFEST = ROOT / "apps" / "manifest.json"
C, R, P = "patient/Consultation.rs", "patient/Recording.rs", "patient/Patient.rs"


def _client(gateway: str, token: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CLIENT), "--gateway", gateway, "--token", token, *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _summary(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return {**lines[-1], "listed": [line["consultation"] for line in lines[:-1]]}


def test_the_example_reads_the_consented_patients_of_a_development_instance():
    folder = Path(tempfile.mkdtemp(prefix="gateway-partner-example-"))
    dev = Dev(folder)
    try:
        instance = dev.wait_ready()
        base = instance["graphql_url"].removesuffix("/graphql")
        principals = json.loads((folder / "principals.json").read_text())
        patient = next(p for p in principals if p["role"] == "patient")

        def token(subject: str, scope: str | None = None) -> str:
            args = ["token", "--data-dir", str(folder), "--subject", subject]
            made = run_gateway(*args, *(["--scope", scope] if scope else []))
            assert made.returncode == 0, made.stderr
            return made.stdout.strip()

        # What the consenting patient has, as they see it themselves.
        own = httpx.post(
            f"{base}/graphql",
            headers={"authorization": f"Bearer {token(patient['subject'])}"},
            json={
                "query": "{ consultations(first: 100) { edges { node { id recordings { id } } } } }"
            },
        ).json()["data"]["consultations"]["edges"]
        result = _summary(_client(base, token("partner-0001", f"{C} {R}")))
        assert result["listed"] == [edge["node"]["id"] for edge in own]
        assert result | {"listed": None} == {
            "partner": "partner-0001",
            "scopes": [C, R],
            "operation": "PartnerConsultationsWithRecordings",
            "consultations": len(own),
            "recordings": sum(len(edge["node"]["recordings"]) for edge in own),
            "playable": min(3, sum(len(edge["node"]["recordings"]) for edge in own)),
            "fieldsWithheld": 0,
            "retries": 0,
            "listed": None,
        }
        # A partner nobody consented to sees nobody.
        alone = _summary(_client(base, token("partner-0002", f"{C} {R}")))
        assert (alone["consultations"], alone["listed"]) == (0, [])
    finally:
        dev.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def production(env):
    """A gateway as production runs it, with a rate of 60 requests a minute."""
    settings = env.settings(
        trusted_documents=MANIFEST,
        free_form_documents=None,
        rate_limit_requests_per_minute=60,
    )
    with serving(create_app(settings)) as server:
        yield server.url


def test_the_example_in_production_withholds_uncovered_fields_waits_out_429_and_sees_revocation(
    env, production
):
    subject, partner = new_partner(env, "example")
    _, patient = env.patients()[2]
    mine = sorted(env.truth.consultations_of_patient[patient])
    grants = Grants(env)
    try:
        consent = grants.consent(patient, partner, [C, P])
        # The token holds recordings, the consent does not: recordings are withheld, not failed.
        token = partner_token(env, subject, f"{C} {R}")
        first = _summary(_client(production, token, "--manifest", str(MANIFEST)))
        assert sorted(first["listed"]) == sorted(_gid("Consultation", pk) for pk in mine)
        assert first["operation"] == "PartnerConsultationsWithRecordings"
        assert (first["recordings"], first["fieldsWithheld"]) == (0, len(mine))
        # Spend the minute's requests: the example waits Retry-After and carries on.
        with httpx.Client(base_url=production) as http:
            me = next(
                o["id"]
                for o in json.loads(MANIFEST.read_text())["operations"]
                if o["name"] == "PartnerMe"
            )
            statuses = {
                http.post(
                    "/graphql",
                    json={"extensions": {"persistedQuery": {"version": 1, "sha256Hash": me}}},
                    headers={"authorization": f"Bearer {token}"},
                ).status_code
                for _ in range(70)
            }
        assert statuses == {200, 429}
        waited = _summary(_client(production, token, "--manifest", str(MANIFEST)))
        assert sorted(waited["listed"]) == sorted(first["listed"])
        assert waited["retries"] >= 1
        grants.revoke(consent)
        after = _summary(_client(production, token, "--manifest", str(MANIFEST)))
        assert (after["consultations"], after["listed"]) == (0, [])
    finally:
        grants.close()


def test_the_example_stops_in_one_line_when_its_token_is_refused(production):
    result = _client(production, "not-a-token", "--manifest", str(MANIFEST))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == "partner client: PartnerMe: HTTP 401 UNAUTHENTICATED: Malformed token\n"


def _consent(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CONSENT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _printed(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    return json.loads(result.stdout)


def _as_the_page(gateway: str, token: str, link: str, approve: bool) -> str:
    """What the consent page does with the link (tests/test_consent_page_browser.py drives the
    page itself): open the request, answer it; where the patient is sent back to."""
    from urllib.parse import parse_qs, urlsplit

    query = {name: values[0] for name, values in parse_qs(urlsplit(link).query).items()}
    ids = {o["name"]: o["id"] for o in json.loads(MANIFEST.read_text())["operations"]}

    def run(name: str, variables: dict) -> dict:
        response = httpx.post(
            f"{gateway}/graphql",
            json={
                "variables": variables,
                "extensions": {"persistedQuery": {"version": 1, "sha256Hash": ids[name]}},
            },
            headers={"authorization": f"Bearer {token}"},
        )
        return response.json()["data"]

    opened = run(
        "RequestConsent",
        {
            "partner": query["partner"],
            "scopes": query["scope"].split(" "),
            "redirectUri": query["redirect_uri"],
            "state": query["state"],
        },
    )["requestConsent"]
    answered = run("AnswerConsentRequest", {"id": opened["id"], "approve": approve})
    return answered["answerConsentRequest"]["redirectTo"]


def test_the_consent_example_asks_checks_the_return_and_the_client_then_reads(env, production):
    from tests.support.database import as_admin

    subject, partner = new_partner(env, "consent-example")
    back = "https://corner-pharmacy.example/consent/done"
    as_admin(
        env,
        lambda c: c.execute(
            "update data.partners set allowed_scopes = $2, redirect_uris = $3 where id = $1",
            partner,
            [C, P],
            [back],
        ),
    )
    patient_subject, patient = env.patients()[2]
    patient_token = env.token(patient_subject)
    grants = Grants(env)
    try:
        asked = _consent(
            "link",
            "--app",
            f"{production}/app",
            "--partner",
            _gid("Partner", partner),
            "--redirect-uri",
            back,
            "--scope",
            C,
            "--scope",
            P,
        )
        made = _printed(asked)
        assert made["link"].startswith(f"{production}/app/consent?partner=")
        declined = _as_the_page(production, patient_token, made["link"], approve=False)
        told = _consent("outcome", "--returned", declined, f"--state={made['state']}")
        assert _printed(told) == {"consent": "declined"}
        # A state is used once: the partner asks again with a new link.
        again = _consent(*asked.args[2:])
        made = _printed(again)
        returned = _as_the_page(production, patient_token, made["link"], approve=True)
        rows = as_admin(
            env, lambda c: c.fetch("select id from data.consents where partner_id = $1", partner)
        )
        grants.consents += [row["id"] for row in rows]  # removed at the end
        told = _consent("outcome", "--returned", returned, f"--state={made['state']}")
        assert _printed(told) == {"consent": "granted"}
        # Who approved: the code, redeemed with the partner's own token, once.
        code = parse_qs(urlsplit(returned).query)["code"][0]
        redeem = ["redeem", "--gateway", production, "--token", partner_token(env, subject, P)]
        # --name=value: a code may begin with "-"
        redeem += [f"--code={code}", f"--state={made['state']}", "--manifest", str(MANIFEST)]
        who = _consent(*redeem)
        assert _printed(who) == {
            "patient": {"id": _gid("Patient", patient), "displayName": _display_name(env, patient)}
        }
        again = _consent(*redeem)
        assert (again.returncode, again.stderr) == (
            1,
            "consent: This code is not valid: unknown, used, or older than ten minutes\n",
        )
        forged = _consent("outcome", "--returned", returned, "--state", "another-state")
        assert (forged.returncode, forged.stdout, forged.stderr) == (
            1,
            "",
            "consent: the state does not match the one sent: ignore this return\n",
        )
        read = _summary(
            _client(production, partner_token(env, subject, C), "--manifest", str(MANIFEST))
        )
        mine = env.truth.consultations_of_patient[patient]
        assert sorted(read["listed"]) == sorted(_gid("Consultation", pk) for pk in mine)
    finally:
        as_admin(
            env,
            lambda c: c.execute("delete from data.consent_requests where partner_id = $1", partner),
        )
        grants.close()


def _display_name(env, patient) -> str:
    from tests.support.database import as_admin

    return as_admin(
        env, lambda c: c.fetchval("select display_name from data.patients where id = $1", patient)
    )


def _gid(type_name: str, pk) -> str:
    from gateway.ids import encode_global_id

    return encode_global_id(type_name, pk)
