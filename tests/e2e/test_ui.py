"""The web UI in a real browser (Playwright driving Debian's chromium) against the demo.

`jaxmba-service demo` runs as a subprocess (embedded broker, SQLite, bridge, three agents
recording the test pattern, the API under gunicorn) and the browser goes through what an
operator does: log in, see the fleet, start a session on two enclosures, watch its progress
arrive without reloading, cancel one enclosure, see an enclosure go `lost` when its agent is
killed (and the alert), invite a user. Any browser console error fails the test. Screenshots of
the main pages land in docs/screenshots/ (the README's "Web UI" section shows them).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from controlsvc.broker import find_free_port
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
ENCLOSURES = ("demo-01", "demo-02", "demo-03")
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# Statuses every 2 s (the default 5 s would make each live step wait longer).
STATUS_INTERVAL_S = "2"
UI_TIMEOUT_MS = 30_000

if not CHROMIUM.exists():
    pytest.skip(
        "the UI tests need Debian's chromium at /usr/bin/chromium (scripts/setup --test "
        "installs it; Playwright's own browser download is not used)",
        allow_module_level=True,
    )
playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="the UI tests need the playwright package (the dev extra)"
)
expect = playwright_sync.expect


@dataclass
class Demo:
    base: str
    proc: subprocess.Popen[bytes]
    email: str
    password: str
    dir: Path
    log: Path
    access_token: str | None = None

    def agent(self, eid: str) -> psutil.Process:
        """The agent process of an enclosure: the demo's child whose cmdline names its config."""
        config = self.dir / "agents" / f"{eid}.toml"
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                # The demo passes the path as it knows it (relative to its working directory).
                if any(Path(self.dir.parents[1], arg) == config for arg in child.cmdline()):
                    return child
            except psutil.NoSuchProcess:
                continue
        raise AssertionError(f"no agent process for {eid}")

    def bridge(self) -> psutil.Process:
        """The demo's bridge process (``python -m controlsvc ... bridge``)."""
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                if child.cmdline()[-1:] == ["bridge"]:
                    return child
            except psutil.NoSuchProcess:
                continue
        raise AssertionError("no bridge process")

    def _token(self, fresh: bool = False) -> str:
        # One login for the whole module: polling through api() must not count as a stream of
        # logins (the per-account login limit would refuse the test's own later logins).
        if fresh or self.access_token is None:
            response = httpx.post(
                f"{self.base}/api/auth/login",
                json={"email": self.email, "password": self.password},
                timeout=10,
            )
            response.raise_for_status()
            self.access_token = str(response.json()["access_token"])
        return self.access_token

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        def send(token: str) -> httpx.Response:
            return httpx.request(
                method,
                f"{self.base}{path}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
                **kwargs,
            )

        response = send(self._token())
        if response.status_code == 401:  # expired: log in again once
            response = send(self._token(fresh=True))
        response.raise_for_status()
        return response.json()


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    tmp = tmp_path_factory.mktemp("ui-demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXMBA_")}
    env["FLASK_CONFIG"] = "dev"
    env["JAXMBA_SERVICE_STATUS_INTERVAL_S"] = STATUS_INTERVAL_S
    config = tmp / "jax-mba-service.config"
    cli = [sys.executable, "-m", "controlsvc", "--config", str(config)]
    subprocess.run([*cli, "init_config"], cwd=tmp, env=env, check=True, capture_output=True)
    port = find_free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp / "demo.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            # Agents stay dead when killed here (the lost enclosure is what is looked at);
            # tests/e2e/test_demo.py sees them restarted.
            [
                *cli,
                "demo",
                "--enclosures",
                str(len(ENCLOSURES)),
                "--port",
                str(port),
                "--restart-agents-after",
                "0",
            ],
            cwd=tmp,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: proc.poll() is None and _healthy(base),
            timeout=90,
            message=f"demo API never became healthy:\n{log_path.read_text()[-3000:]}",
        )
        admin = json.loads((tmp / "var" / "demo" / "admin.json").read_text())
        yield Demo(base, proc, admin["email"], admin["password"], tmp / "var" / "demo", log_path)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class Console:
    errors: list[str] = field(default_factory=list)

    def take(self, pattern: str) -> list[str]:
        """Remove (and return) the errors an expected failure caused, e.g. a 422 answer."""
        taken = [e for e in self.errors if re.search(pattern, e)]
        self.errors = [e for e in self.errors if e not in taken]
        return taken


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _card(page: Any, eid: str) -> Any:
    return page.locator(f'article.card[data-enclosure="{eid}"]')


def _seconds(text: str) -> float:
    """Seconds of the first duration in a text like "1 min 4 s recorded ..." ("0 s" -> 0)."""
    match = re.match(r"\s*(?:(\d+) min )?(\d+) s", text)
    assert match, text
    return int(match.group(1) or 0) * 60 + int(match.group(2))


def _new_page(browser: Any) -> tuple[Any, Any, Console]:
    """A desktop page whose console errors are collected: (context, page, console)."""
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    console = Console()
    page.on("console", lambda m: console.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: console.errors.append(f"uncaught: {exc}"))
    return context, page, console


def _login(page: Any, demo: Demo, shot: str | None = None) -> None:
    page.goto(f"{demo.base}/")
    expect(page.get_by_role("heading", name="Log in to jaxmba")).to_be_visible()
    if shot:
        _shot(page, shot)
    page.get_by_label("Email").fill(demo.email)
    page.get_by_label("Password").fill(demo.password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Fleet")).to_be_visible()


def test_operator_journey(demo: Demo, browser: Any) -> None:
    context, page, console = _new_page(browser)
    # The UI asks with its own dialog; the browser's confirm box must never appear.
    page.on("dialog", lambda d: (console.errors.append(f"native dialog: {d.message}"), d.dismiss()))

    # Log in.
    _login(page, demo, shot="login")

    # The fleet: every enclosure, all idle once their agents report; the stream is live.
    for eid in ENCLOSURES:
        expect(_card(page, eid).get_by_test_id("state")).to_have_text("Idle", timeout=60_000)
    expect(page.locator("#live-indicator")).to_have_text("live")
    expect(_card(page, "demo-01")).to_contain_text("Disk free")
    # A clock that agrees with the service's within the tolerance is fine, NTP or not.
    clock = _card(page, "demo-01").locator("dt:text('Clock') + dd")
    expect(clock).to_have_class(re.compile(r"tone-text-ok"), timeout=30_000)
    expect(clock).not_to_contain_text("not synced")
    page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page

    # Filter and search.
    page.get_by_label("Search").fill("demo-02")
    expect(page.locator("article.card")).to_have_count(1)
    page.get_by_label("Search").fill("")
    recording = page.locator('.state-filter button[data-state="recording"]')
    recording.click()
    expect(recording).to_have_attribute("aria-pressed", "true")
    expect(page.locator("article.card")).to_have_count(0)
    recording.click()
    expect(page.locator("article.card")).to_have_count(len(ENCLOSURES))

    # A new session: the API's validation errors appear next to the fields.
    page.get_by_role("link", name="Sessions").click()
    page.get_by_role("link", name="New session").click()
    expect(page.get_by_role("heading", name="New session")).to_be_visible()
    page.get_by_role("button", name="Start session").click()
    expect(page.locator(".field-error:visible").first).to_be_visible()
    expect(page.locator("fieldset.enclosure-pick + .field-error")).to_contain_text("at least 1")
    assert console.take(r"status of 422"), "the invalid form should have answered 422"

    page.get_by_label("Name").fill("UI test session")
    page.locator('[data-pick="demo-01"]').check()
    page.locator('[data-pick="demo-02"]').check()
    page.locator('[data-prefix="demo-02"]').fill("cage7")
    page.get_by_label("Duration", exact=True).fill("3")
    page.get_by_label("Duration unit").select_option("min")
    page.get_by_label("Frames per second").fill("10")
    page.get_by_label("Notes").fill("started from the browser test")
    page.get_by_role("button", name="Start session").click()

    # The detail page: both enclosures start, and progress arrives without a reload.
    expect(page.get_by_role("heading", name="UI test session")).to_be_visible()
    session_hash = "#" + page.url.split("#", 1)[1]
    rows = {eid: page.locator(f'article.enc-row[data-enclosure="{eid}"]') for eid in ENCLOSURES}
    for eid in ("demo-01", "demo-02"):
        expect(rows[eid].get_by_test_id("state")).to_have_text("Recording", timeout=30_000)
    first = _seconds(rows["demo-01"].get_by_test_id("recorded").inner_text())
    wait_for(
        lambda: _seconds(rows["demo-01"].get_by_test_id("recorded").inner_text()) >= first + 3,
        timeout=30,
        message="recorded time never grew on the session page",
    )
    assert page.evaluate("window.__sameDocument") is True
    _shot(page, "session-detail")

    # Cancel one enclosure: it ends, the other goes on.
    page.get_by_role("button", name="Cancel demo-02").click()
    ask = page.get_by_role("dialog", name="Stop demo-02?")
    expect(ask).to_be_visible()
    expect(ask.get_by_role("button", name="Keep recording")).to_be_focused()
    page.keyboard.press("Escape")  # declining changes nothing
    expect(ask).to_have_count(0)
    expect(rows["demo-02"].get_by_test_id("state")).to_have_text("Recording")
    page.get_by_role("button", name="Cancel demo-02").click()
    page.get_by_role("dialog", name="Stop demo-02?").get_by_role(
        "button", name="Stop demo-02"
    ).click()
    expect(rows["demo-02"].get_by_test_id("state")).to_have_text("Canceled", timeout=20_000)
    expect(rows["demo-01"].get_by_test_id("state")).to_have_text("Recording")
    expect(page.get_by_test_id("status")).to_have_text("Running")

    # The fleet shows the recording with its progress, live.
    page.get_by_role("link", name="Fleet").click()
    expect(_card(page, "demo-01").get_by_test_id("state")).to_have_text("Recording")
    expect(_card(page, "demo-01")).to_contain_text("UI test session")
    expect(_card(page, "demo-01").get_by_role("progressbar")).to_be_visible()
    frames = _card(page, "demo-01").get_by_test_id("frames")
    expect(frames).to_be_visible(timeout=20_000)
    before = frames.inner_text()
    expect(frames).not_to_have_text(before, timeout=30_000)
    _shot(page, "dashboard")
    page.set_viewport_size(PHONE)
    # "Log out" stays on the first row, beside the brand, in one line.
    brand = page.locator(".topbar .brand").bounding_box()
    logout = page.get_by_role("button", name="Log out").bounding_box()
    assert brand is not None
    assert logout is not None
    assert abs((logout["y"] + logout["height"] / 2) - (brand["y"] + brand["height"] / 2)) < 8
    assert logout["x"] + logout["width"] <= PHONE["width"]
    assert logout["height"] < 2 * brand["height"], logout
    _shot(page, "dashboard-phone")
    page.set_viewport_size(DESKTOP)

    # The enclosure page: charts, and a command with its result.
    _card(page, "demo-01").get_by_role("link", name="demo-01").click()
    expect(page.locator(".page-head h1")).to_contain_text("demo-01")
    # Before the live view starts: a placeholder that says so, not a broken image.
    expect(page.get_by_test_id("live-off")).to_be_visible()
    expect(page.locator("img.live-img")).to_be_hidden()
    expect(page.locator("svg.chart-svg path.line").first).to_be_attached(timeout=20_000)
    page.get_by_role("button", name="Ping").click()
    expect(page.locator("table.data tbody tr").first).to_contain_text("Succeeded")
    # Mark it expected online (alerts when lost even outside sessions): stored by the service.
    page.get_by_test_id("expected-online").check()
    expect(page.get_by_role("status").filter(has_text="expected online")).to_be_visible()
    assert demo.api("GET", "/api/enclosures/demo-02")["expected_online"] is False
    assert demo.api("GET", "/api/enclosures/demo-01")["expected_online"] is True
    # Its recording timeline: the open file of the running session, with the session's name.
    recordings = page.get_by_test_id("recordings")
    expect(recordings.locator('tr[data-span="recording"]').first).to_contain_text("UI test session")
    expect(recordings.locator(".rec-strip .rec-recording").first).to_be_attached()
    _shot(page, "enclosure")

    # The sessions list.
    page.get_by_role("link", name="Sessions").click()
    expect(
        page.locator('table[data-list="active"]').get_by_role("link", name="UI test session")
    ).to_be_visible()
    _shot(page, "sessions")

    # Kill the agent of the recording enclosure: it goes lost, and an alert says so.
    page.get_by_role("link", name="Fleet").click()
    expect(_card(page, "demo-03").get_by_test_id("state")).to_have_text("Idle")
    demo.agent("demo-01").send_signal(signal.SIGKILL)
    expect(_card(page, "demo-01").get_by_test_id("state")).to_have_text("Lost", timeout=30_000)
    alert = page.locator(".alert", has_text="demo-01")
    expect(alert.first).to_be_visible(timeout=30_000)
    expect(alert.first).to_contain_text(
        "demo-01 lost its connection during session “UI test session”"
    )
    expect(alert.first).not_to_contain_text("Will")
    # Every page tells the same truth: the session page shows demo-01 lost at once, with the
    # time it will count as failed, and the same figures as its enclosure page.
    page.evaluate("hash => { location.hash = hash; }", session_hash)
    lost_row = page.locator('article.enc-row[data-enclosure="demo-01"]')
    expect(lost_row.get_by_test_id("state")).to_have_text("Lost")
    expect(lost_row.get_by_test_id("lost")).to_contain_text("counts as failed at")
    figures = " · ".join(lost_row.get_by_test_id("recorded").inner_text().split(" · ")[:2])
    assert re.fullmatch(r".+ recorded · [\d,]+ frames", figures), figures
    assert not figures.startswith("0 s"), figures
    _shot(page, "session-lost")
    page.evaluate("location.hash = '#/enclosures/demo-01'")
    expect(page.get_by_test_id("session-progress")).to_contain_text(figures)
    expect(page.get_by_test_id("session-progress")).to_contain_text("Lost")
    # Alerts are the service's, not a tab's: a second tab opened now lists the same alert,
    # and an acknowledgement in the first removes it there too (pushed, no reload).
    other = context.new_page()
    other.on("console", lambda m: console.errors.append(m.text) if m.type == "error" else None)
    other.on("pageerror", lambda exc: console.errors.append(f"uncaught: {exc}"))
    _login(other, demo)
    open_lost = ".alert:not(.alert-recovered)"
    expect(other.locator(open_lost, has_text="demo-01").first).to_be_visible()
    other.evaluate("window.__sameDocument = true")
    alert.first.get_by_role("button", name="Acknowledge").click()
    expect(page.locator(open_lost, has_text="demo-01")).to_have_count(0)
    expect(other.locator(open_lost, has_text="demo-01")).to_have_count(0)
    assert other.evaluate("window.__sameDocument") is True
    other.close()
    acked = demo.api("GET", "/api/alerts", params={"enclosure_id": "demo-01"})["items"]
    assert any(a["acked_by"] == demo.email for a in acked), acked
    assert page.evaluate("window.__sameDocument") is True

    # Users: invite someone.
    page.get_by_role("link", name="Users").click()
    page.get_by_label("Email").fill("new.tech@example.org")
    page.get_by_label("Role", exact=True).select_option("viewer")
    page.get_by_role("button", name="Send invite").click()
    invited = page.locator('tr[data-user="new.tech@example.org"]')
    expect(invited).to_contain_text("Invited")
    expect(invited.get_by_role("combobox")).to_have_value("viewer")
    _shot(page, "users")

    # Log out.
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to jaxmba")).to_be_visible()

    context.close()
    assert console.errors == [], f"browser console errors: {console.errors}"


def test_serves_the_ui_without_breaking_the_api(demo: Demo) -> None:
    index = httpx.get(f"{demo.base}/", timeout=10)
    assert index.status_code == 200
    assert "text/html" in index.headers["content-type"]
    assert "default-src 'self'" in index.headers["content-security-policy"]
    for link in ("/invite/abc", "/reset-password/abc"):
        assert httpx.get(f"{demo.base}{link}", timeout=10).text == index.text
    script = httpx.get(f"{demo.base}/ui/js/main.js", timeout=10)
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert not re.search(r"https?://", script.text)  # every asset is local
    for path in ("/api/nope", "/ui/../app.py", "/ui/missing.js"):
        missing = httpx.get(f"{demo.base}{path}", timeout=10)
        assert missing.status_code == 404, path
        assert missing.headers["content-type"] == "application/problem+json", path
    assert httpx.get(f"{demo.base}/api/enclosures", timeout=10).status_code == 401
    assert httpx.get(f"{demo.base}/swagger.json", timeout=10).status_code == 200
    assert httpx.get(f"{demo.base}/metrics", timeout=10).status_code == 401


def test_templates_clone_and_coverage(demo: Demo, browser: Any) -> None:
    """Save a session as a template from the form, start it from the Sessions page (the form
    comes filled in), see its coverage strip, cancel it and start it again from its page."""
    context, page, console = _new_page(browser)
    wait_for(
        lambda: demo.api("GET", "/api/enclosures/demo-03")["state"] == "idle",
        60,
        message="demo-03 never idle",
    )
    _login(page, demo)
    page.get_by_role("link", name="Sessions").click()
    page.get_by_role("link", name="New session").click()
    page.get_by_label("Name").fill("Template test")
    page.locator('[data-pick="demo-03"]').check()
    page.locator('[data-prefix="demo-03"]').fill("tpl3")
    page.get_by_label("Duration", exact=True).fill("2")
    page.get_by_label("Duration unit").select_option("min")
    page.get_by_role("button", name="Save as template").click()
    expect(page.get_by_test_id("form-note")).to_contain_text('Saved as template "Template test"')

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Sessions").click()
    templates = page.get_by_test_id("templates")
    expect(templates.locator("tr", has_text="Template test")).to_contain_text("demo-03 (tpl3)")
    templates.get_by_role("link", name="Start a session from Template test").click()
    expect(page.get_by_test_id("form-note")).to_contain_text("template")
    expect(page.get_by_label("Name")).to_have_value("Template test")
    expect(page.locator('[data-pick="demo-03"]')).to_be_checked()
    expect(page.locator('[data-prefix="demo-03"]')).to_have_value("tpl3")
    expect(page.get_by_label("Duration unit")).to_have_value("min")
    page.get_by_role("button", name="Start session").click()
    expect(page.get_by_role("heading", name="Template test")).to_be_visible()
    row = page.locator('article.enc-row[data-enclosure="demo-03"]')
    expect(row.get_by_test_id("state")).to_have_text("Recording", timeout=30_000)
    strip = page.get_by_test_id("coverage").locator('[data-enclosure="demo-03"] .rec-strip')
    expect(strip).to_have_attribute("aria-label", re.compile(r"recorded"))
    expect(strip.locator(".rec-span").first).to_be_attached(timeout=30_000)
    _shot(page, "session-coverage")

    page.get_by_role("button", name="Cancel session").click()
    page.get_by_role("dialog", name="Cancel the session?").get_by_role(
        "button", name="Cancel session"
    ).click()
    expect(page.get_by_test_id("status")).to_have_text("Canceled", timeout=20_000)
    page.get_by_role("link", name="Start again").click()
    expect(page.get_by_label("Name")).to_have_value("Template test")
    expect(page.locator('[data-pick="demo-03"]')).to_be_checked()
    page.get_by_role("button", name="Start session").click()
    expect(page.get_by_role("heading", name="Template test")).to_be_visible()
    expect(page.locator('article.enc-row[data-enclosure="demo-03"]')).to_be_visible()
    demo.api("POST", f"/api/sessions/{page.url.split('#/sessions/', 1)[1]}/cancel")
    context.close()
    assert console.errors == [], f"browser console errors: {console.errors}"


def _axe(page: Any) -> list[dict[str, Any]]:
    """The serious and critical axe-core violations of what the page shows now. axe-core comes
    from the local file the axe-playwright-python package ships (the dev extra), no CDN."""
    axe = pytest.importorskip("axe_playwright_python", reason="the dev extra brings axe-core")
    page.add_script_tag(path=str(Path(axe.__file__).parent / "axe.min.js"))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {
            "rule": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
        }
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_pages_have_no_serious_accessibility_violations(demo: Demo, browser: Any) -> None:
    """axe-core on every main page: 0 serious or critical violations."""
    # axe is injected as a script of the page's own: the test's context lets it past the CSP.
    context = browser.new_context(viewport=DESKTOP, bypass_csp=True)
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    wait_for(
        lambda: demo.api("GET", "/api/enclosures/demo-03")["state"] == "idle",
        60,
        message="demo-03 never idle",
    )
    sid = demo.api(
        "POST",
        "/api/sessions",
        json={
            "name": "Accessibility check",
            "duration_s": 120,
            "enclosures": [{"id": "demo-03", "file_prefix": "axe"}],
        },
    )["id"]
    found: dict[str, list[dict[str, Any]]] = {}
    page.goto(f"{demo.base}/")
    expect(page.get_by_role("heading", name="Log in to jaxmba")).to_be_visible()
    found["login"] = _axe(page)
    _login(page, demo)
    expect(_card(page, "demo-03").get_by_test_id("state")).to_be_visible()
    found["fleet"] = _axe(page)
    pages = {
        "enclosure": ("#/enclosures/demo-03", page.locator("svg.chart-svg").first),
        "sessions": ("#/sessions", page.get_by_role("link", name="Accessibility check").first),
        "session detail": (f"#/sessions/{sid}", page.locator("article.enc-row").first),
        "new session": ("#/sessions/new", page.locator('[data-pick="demo-03"]')),
        "users": ("#/users", page.locator("tr[data-user]").first),
    }
    for name, (where, ready) in pages.items():
        page.evaluate("hash => { location.hash = hash; }", where)
        expect(ready).to_be_visible()
        found[name] = _axe(page)
    demo.api("POST", f"/api/sessions/{sid}/cancel")
    context.close()
    bad = {name: v for name, v in found.items() if v}
    assert not bad, json.dumps(bad, indent=1)


def test_a_dead_bridge_shows_a_banner(demo: Demo, browser: Any) -> None:
    """Last in this module: it silences the demo's bridge (SIGSTOP: a SIGKILLed one is started
    again within seconds, before it counts as down), then lets it go on: the banner goes."""
    context, page, console = _new_page(browser)
    page.goto(f"{demo.base}/")
    page.get_by_label("Email").fill(demo.email)
    page.get_by_label("Password").fill(demo.password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Fleet")).to_be_visible()
    banner = page.locator("#service-banner")
    wait_for(lambda: demo.api("GET", "/api/health")["bridge"]["ok"], 30, message="no bridge")
    expect(banner).to_be_hidden()

    bridge = demo.bridge()
    bridge.send_signal(signal.SIGSTOP)
    try:
        # judged down 15 s after its last heartbeat; the page asks every 15 s
        expect(banner).to_be_visible(timeout=60_000)
        expect(banner).to_contain_text("Bridge down")
        expect(banner).to_contain_text("no bridge heartbeat")
        health = demo.api("GET", "/api/health")
        assert health["status"] == "degraded"
        assert health["bridge"]["ok"] is False
        assert health["bridge"]["since"] is not None
    finally:
        bridge.send_signal(signal.SIGCONT)
    expect(banner).to_be_hidden(timeout=60_000)
    context.close()
    assert console.errors == [], f"browser console errors: {console.errors}"
