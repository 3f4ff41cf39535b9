"""The benchmark's answer check: every timed answer is reduced to a digest and compared with its
caller's answer before timing, so a withheld response, an error, a lost row or a changed field
cannot count as throughput, while what differs by design (global IDs against UUIDs, signed
playback URLs) does not count as a difference."""

from __future__ import annotations

import json
from uuid import uuid4

from bench.answers import digest
from gateway.ids import encode_global_id

ONE, TWO, REC = uuid4(), uuid4(), uuid4()


def _gateway(rows=(ONE, TWO), reason="Headache", url="https://media/a?sig=1") -> str:
    nodes = [
        {
            "id": encode_global_id("Consultation", pk),
            "scheduledAt": "2026-01-02T03:04:05+00:00",
            "status": "COMPLETED",
            "mode": "VIDEO",
            "reason": reason,
            "recordings": [
                {
                    "id": encode_global_id("Recording", REC),
                    "segmentIndex": 0,
                    "mode": "VIDEO",
                    "durationSeconds": 561,
                    "playbackUrl": url,
                }
            ],
        }
        for pk in rows
    ]
    return json.dumps({"data": {"consultations": {"edges": [{"node": n} for n in nodes]}}})


def _postgraphile() -> str:
    nodes = [
        {
            "rowId": str(pk),
            "scheduledAt": "2026-01-02T04:04:05+01:00",
            "status": "COMPLETED",
            "mode": "VIDEO",
            "reason": "Headache",
            "recordings": {
                "nodes": [
                    {"rowId": str(REC), "segmentIndex": 0, "mode": "VIDEO", "durationSeconds": 561}
                ]
            },
        }
        for pk in (ONE, TWO)
    ]
    return json.dumps({"data": {"allConsultations": {"nodes": nodes}}})


def test_the_same_rows_and_fields_are_one_digest_whatever_the_system_or_the_signature():
    before = digest("gateway", 200, _gateway())
    assert digest("gateway", 200, _gateway(url="https://media/a?sig=2")) == before
    assert digest("postgraphile", 200, _postgraphile()) == before


def test_a_withheld_an_erroneous_a_short_or_a_changed_answer_is_a_different_digest():
    before = digest("gateway", 200, _gateway())
    withheld = json.dumps({"errors": [{"message": "withheld", "extensions": {"code": "WITHHELD"}}]})
    partial = json.loads(_gateway())
    partial["errors"] = [{"message": "x", "extensions": {"code": "FORBIDDEN"}}]
    others = [
        digest("gateway", 200, withheld),
        digest("gateway", 200, json.dumps(partial)),
        digest("gateway", 200, _gateway(rows=(ONE,))),
        digest("gateway", 200, _gateway(rows=(TWO, ONE))),
        digest("gateway", 200, _gateway(reason="Fever")),
        digest("gateway", 503, _gateway()),
        digest("gateway", 200, "Service Unavailable"),
        digest("gateway", 0, ""),  # no answer at all
    ]
    assert before not in others
    assert len(set(others)) == len(others)
