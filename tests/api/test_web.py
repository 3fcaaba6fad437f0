"""The web page at ``/`` in a real browser.

Headless Chromium from Debian's ``chromium`` package (``.ci/run`` installs it), driven by
Playwright with its executable path pointed at that binary (Playwright's own browser download is
not used). The page is served by the real app under gunicorn (``python -m api``) over a real
SecantusDB that the pipeline loaded from the bundled sample, and everything the page shows is
checked against what the public API answers. Screenshots go to ``test-artifacts/web/``.

Without chromium the browser tests are skipped, except in CI (``CI=true``), where they fail.
TMDB's image host is not reachable from tests: poster requests are answered by the test with a
generated picture, so the page's poster handling is exercised without the network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest

from tests.support.paths import REPO
from tests.support.pipeline_sample import sample_database
from tests.support.secantus import free_port

WEB = REPO / "api" / "web"
ARTIFACTS = REPO / "test-artifacts" / "web"
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
CHROMIUM = shutil.which("chromium")
SLUG = r"[A-Za-z0-9_-]{22}"
TIMEOUT_MS = 20_000  # 2 shared cores: generous waits, never sleeps
DEVICES = {
    "desktop": {"viewport": {"width": 1280, "height": 900}},
    "phone": {
        "viewport": {"width": 375, "height": 740},
        "device_scale_factor": 2,
        "is_mobile": True,
        "has_touch": True,
    },
}


# --- a real server --------------------------------------------------------------------------------


@dataclass
class Site:
    url: str
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=10) as res:
            return json.loads(res.read())


def start_site(mongodb_url: str, database: str, log: Path) -> Site:
    """``python -m api`` (gunicorn, 2 sync workers) on a free loopback port; waits until it serves
    the page's icon (which needs no store, so this works with the store down too)."""
    port = free_port()
    env = {
        **os.environ,
        "MONGODB_URL": mongodb_url,
        "MOVIETIME_DATABASE": database,
        "PYTHONUNBUFFERED": "1",
    }
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "api",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "2",
            ],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    site = Site(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(site.url + "/static/icon.svg", timeout=2) as res:
                if res.status == 200:
                    return site
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            site.stop()
            raise RuntimeError(f"the API did not start; its log:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def served(sample_run, mongo_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web")
    with sample_database(sample_run, "test_web") as (db, _, _):
        yield {"url": mongo_url, "db": db.name, "tmp": tmp}


@pytest.fixture(scope="module")
def site(served):
    site = start_site(served["url"], served["db"], served["tmp"] / "api.log")
    yield site
    site.stop()


def http(url: str, headers: dict | None = None) -> tuple[int, Message, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, res.headers, res.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


# --- the page over plain HTTP (no browser needed) ---------------------------------------------------


def test_page_and_assets_are_served_with_security_headers(site):
    status, headers, body = http(site.url + "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    csp = headers["Content-Security-Policy"]
    assert (
        "default-src 'self'" in csp
        and "script-src 'self'" in csp
        and "frame-ancestors 'none'" in csp
    )
    assert "img-src 'self' https://image.tmdb.org" in csp and "unsafe-inline" not in csp
    assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer" and headers["Cache-Control"] == "no-cache"
    html = body.decode()
    links = dict(re.findall(r'/static/([\w.-]+)\?v=([0-9a-f]{16})"', html))
    assert {"app.js", "style.css", "icon.svg"} <= set(links)

    types = {
        "app.js": "text/javascript; charset=utf-8",
        "style.css": "text/css; charset=utf-8",
        "icon.svg": "image/svg+xml",
    }
    for name, version in links.items():
        status, headers, body = http(f"{site.url}/static/{name}?v={version}")
        assert status == 200 and headers["Content-Type"] == types[name]
        assert body == (WEB / name).read_bytes()
        assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert headers["Content-Security-Policy"] == csp and headers["X-Frame-Options"] == "DENY"
        assert headers["ETag"] == f'"{version}"'
        status, headers, body = http(f"{site.url}/static/{name}", {"If-None-Match": f'"{version}"'})
        assert status == 304 and body == b"" and headers["Cache-Control"] == "no-cache"
    status, headers, _ = http(f"{site.url}/static/app.js?v=0000000000000000")  # an old version
    assert status == 200 and headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(
    "path",
    [
        "/static/__init__.py",
        "/static/index.html",
        "/static/..%2f__init__.py",
        "/static/..%2f..%2fsettings.py",
        "/static/%2e%2e",
        "/static/.gitignore",
        "/static/",
        "/static/app.js/x",
    ],
)
def test_static_serves_only_the_web_files(site, path):
    status, headers, body = http(site.url + path)
    assert status == 404 and headers["Content-Type"] == "application/json; charset=utf-8", (
        path,
        status,
    )
    assert json.loads(body)["error"]["code"] == "not_found"


def test_page_has_no_inline_script_or_style():
    html = (WEB / "index.html").read_text()
    assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/static/app.js" defer>']
    assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=|javascript:", html, re.I)
    js = (WEB / "app.js").read_text()
    assert "innerHTML" not in js and "eval(" not in js and "document.write" not in js
    assert not re.search(r"fetch\(\s*['\"`]https?:", js)  # the API of its own origin only


# --- the browser ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if IN_CI:
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium package")
        pytest.skip(
            "chromium is not installed (Debian: apt-get install chromium); CI installs and runs it"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if IN_CI:
            raise
        pytest.skip("playwright is not installed (pip install -r requirements.txt)")
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


POSTER_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="342" height="513" viewBox="0 0 342 513">'
    '<rect width="342" height="513" fill="#{color}"/><text x="171" y="270" font-size="34" '
    'text-anchor="middle" fill="#fff" font-family="sans-serif">poster</text></svg>'
)


def new_page(browser, device: str):
    """A fresh visitor (own storage) with console and network problems recorded."""
    context = browser.new_context(**DEVICES[device])
    context.set_default_timeout(TIMEOUT_MS)
    posters: list[str] = []

    def poster(route):
        posters.append(route.request.url)
        color = format(abs(hash(route.request.url)) % 0xFFFFFF, "06x")
        route.fulfill(status=200, content_type="image/svg+xml", body=POSTER_SVG.format(color=color))

    context.route("https://image.tmdb.org/**", poster)
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
        ),
    )
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "requestfailed", lambda req: problems.append(f"request failed: {req.url} {req.failure}")
    )
    page.problems = problems
    page.posters = posters
    return context, page


def shot(page, name: str) -> Path:
    """A full-page screenshot in test-artifacts/web/, after checking that the page shows no
    value the page failed to format (a JavaScript null, undefined or NaN)."""
    text = page.locator("body").inner_text()
    assert not re.search(r"\b(null|undefined|NaN)\b|\[object ", text), f"{name}: {text[:2000]}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def fits_width(page) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the screen"


def card_ids(page, selector: str = "#recs .card") -> list[int]:
    return [
        int(x)
        for x in page.locator(selector).evaluate_all("els => els.map(e => e.dataset.movieId)")
    ]


def stored_user(page) -> dict:
    return json.loads(page.evaluate("localStorage.getItem('movietime.user')"))


def wait_for_overviews(page) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#recs .overview[aria-busy]")).to_have_count(0)


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_a_visitor_onboards_rates_explores_and_shares(browser, site, device):
    from playwright.sync_api import expect

    context, page = new_page(browser, device)
    page.goto(site.url + "/")

    # --- onboarding: the genres are the served model's, not a list in the page
    expect(page.get_by_role("heading", name="Welcome to Movie Time")).to_be_visible()
    clusters = site.get("/clusters")["clusters"]
    genres = sorted(site.get(f"/clusters/{clusters[0]['clusterId']}")["profile"])
    chips = page.locator(".chips input[type=checkbox]")
    assert sorted(chips.evaluate_all("els => els.map(e => e.value)")) == genres
    page.get_by_role("button", name="Get my recommendations").click()
    expect(page.locator("#onboard-error")).to_contain_text("Pick at least 3 genres")
    for genre in ("Sci-Fi", "Action", "Adventure"):
        page.get_by_label(genre, exact=True).check()
    expect(page.locator("#genre-count")).to_have_text("3 picked.")

    # the questionnaire: the served most rated movies, a page at a time; one is added from it
    asked = site.get("/onboarding/movies?per_page=12")
    expect(page.locator("#asked li")).to_have_count(len(asked["items"]))
    page.get_by_role("button", name="Show more").click()
    expect(page.locator("#asked li")).to_have_count(24)
    second = site.get("/onboarding/movies?per_page=12&page=2")["items"]
    shown = page.locator("#asked button[data-add]").evaluate_all(
        "els => els.map(e => Number(e.dataset.add))"
    )
    assert shown == [m["movieId"] for m in asked["items"] + second]
    seen = next(m for m in second if m["movieId"] not in (260, 2571))  # those come by search
    page.locator(f'#asked button[data-add="{seen["movieId"]}"]').click()
    expect(page.locator("#favourites li")).to_have_count(1)

    favourite = page.get_by_label("Find a movie you love")
    favourite.press_sequentially("star wars", delay=20)  # results while typing, no Enter
    page.locator("#fav-results").get_by_role(
        "button", name="Add Star Wars: Episode IV - A New Hope (1977) to your favourites"
    ).click()
    favourite.fill("")
    favourite.press_sequentially("matrix", delay=20)
    page.locator("#fav-results").get_by_role(
        "button", name="Add The Matrix (1999) to your favourites"
    ).click()
    page.get_by_label("Your rating of The Matrix").select_option("4.5")
    for added in {260, 2571} & set(shown):  # added by search: marked in the questionnaire too
        expect(page.locator(f'#asked button[data-add="{added}"]')).to_have_text("Added")
    expect(page.locator("#favourites li")).to_have_count(3)
    shot(page, f"{device}-01-onboarding")
    fits_width(page)
    page.get_by_role("button", name="Get my recommendations").click()

    # --- the first recommendations, at once: the same list the API gives this new user
    expect(page.get_by_role("heading", name="Your recommendations")).to_be_visible()
    user = stored_user(page)
    assert user["userId"] > 0 and user["token"].startswith(f"mt_{user['userId']}_")
    api_recs = site.get(f"/user/{user['userId']}/recommendation?n=12")["recommendations"]
    assert card_ids(page) == [m["movieId"] for m in api_recs] and len(api_recs) >= 6
    # the rated movies are not recommended back
    assert not {260, 2571, seen["movieId"]} & set(card_ids(page))
    first = page.locator("#recs .card").first
    top = api_recs[0]
    expect(first.locator(".card-title")).to_contain_text(top["name"])
    expect(first.locator(".card-title")).to_contain_text(str(top["year"]))
    expect(first.locator(".genres")).to_have_text(" · ".join(top["genres"]))
    expect(first.locator(".reason")).to_have_text(top["reason"]["text"])
    expect(first.locator(".predicted")).to_contain_text(f"{top['predicted_rating']:.1f}")
    wait_for_overviews(page)
    meta = site.get(f"/movie/{top['movieId']}/metadata")
    expect(first.locator(".overview")).to_have_text(meta["overview"] or "No overview available.")
    if top["poster_url"]:
        expect(first.locator(".poster img")).to_have_attribute("src", top["poster_url"])
        page.wait_for_function(
            "() => [...document.querySelectorAll('#recs .poster img')]"
            ".some(i => i.complete && i.naturalWidth > 0)"
        )
        assert top["poster_url"] in page.posters
    assert page.locator("#recs .reason").count() == len([m for m in api_recs if m["reason"]])
    shot(page, f"{device}-02-recommendations")
    fits_width(page)

    # --- more variety: the API's list with diversity 0.2, then back to the usual one
    page.get_by_label("More variety").check()
    expect(page.locator("#recs-note")).to_contain_text("More variety")
    expect(page.locator("#recs-note")).to_contain_text("Your list is updated")
    varied = site.get(f"/user/{user['userId']}/recommendation?n=12&diversity=0.2")
    assert card_ids(page) == [m["movieId"] for m in varied["recommendations"]]
    page.get_by_label("More variety").uncheck()
    expect(page.locator("#recs-note")).to_contain_text("Your usual list. Your list is updated")
    assert card_ids(page) == [m["movieId"] for m in api_recs]

    # --- rate, dislike and like: the list changes without a page reload
    page.evaluate("window.__samePage = 'yes'")
    before = card_ids(page)
    rated = before[0]
    page.get_by_label(f"Your rating of {api_recs[0]['name']}", exact=True).select_option("1")
    page.get_by_role("button", name=f"Rate {api_recs[0]['name']}", exact=True).click()
    # the note said "updated" already (the variety toggle): wait for this rating's update
    expect(page.locator("#recs-note")).to_contain_text(
        re.compile(f"You rated {re.escape(api_recs[0]['name'])} 1.0.*Your list is updated")
    )
    after_rating = card_ids(page)
    assert rated not in after_rating and after_rating != before
    rated_api = site.get(f"/user/{user['userId']}/rated?per_page=100")["items"]
    assert {r["movieId"]: r["rating"] for r in rated_api}[rated] == 1.0

    second = page.locator("#recs .card").nth(1)
    disliked = int(second.get_attribute("data-movie-id"))
    second.get_by_role("button", name=re.compile("^Dislike ")).click()
    expect(page.locator("#recs-note")).to_contain_text("You disliked")
    expect(page.locator(f'#recs .card[data-movie-id="{disliked}"]')).to_have_count(0)
    assert card_ids(page) == [
        m["movieId"]
        for m in site.get(f"/user/{user['userId']}/recommendation?n=12")["recommendations"]
    ]

    # keyboard only: after an update the focus is on the card that took the place; Tab reaches its Like
    focused = page.evaluate(
        "document.activeElement.closest('.card') && document.activeElement.closest('.card').dataset.movieId"
    )
    assert focused is not None and int(focused) == card_ids(page)[1]
    page.keyboard.press("Tab")
    label = page.evaluate("document.activeElement.getAttribute('aria-label')")
    assert label.startswith("Like "), label
    liked = int(focused)
    page.keyboard.press("Enter")
    expect(page.locator("#recs-note")).to_contain_text("You liked")
    expect(page.locator(f'#recs .card[data-movie-id="{liked}"]')).to_have_count(0)
    expect(page.locator("#recs .badge").first).to_have_text("New")
    assert page.evaluate("window.__samePage") == "yes"  # never reloaded
    shot(page, f"{device}-03-after-feedback")
    fits_width(page)

    # --- a later visit: the profile is remembered; a loading state shows while the API answers
    held = []
    recs_url = re.compile(r"/user/\d+/recommendation")

    def hold(route):
        held.append(route)

    page.route(recs_url, hold)
    page.reload()
    expect(page.locator("main .loading")).to_be_visible()
    expect(page.locator("main")).to_have_attribute("aria-busy", "true")
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert held, "the page did not ask for the recommendations"
    held[0].continue_()
    page.unroute(recs_url, hold)
    expect(page.get_by_role("heading", name="Your recommendations")).to_be_visible()
    expect(page.locator("main")).not_to_have_attribute("aria-busy", "true")
    assert card_ids(page) == [
        m["movieId"]
        for m in site.get(f"/user/{user['userId']}/recommendation?n=12")["recommendations"]
    ]
    assert liked not in card_ids(page) and disliked not in card_ids(page)

    # --- a movie's page, then one of its similar movies
    movie_card = page.locator("#recs .card").first
    movie_id = int(movie_card.get_attribute("data-movie-id"))
    movie_card.locator("a.movie-link").click()
    expect(page).to_have_url(re.compile(rf"#/movie/{movie_id}$"))
    similar = site.get(f"/movie/{movie_id}/similar?n=12")
    meta = site.get(f"/movie/{movie_id}/metadata")
    expect(page.get_by_role("heading", level=1)).to_contain_text(similar["name"])
    expect(page.locator(".movie .overview")).to_have_text(
        meta["overview"] or "No overview available."
    )
    assert card_ids(page, "#similar .card") == [m["movieId"] for m in similar["similar"]]
    for shown in (meta["collection"], ", ".join(meta["companies"][:3])):
        if shown:  # the facts show the franchise and the first production companies
            expect(page.locator(".movie .facts")).to_contain_text(shown)
    page.get_by_role("button", name=f"Add {similar['name']} to my list", exact=True).click()
    shot(page, f"{device}-04-movie")
    fits_width(page)

    other = similar["similar"][0]
    page.locator("#similar .card").first.locator("a.movie-link").click()
    expect(page).to_have_url(re.compile(rf"#/movie/{other['movieId']}$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(other["name"])
    expect(page.locator("#similar .card").first).to_be_visible()
    page.get_by_role("button", name=f"Add {other['name']} to my list", exact=True).click()
    expect(page.locator("#list-count")).to_have_text("2")
    page.go_back()  # browser history works: back to the first movie
    expect(page.get_by_role("heading", level=1)).to_contain_text(similar["name"])
    expect(
        page.get_by_role("button", name=f"Remove {similar['name']} from my list")
    ).to_have_attribute("aria-pressed", "true")
    shot(page, f"{device}-05-similar-movie")

    # --- title search: results while typing, reachable with the keyboard
    search = page.get_by_role("searchbox", name="Search movie titles")
    search.press_sequentially("toy sto", delay=30)
    results = page.locator("#search-results a")
    expect(results.first).to_be_visible()
    api_search = site.get("/movies/search?q=toy%20sto&limit=8")["results"]
    assert results.evaluate_all("els => els.map(e => e.getAttribute('href'))") == [
        f"#/movie/{m['movieId']}" for m in api_search
    ]
    matches = "title matches" if len(api_search) == 1 else "titles match"
    expect(page.locator("#search-status")).to_contain_text(f"{len(api_search)} {matches}")
    shot(page, f"{device}-06-search")
    search.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"#/movie/{api_search[0]['movieId']}$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(api_search[0]["name"])
    expect(page.locator("#search-panel")).to_be_hidden()

    # --- share the list and open the link as someone else
    page.get_by_role("link", name=re.compile("^My list")).click()
    expect(page.get_by_role("heading", name="My list")).to_be_visible()
    expect(page.locator("#my-list li")).to_have_count(2)
    page.get_by_label("Title", exact=True).fill(f"Sci-fi night ({device})")
    page.get_by_label("Description (optional)").fill("Two for the weekend.")
    page.get_by_role("button", name="Share this list").click()
    link_box = page.locator("#share-link")
    expect(link_box).to_have_value(re.compile(rf"^{re.escape(site.url)}/#/lists/{SLUG}$"))
    link = link_box.input_value()
    slug = link.rsplit("/", 1)[1]
    shared = site.get(f"/lists/{slug}")
    assert shared["title"] == f"Sci-fi night ({device})" and shared["userId"] == user["userId"]
    assert [m["movieId"] for m in shared["movies"]] == [movie_id, other["movieId"]]
    shot(page, f"{device}-07-share")
    fits_width(page)

    friend_context, friend = new_page(browser, device)  # no profile, no token
    friend.goto(link)
    expect(friend.get_by_role("heading", level=1)).to_have_text(f"Sci-fi night ({device})")
    expect(friend.locator(".list-description")).to_have_text("Two for the weekend.")
    assert card_ids(friend, "#shared-movies .card") == [movie_id, other["movieId"]]
    expect(friend.locator("#shared-movies .card").first).to_contain_text(
        shared["movies"][0]["name"]
    )
    assert friend.evaluate("localStorage.getItem('movietime.user')") is None
    shot(friend, f"{device}-08-shared-list-opened")
    fits_width(friend)

    # --- start over: the browser forgets the profile and the list
    page.get_by_role("link", name="For you").click()
    expect(page.get_by_role("heading", name="Your recommendations")).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Start over").click()
    expect(page.get_by_role("heading", name="Welcome to Movie Time")).to_be_visible()
    assert page.evaluate("localStorage.getItem('movietime.user')") is None
    expect(page.locator("#list-count")).to_have_text("0")

    assert page.problems == [] and friend.problems == []
    friend_context.close()
    context.close()


def test_errors_are_shown_when_the_api_fails(browser, tmp_path):
    """A store that does not answer (503 from the API), then no API at all (the server is gone):
    the page says so in an alert with a way to try again, instead of failing silently."""
    from playwright.sync_api import expect

    dead_store = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"
    site = start_site(dead_store, "nothing_here", tmp_path / "api.log")
    try:
        context, page = new_page(browser, "phone")
        page.goto(site.url + "/")
        failed = page.get_by_role("alert").filter(has_text="Movie Time is unavailable right now")
        expect(failed).to_be_visible()
        expect(failed).to_contain_text("the data store is unavailable")
        expect(page.get_by_role("heading", name="This page could not be loaded")).to_be_visible()
        fits_width(page)
        shot(page, "error-01-store-down")

        site.stop()  # now the API itself is unreachable: a search while typing fails
        page.get_by_role("searchbox", name="Search movie titles").press_sequentially(
            "star", delay=20
        )
        banner = page.locator("#banner")
        expect(banner).to_be_visible()
        expect(banner).to_have_attribute("role", "alert")
        expect(banner).to_contain_text("The Movie Time API could not be reached")
        expect(page.locator("#search-status")).to_have_text("Search failed.")
        shot(page, "error-02-api-unreachable")

        page.get_by_role("button", name="Dismiss").click()
        expect(banner).to_be_hidden()
        page.locator("#load-retry").click()  # the view's own retry, with the API still gone
        expect(page.get_by_role("alert").filter(has_text="could not be reached")).to_be_visible()
        expect(page.get_by_role("heading", name="This page could not be loaded")).to_be_visible()
        context.close()
    finally:
        site.stop()


def post(site: Site, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        site.url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as res:
        return json.loads(res.read())


def visitor_with_profile(browser, site: Site, genres: list[str], ratings: list[dict]):
    """A visitor whose browser already holds a new user's profile (made through the API)."""
    created = post(site, "/users", {"genres": genres, "ratings": ratings})
    stored = {k: created[k] for k in ("userId", "token", "cluster")}
    context, page = new_page(browser, "desktop")
    context.add_init_script(
        f"localStorage.setItem('movietime.user', {json.dumps(json.dumps(stored))})"
    )
    return context, page, stored


def test_two_visitors_watch_together(browser, site):
    from playwright.sync_api import expect

    ctx_a, page_a, a = visitor_with_profile(
        browser, site, ["Sci-Fi", "Action", "Adventure"], [{"movieId": 260, "rating": 5}]
    )
    page_a.goto(site.url + "/#/recommendations")
    page_a.get_by_role("link", name="Watch together").click()
    expect(page_a.get_by_role("heading", name="Watch together")).to_be_visible()
    link = page_a.locator("#together-link").input_value()
    assert link.endswith(f"#/together/{a['userId']}") and a["token"] not in link

    ctx_b, page_b, b = visitor_with_profile(
        browser, site, ["Comedy", "Romance", "Drama"], [{"movieId": 356, "rating": 5}]
    )
    page_b.goto(link)  # B opens A's link: a group of the two, and its list
    expect(page_b.get_by_role("heading", name="Watching together")).to_be_visible()
    slug = page_b.evaluate("location.hash").split("/")[-1]
    group = site.get(f"/groups/{slug}/recommendation?n=12")
    assert sorted(group["members"]) == sorted([a["userId"], b["userId"]])
    assert card_ids(page_b, "#group-recs .card") == [m["movieId"] for m in group["recommendations"]]
    expect(page_b.locator("#group-members")).to_contain_text("you")
    first = page_b.locator("#group-recs .card").first
    expect(first.locator(".group-ratings")).to_contain_text("you ★")
    gone = group["recommendations"][0]["movieId"]
    first.get_by_role("button", name=re.compile("^Dislike ")).click()
    expect(page_b.locator("#group-note")).to_contain_text("The group's list is updated")
    after = site.get(f"/groups/{slug}/recommendation?n=12")["recommendations"]
    assert gone not in [m["movieId"] for m in after]
    assert card_ids(page_b, "#group-recs .card") == [m["movieId"] for m in after]
    assert (
        page_b.locator("#group-link")
        .input_value()
        .endswith(f"#/together/{','.join(map(str, group['members']))}")
    )
    shot(page_b, "desktop-09-watch-together")
    fits_width(page_b)
    assert not page_a.problems and not page_b.problems, page_a.problems + page_b.problems
    ctx_a.close()
    ctx_b.close()
