"""Every screen of the patient web app, on a desktop (1280x800) and a phone (390x844), in
Debian's Chromium: axe-core finds no serious or critical violation, nothing is wider than the
screen (no horizontal scrolling), the keyboard's first stop is the skip link, and focus lands
where the patient's attention is (the view's heading after sign-in, the first new entry after
"Show more"). Each screen is photographed; ``scripts/screenshots`` copies the photographs into
docs/screenshots/.

The screens: sign-in, the development provider's page, My replays, a replay playing audio, Who saw
my record (with an emergency access), Consents (with Revoke's question open) and the consent
page a partner sends the patient to.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from gateway.ids import encode_global_id
from gateway.policy import scopes
from tests.support.actors import Grants, gid, new_clinician, new_partner
from tests.support.archives import DELETED, record_deleted
from tests.support.browser import (
    ARTIFACTS,
    assert_png,
    chromium,
    off_the_loop,
    visiting,
    wait_until,
)
from tests.support.database import as_admin
from tests.support.sign_in import demo_people, gateway_with_sign_in
from tests.test_web_app import WebAppVisit, dev_settings

SCREENS = ARTIFACTS / "screens"
VIEWPORTS = {"desktop": (1280, 800), "phone": (390, 844)}
PATIENT = 4
AXE = (resources.files("axe_playwright_python") / "axe.min.js").read_text()
# Only violations (not "needs review"), serious and critical ones; the rest is reported too.
RUN_AXE = """
async () => {
  const result = await axe.run(document, { resultTypes: ["violations", "incomplete"] });
  const brief = (items) => items.map((v) => ({
    id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(" ")),
  }));
  return { violations: brief(result.violations), incomplete: brief(result.incomplete) };
}
"""


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def gateway(env):
    with gateway_with_sign_in(env, dev_settings(env), off_the_loop(demo_people, env)) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def world(env, client):
    """The patient's record as the screens show it: a break-glass read by a clinician, a month
    of the trail deleted past retention (the log's last line), an active consent to a partner,
    and a partner's link asking for consent."""
    grants = Grants(env)
    record_deleted(env, DELETED)
    subject, patient_id = env.patients()[PATIENT]
    clinician_subject, clinician_id = new_clinician(env, "screens")
    grants.open_break_glass(clinician_id, patient_id)
    consultation = sorted(env.truth.consultations_of_patient[patient_id])[0]
    client.execute(
        "query($c: ID!) { consultation(id: $c) { reason summary recordings { id } } }",
        env.token(clinician_subject),
        {"c": encode_global_id("Consultation", consultation)},
    )
    # More of the patient's own reads than one page holds: "Show more" with the switch on.
    for _ in range(12):
        client.execute(
            "{ consultations(first: 2) { edges { node { id reason } } } }", env.token(subject)
        )
    _, consented = new_partner(env, "screens")
    as_admin(
        env,
        lambda c: c.execute(
            "update data.partners set name = 'Northwind Pharmacy' where id = $1", consented
        ),
    )
    grants.consent(patient_id, consented, scopes.ALL)
    _, asking = new_partner(env, "screens-asking")
    as_admin(
        env,
        lambda c: c.execute(
            "update data.partners set name = 'Acme Health', allowed_scopes = $2, "
            "redirect_uris = $3 where id = $1",
            asking,
            [scopes.CONSULTATION, scopes.RECORDING],
            ["https://acme.example/back"],
        ),
    )
    consent_link = "consent?" + urlencode(
        {
            "partner": gid("Partner", asking),
            "scope": f"{scopes.CONSULTATION} {scopes.RECORDING}",
            "redirect_uri": "https://acme.example/back",
            "state": "st-1",
        }
    )
    with_recordings = next(
        c
        for c in sorted(env.truth.consultations_of_patient[patient_id])
        if len(env.truth.recordings_of_consultation[c]) >= 2
    )
    yield {
        "subject": subject,
        "replay": encode_global_id("Consultation", with_recordings),
        "consent_link": consent_link,
    }
    grants.close()


class Screens:
    """One viewport's walk through the app: each screen checked and photographed."""

    def __init__(self, visit: WebAppVisit, viewport: str) -> None:
        self.visit = visit
        self.viewport = viewport
        self.found: dict[str, Any] = {}

    def check(self, name: str) -> None:
        page = self.visit.page
        page.evaluate(AXE)
        report = page.evaluate(RUN_AXE)
        serious = [v for v in report["violations"] if v["impact"] in ("serious", "critical")]
        width = page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        SCREENS.mkdir(parents=True, exist_ok=True)
        shot = SCREENS / f"{self.viewport}-{name}.png"
        page.screenshot(path=str(shot), full_page=True)
        self.found[name] = {
            "serious": serious,
            "others": [v["id"] for v in report["violations"] if v not in serious],
            "review": [v["id"] for v in report["incomplete"]],
            "review_nodes": {v["id"]: v["nodes"] for v in report["incomplete"]},
            "wider": width[0] > width[1],
            "shot": shot,
        }


def walk(browser, gateway, world, viewport: str) -> Screens:
    size = VIEWPORTS[viewport]
    with visiting(browser, (gateway.url,), WebAppVisit, viewport=size) as visit:
        screens = Screens(visit, viewport)
        page = visit.page
        page.goto(gateway.app_url)
        page.get_by_role("heading", name="Sign in", level=1).wait_for()
        screens.check("sign-in")
        page.keyboard.press("Tab")
        screens.found["first-tab"] = page.evaluate("document.activeElement.textContent")
        # The skip link, shown while focused, is itself checked: it covers the brand then.
        screens.found["skip-link"] = page.evaluate(
            "(() => { const r = document.activeElement.getBoundingClientRect();"
            " return [r.top >= 0, r.left >= 0, r.width > 0]; })()"
        )
        page.get_by_role("button", name="Sign in", exact=True).click()
        page.locator("button[name=subject]").first.wait_for()
        screens.check("provider")
        page.locator(f'button[name="subject"][value="{world["subject"]}"]').click()
        page.locator("#replays-list li").first.wait_for(timeout=30_000)
        screens.found["focus-after-sign-in"] = page.evaluate("document.activeElement.id")
        screens.check("replays")
        page.locator("#skip-link").focus()
        page.keyboard.press("Enter")
        screens.found["skip-to"] = page.evaluate("document.activeElement.id")

        page.goto(f"{gateway.app_url}#replay={world['replay']}")
        page.get_by_role("button", name="Play segment 1: Audio").click()
        wait_until(lambda: "Playing segment 1" in page.locator("#player-status").inner_text())
        screens.found["audio"] = page.evaluate(
            "(() => { const v = document.getElementById('player');"
            " return [v.className, v.getAttribute('aria-label'), v.getBoundingClientRect().height,"
            " Math.round(v.duration)]; })()"
        )
        label = page.get_by_role("button", name="Play segment 1: Audio").inner_text()
        screens.found["audio-label"] = label
        screens.check("replay")

        page.get_by_role("link", name="Who saw my record").click()
        page.locator("#emergency-list li").first.wait_for(timeout=30_000)
        status = page.locator("#access-log-status")
        wait_until(lambda: status.inner_text().startswith(("Showing", "Nobody")))
        screens.check("access-log")
        page.get_by_label("Include my own reads").check()
        wait_until(lambda: "You" in page.locator("#access-log-list .who").all_inner_texts())
        more = page.get_by_role("button", name="Show more")
        more.wait_for(timeout=30_000)
        count = page.locator("#access-log-list > li").count()
        more.click()
        wait_until(lambda: page.locator("#access-log-list > li").count() > count)
        screens.found["focus-after-more"] = page.evaluate(
            f"document.activeElement === document.querySelectorAll('#access-log-list > li')"
            f"[{count}]"
        )

        page.get_by_role("link", name="Consents").click()
        revoke = page.get_by_role("button", name="Revoke consent for", exact=False).first
        revoke.wait_for(timeout=30_000)
        revoke.click()
        page.get_by_role("button", name="Yes, revoke").wait_for()
        screens.check("consents")

        page.goto(f"{gateway.app_url}{world['consent_link']}")
        page.locator("#consent-request").wait_for(timeout=30_000)
        screens.check("consent")
        visit.assert_clean()
    return screens


@pytest.fixture(scope="module")
def walks(world, gateway, browser):
    # The world and the gateway's people first: their database calls run before Playwright's
    # loop does in this thread.
    walked = {viewport: walk(browser, gateway, world, viewport) for viewport in VIEWPORTS}
    # What axe said of each screen, beside the photographs (scripts/screenshots keeps it).
    (SCREENS / "axe.json").write_text(
        json.dumps(
            {
                viewport: {
                    name: {
                        k: v for k, v in found.items() if k in ("serious", "others", "review_nodes")
                    }
                    for name, found in screens.found.items()
                    if isinstance(found, dict)
                }
                for viewport, screens in walked.items()
            },
            indent=2,
        )
    )
    return walked


SCREEN_NAMES = ["sign-in", "provider", "replays", "replay", "access-log", "consents", "consent"]


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_axe_finds_no_serious_or_critical_violation_on_any_screen(walks, viewport):
    found = walks[viewport].found
    assert {name: found[name]["serious"] for name in SCREEN_NAMES} == {
        name: [] for name in SCREEN_NAMES
    }


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_no_screen_is_wider_than_the_viewport(walks, viewport):
    found = walks[viewport].found
    assert [name for name in SCREEN_NAMES if found[name]["wider"]] == []


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_every_screen_is_photographed(walks, viewport):
    width = VIEWPORTS[viewport][0]
    for name in SCREEN_NAMES:
        path: Path = walks[viewport].found[name]["shot"]
        assert_png(path, size=(width, _height(path)), min_bytes=5_000)


def _height(path: Path) -> int:
    import struct

    return struct.unpack(">II", path.read_bytes()[16:24])[1]


def test_the_keyboards_first_stop_is_the_skip_link_and_focus_follows_the_patient(walks):
    found = walks["desktop"].found
    assert found["first-tab"] == "Skip to content"
    assert found["skip-link"] == [True, True, True]  # on screen while focused
    assert found["focus-after-sign-in"] == "replays-heading"
    assert found["skip-to"] == "replays-heading"
    assert found["focus-after-more"] is True


def test_audio_is_shown_as_audio_and_its_duration_is_the_medias(walks):
    """The segment's button says how long the audio lasts, and the media element agrees; an
    audio segment is shown as its controls, not a black picture."""
    class_name, label, height, seconds = walks["desktop"].found["audio"]
    assert (class_name, label) == ("audio-only", "Audio recording")
    assert height < 80
    assert walks["desktop"].found["audio-label"] == f"Play segment 1: Audio, 0:0{seconds}"


def test_the_one_review_item_left_is_the_captions_of_video(walks):
    """axe cannot tell whether a video needs captions (docs/ACCESSIBILITY.md says what the app
    does): the replay's video is the only item it leaves for review, on every screen and
    viewport."""
    for viewport in VIEWPORTS:
        review = {name: walks[viewport].found[name]["review"] for name in SCREEN_NAMES}
        assert review == {
            name: ["video-caption"] if name == "replay" else [] for name in SCREEN_NAMES
        }
