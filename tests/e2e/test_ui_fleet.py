"""The fleet view at fleet scale: 2,000 simulated enclosures in a real browser.

The real stack (Mosquitto, PostgreSQL, the bridge, the API under gunicorn with its event
streams) and 2,000 enclosures of ``fleet_simulator``, placed in rooms and racks
(``bench/_fleet_ui.py``, which ``bench/ui_fleet.py`` also drives to measure the figures).
Checked: the fleet loads and is grouped by room and rack, only what is near the screen is
built, the state buttons filter, the table view is remembered, a live SSE update changes the
one card it concerns (no other card is redrawn), and a bulk ping shows each enclosure's result
as its ack arrives. Screenshots of the fleet at 1280 px and 390 px land in docs/screenshots/.
No timing is asserted here (bench/ui_fleet.py measures).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.test_ui import (  # noqa: F401 (the browser fixture)
    DESKTOP,
    PHONE,
    SCREENSHOTS,
    UI_TIMEOUT_MS,
    Console,
    browser,
    expect,
    playwright_sync,
)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto, pytest.mark.postgres]

COUNT = 2000
# Statuses every 30 s: 67 a second across the fleet, live but gentle on a shared machine.
STATUS_INTERVAL_S = 30.0


@pytest.fixture(scope="module")
def fleet() -> Iterator[Any]:
    from bench._fleet_ui import fleet_stack

    with fleet_stack(COUNT, STATUS_INTERVAL_S) as made:
        yield made


def _page(browser: Any, viewport: dict[str, int]) -> tuple[Any, Any, Console]:
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    console = Console()
    page.on("console", lambda m: console.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: console.errors.append(f"uncaught: {exc}"))
    return context, page, console


def _check(box: Any) -> None:
    """Check ``box`` until it is checked: a re-layout (an enclosure the page just learnt of, a
    record entering the filter) can replace the checkbox between finding and clicking it, and
    the click then lands on the old one ("did not change its state")."""

    def attempt() -> bool:
        try:
            box.check(timeout=5_000)
        except playwright_sync.Error:
            return False
        return bool(box.is_checked())

    wait_for(attempt, UI_TIMEOUT_MS / 1000, message="the checkbox never stayed checked")


def _login(page: Any, fleet: Any) -> None:
    from bench._fleet_ui import login

    login(page, fleet.base)
    expect(page.get_by_role("heading", name="Fleet", exact=True)).to_be_visible()
    expect(page.locator('.state-filter button[data-state="all"]')).to_have_text(
        f"All {COUNT}", timeout=UI_TIMEOUT_MS
    )


def _shot(page: Any, name: str) -> None:
    """The viewport only: the whole page of 2,000 enclosures would be mostly placeholders."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def _card(page: Any, eid: str) -> Any:
    return page.locator(f'article.card[data-enclosure="{eid}"]')


def test_fleet_of_2000(fleet: Any, browser: Any) -> None:
    context, page, console = _page(browser, DESKTOP)
    _login(page, fleet)
    page.evaluate("window.__sameDocument = true")

    # Grouped by room, then rack; "No location" last.
    locations = fleet.locations
    rooms = sorted({loc.split("/")[0] for loc in locations.values() if loc})
    expect(page.locator("section.room")).to_have_count(len(rooms) + 1)
    heads = page.locator("section.room > .room-head h2")
    assert heads.all_inner_texts() == [*rooms, "No location"]
    expect(page.get_by_role("heading", name="Room 1", exact=True)).to_be_visible()
    per_rack = Counter(loc for loc in locations.values() if loc)
    rack = page.locator('section.rack[data-group="Room 1/Rack B"]')
    expect(rack.locator(".rack-head h3")).to_have_text("Rack B")
    expect(rack.locator(".rack-head .group-count")).to_have_text(
        f"{per_rack['Room 1/Rack B']} enclosures"
    )
    no_location = sorted(eid for eid, loc in locations.items() if loc is None)
    expect(page.locator('section.room[data-room="No location"] .group-count')).to_have_text(
        f"{len(no_location)} enclosures"
    )

    # Only what is near the screen is built: the first rack's cards, not the 2,000.
    first = fleet.ids[0]
    expect(_card(page, first).get_by_test_id("state")).to_have_text("Idle")
    built = page.locator("article.card").count()
    assert 0 < built < COUNT / 4, built
    expect(_card(page, fleet.ids[-1])).to_have_count(0)
    page.locator('section.room[data-room="No location"]').scroll_into_view_if_needed()
    expect(_card(page, no_location[-1])).to_be_visible()
    page.evaluate("window.scrollTo(0, 0)")

    # A live update lands on its one card: no other card is redrawn, except those of
    # enclosures that had an event of their own meanwhile (their statuses go on).
    target = fleet.ids[1]
    page.evaluate(
        """async () => {
            const events = await import("/ui/js/events.js");
            window.__evented = new Set();
            events.on("*", (r) => {
                if (r.data?.enclosure_id) window.__evented.add(r.data.enclosure_id);
            });
            document.querySelectorAll("article.card").forEach((c) => { c.__kept = 1; });
        }"""
    )
    fleet.fleet.kill(target)
    expect(_card(page, target).get_by_test_id("state")).to_have_text("Lost", timeout=60_000)
    redrawn = page.evaluate(
        """() => [...document.querySelectorAll("article.card")]
            .filter((c) => !c.__kept)
            .map((c) => [c.dataset.enclosure, window.__evented.has(c.dataset.enclosure)])"""
    )
    assert [target, True] in redrawn
    assert all(had_event for _, had_event in redrawn), redrawn
    assert page.evaluate("window.__sameDocument") is True

    # The state buttons count and filter.
    lost = page.locator('.state-filter button[data-state="lost"]')
    expect(lost).to_have_text("Lost 1")
    expect(page.locator('.state-filter button[data-state="idle"]')).to_have_text(
        f"Idle {COUNT - 1}"
    )
    lost.click()
    expect(lost).to_have_attribute("aria-pressed", "true")
    expect(page.locator("article.card")).to_have_count(1)
    expect(_card(page, target)).to_be_visible()
    lost.click()
    expect(lost).to_have_attribute("aria-pressed", "false")
    expect(_card(page, first)).to_be_visible()

    # The table view: rows instead of cards, remembered after a reload.
    page.get_by_role("button", name="Table").click()
    expect(page.get_by_role("button", name="Table")).to_have_attribute("aria-pressed", "true")
    row = page.locator(f'table.fleet-table tr[data-enclosure="{target}"]')
    expect(row.get_by_test_id("state")).to_have_text("Lost")
    assert 0 < page.locator("table.fleet-table tbody tr[data-enclosure]").count() < COUNT / 2
    page.reload()
    expect(page.locator(f'table.fleet-table tr[data-enclosure="{first}"]')).to_be_visible()
    page.get_by_role("button", name="Cards").click()
    expect(_card(page, first)).to_be_visible()
    page.evaluate("window.__sameDocument = true")

    # Bulk ping on a rack: each enclosure's result as its ack arrives.
    rack_ids = sorted(eid for eid, loc in locations.items() if loc == "Room 1/Rack B")
    _check(rack.locator("input[data-select-group]"))
    expect(page.get_by_test_id("selected-count")).to_have_text(f"{len(rack_ids)} selected")
    page.get_by_role("button", name="Ping", exact=True).click()
    for eid in rack_ids:  # in the rack's order: the next chunk is built as the last comes near
        expect(_card(page, eid).get_by_test_id("bulk-result")).to_have_text(
            "Ping: succeeded", timeout=60_000
        )
        # In one go (a result may replace the card at any moment).
        page.evaluate(
            'eid => document.querySelector(`article.card[data-enclosure="${eid}"]`)'
            '.scrollIntoView({ block: "center" })',
            eid,
        )
    page.evaluate("window.scrollTo(0, 0)")
    expect(page.get_by_test_id("bulk-summary")).to_contain_text(f"{len(rack_ids)} succeeded")
    # Only those were commanded.
    assert _card(page, first).get_by_test_id("bulk-result").count() == 0
    # Select by state: the lost one, from its filter.
    page.get_by_role("button", name="Clear", exact=True).click()
    expect(page.get_by_test_id("selected-count")).to_have_text("0 selected")
    lost.click()
    page.get_by_role("button", name="Select shown").click()
    expect(page.get_by_test_id("selected-count")).to_have_text("1 selected")
    expect(_card(page, target).locator("input[data-select]")).to_be_checked()
    lost.click()
    assert page.evaluate("window.__sameDocument") is True

    # Screenshots: the top of the fleet at 1280 px and 390 px.
    page.get_by_role("button", name="Clear", exact=True).click()
    page.get_by_role("button", name="Clear results").click()
    _check(rack.locator("input[data-select-group]"))
    page.evaluate("window.scrollTo(0, 0)")
    _shot(page, "fleet")
    page.set_viewport_size(PHONE)
    page.evaluate("window.scrollTo(0, 0)")
    expect(_card(page, first)).to_be_visible()
    # Nothing wider than the phone, and no button broken over two lines.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for button in page.locator(".toolbar button, .bulkbar button").all():
        box = button.bounding_box()
        assert box is not None
        assert box["height"] < 40, (button.inner_text(), box)
    _shot(page, "fleet-phone")
    page.set_viewport_size(DESKTOP)

    context.close()
    assert console.errors == [], f"browser console errors: {console.errors}"


def test_start_a_session_on_a_selection(fleet: Any, browser: Any) -> None:
    context, page, console = _page(browser, DESKTOP)
    _login(page, fleet)
    rack_ids = sorted(eid for eid, loc in fleet.locations.items() if loc == "Room 2/Rack C")
    _check(page.locator('section.rack[data-group="Room 2/Rack C"] input[data-select-group]'))
    page.get_by_role("button", name="Start session…").click()
    dialog = page.get_by_role("dialog", name="Start a session on the selection")
    dialog.get_by_label("Name").fill("Rack C of room 2")
    dialog.get_by_label("Duration (minutes)").fill("2")
    dialog.get_by_role("button", name="Start session").click()
    expect(page.get_by_role("heading", name="Rack C of room 2")).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )
    wait_for(lambda: re.search(r"#/sessions/.+", page.url), 10, message="not on the session page")
    session_id = page.url.rsplit("/", 1)[1]
    session = httpx.get(
        f"{fleet.base}/api/sessions/{session_id}",
        headers={"Authorization": f"Bearer {fleet.stack.token}"},
        timeout=10,
    ).json()
    assert sorted(e["enclosure_id"] for e in session["enclosures"]) == rack_ids
    context.close()
    assert console.errors == [], f"browser console errors: {console.errors}"
