"""The Consultation Replays case: every patient's list holds exactly their own rows."""

from __future__ import annotations

from gateway.ids import decode_global_id, encode_global_id
from tests.support.json_values import all_strings

REPLAYS = """
query Replays($after: String) {
  consultations(first: 100, after: $after) {
    edges { cursor node {
      id scheduledAt status mode reason summary
      patient { id displayName }
      clinician { id displayName }
      recordings { id segmentIndex mode contentType playbackUrl consultation { id } }
    } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


def test_every_patient_sees_exactly_their_own_replays_and_nothing_foreign(env, client):
    for subject, patient in env.patients():
        body = client.execute(REPLAYS, env.token(subject))
        assert "errors" not in body
        nodes = [edge["node"] for edge in body["data"]["consultations"]["edges"]]
        seen = {decode_global_id(node["id"])[1] for node in nodes}
        assert seen == env.truth.consultations_of_patient[patient]
        recordings = {decode_global_id(r["id"])[1] for node in nodes for r in node["recordings"]}
        assert recordings == env.truth.recordings_of_patient[patient]
        for node in nodes:
            assert node["patient"]["id"] == encode_global_id("Patient", patient)
            consultation = decode_global_id(node["id"])[1]
            segments = [decode_global_id(r["id"])[1] for r in node["recordings"]]
            assert segments == env.truth.recordings_of_consultation[consultation]
        foreign = env.truth.global_ids_not_of(patient)
        leaked = [text for text in all_strings(body) if any(f in text for f in foreign)]
        assert leaked == []


def test_recordings_have_an_audio_segment_then_video_after_a_switch(env, client):
    subject, _ = env.patients()[0]
    seen_modes = set()
    for subject, _ in env.patients():
        body = client.execute(REPLAYS, env.token(subject))
        for edge in body["data"]["consultations"]["edges"]:
            modes = [r["mode"] for r in edge["node"]["recordings"]]
            if modes:
                assert modes[0] == "AUDIO"
                seen_modes.add(tuple(modes))
    assert ("AUDIO", "VIDEO") in seen_modes or ("AUDIO", "VIDEO", "AUDIO") in seen_modes
