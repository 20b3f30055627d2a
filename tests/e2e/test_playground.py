"""The playground page in a real browser: headless Chromium (Debian's `chromium`, driven by Playwright's client)
against the plain local server with the published tiny models.

Each test checks what the page shows against the API's own JSON, and that the page logged no error and broke
no rule of its Content-Security-Policy. Screenshots (desktop 1280 px, phone 375 px) go to
.newsgen/artifacts/ (git-ignored).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / ".newsgen" / "artifacts"
LABEL = "machine-generated — not news"
# Records every CSP violation the page reports (an init script runs before the page's own and is not
# subject to its policy).
WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


def ensure_chromium() -> Path:
    """Debian's chromium: installed here when missing (we run as root with Debian's registry reachable). A
    browser test that cannot get its browser fails, loudly: it is never skipped."""
    if CHROMIUM.is_file():
        return CHROMIUM
    if shutil.which("apt-get") is None:
        pytest.fail(f"{CHROMIUM} is missing and there is no apt-get to install it: `apt-get install -y chromium`")
    problems = []
    for command in (
        ["apt-get", "install", "-y", "chromium"],
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "chromium"],
    ):
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        if command[1] == "install" and done.returncode == 0 and CHROMIUM.is_file():
            return CHROMIUM
        problems.append(f"$ {' '.join(command)} -> {done.returncode}\n{done.stderr[-800:]}")
    pytest.fail(
        "could not install Debian's chromium for the browser test (run as root: apt-get install -y chromium):\n"
        + "\n".join(problems)
    )


@pytest.fixture(scope="module")
def browser():
    executable = ensure_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(executable))
        yield launched
        launched.close()


class Watched:
    """A page with what it logged: console errors and uncaught exceptions, kept for the final check."""

    def __init__(self, page: Page):
        self.page, self.errors = page, []
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"{m.text} @ {m.location.get('url')}"))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def assert_clean(self, expected_statuses: tuple[int, ...] = ()) -> None:
        """No console error but the browser's own note of each HTTP error the test provoked, and no CSP
        violation."""
        expected = [f"status of {status} " for status in expected_statuses]
        unexpected = [
            e for e in self.errors if not (e.startswith("Failed to load resource") and any(s in e for s in expected))
        ]
        assert unexpected == [], unexpected
        assert self.page.evaluate("window.__violations") == []


@pytest.fixture
def open_page(browser, server):
    contexts = []

    def make(width: int = 1280, height: int = 900) -> Watched:
        context = browser.new_context(viewport={"width": width, "height": height})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
        context.add_init_script(WATCH_VIOLATIONS)
        contexts.append(context)
        watched = Watched(context.new_page())
        watched.page.goto(f"{server}/")
        watched.page.wait_for_selector("body[data-ready=true]", timeout=15_000)  # the spec is read
        return watched

    yield make
    for context in contexts:
        context.close()


def spec(server: str) -> dict:
    with urllib.request.urlopen(f"{server}/openapi.json", timeout=30) as response:
        return json.loads(response.read())


def limits(schema: dict) -> dict:
    branch = next((b for b in schema.get("anyOf", [schema]) if b.get("type") != "null"), schema)
    return {k: branch[k] for k in ("minimum", "maximum", "maxLength") if k in branch}


def generate(page: Page, path: str, submit=None) -> tuple[dict, dict]:
    """Submit the form (a click on Generate, or `submit`) and return (the request body, the API's answer)."""
    with page.expect_response(lambda r: r.url.endswith(path) and r.request.method == "POST", timeout=60_000) as info:
        (submit or page.get_by_role("button", name="Generate").click)()
    response = info.value
    # (A function, not an expression: Playwright would eval() an expression in the page, which the CSP forbids.)
    page.wait_for_function("() => document.getElementById('generate').getAttribute('aria-busy') === 'false'")
    return response.request.post_data_json, {"status": response.status, "body": response.json()}


def visible_knobs(page: Page):
    """The decoding knobs the current task shows: its first set of parameters (a request with several, such as
    headline_parameters and article_parameters, gets one set of fields each)."""
    return page.locator("fieldset.parameters:not([hidden])").first


def knob(page: Page, label: str):
    return visible_knobs(page).get_by_label(label, exact=True)


def cards(page: Page) -> list[dict]:
    return page.eval_on_selector_all(
        "#results .card",
        """cards => cards.map(c => ({
            label: c.querySelector('.label').textContent,
            headline: c.querySelector('.headline')?.textContent ?? null,
            article: c.querySelector('.article')?.textContent ?? null,
            meta: c.querySelector('.meta').textContent,
        }))""",
    )


def test_playground_generates_labels_and_checks_in_a_browser(open_page, server):
    watched = open_page()
    page = watched.page
    api = spec(server)
    # The page's limits are the API's: read from /openapi.json at load.
    components = api["components"]["schemas"]
    for selector, schema in (
        ("#n", components["PromptRequest"]["properties"]["n"]),
        ("#parameters-max_new_tokens", components["GenerationParameters"]["properties"]["max_new_tokens"]),
        ("#parameters-temperature", components["GenerationParameters"]["properties"]["temperature"]),
        ("#parameters-seed", components["GenerationParameters"]["properties"]["seed"]),
    ):
        wanted = limits(schema)
        shown = page.eval_on_selector(selector, "e => ({minimum: e.min, maximum: e.max})")
        assert {k: float(v) for k, v in shown.items()} == {k: float(wanted[k]) for k in ("minimum", "maximum")}, (
            selector
        )
    assert (
        page.eval_on_selector("#prompt", "e => e.maxLength")
        == limits(components["PromptRequest"]["properties"]["prompt"])["maxLength"]
    )
    # Every control has a label; nothing is put out of the natural tab order.
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
              .filter(e => !e.labels || e.labels.length === 0).map(e => e.id || e.name)"""
    )
    assert unlabelled == []
    assert (
        page.evaluate('document.querySelectorAll(\'[tabindex]:not([tabindex="0"]):not([tabindex="-1"])\').length') == 0
    )

    # Headlines: sampled, three of them; the busy state is set while the request runs.
    page.get_by_label("Start of the headline").fill("City council")
    page.get_by_label("How many").fill("3")
    knob(page, "Sampling").select_option("true")
    knob(page, "Max new tokens").fill("12")
    page.evaluate(
        """() => {
            window.__busy = [];
            const results = document.getElementById('results'), button = document.getElementById('generate');
            new MutationObserver(() => window.__busy.push([results.getAttribute('aria-busy'), button.disabled]))
              .observe(results, {attributes: true, attributeFilter: ['aria-busy']});
        }"""
    )
    sent, answer = generate(page, "/v1/headlines")
    assert sent == {"n": 3, "prompt": "City council", "parameters": {"do_sample": True, "max_new_tokens": 12}}
    assert answer["status"] == 200, answer
    headlines = answer["body"]
    shown = cards(page)
    assert [c["headline"] for c in shown] == [r["text"] for r in headlines["results"]]
    assert all(c["label"].lower() == LABEL for c in shown) and len(shown) == 3
    assert all(
        r["finish_reason"] and str(r["generated_tokens"]) in c["meta"]
        for c, r in zip(shown, headlines["results"], strict=True)
    )
    version = (
        headlines["model"]["version"] if isinstance(headlines["model"], dict) else headlines["model"][0]["version"]
    )
    assert all(version in c["meta"] for c in shown)
    assert page.evaluate("window.__busy") == [["true", True], ["false", False]]
    summary = page.locator("#run-summary").text_content()
    assert f"seed {headlines['provenance']['seed']}" in summary and " s · " in summary  # the timing
    page.get_by_text("Provenance record", exact=True).click()
    assert json.loads(page.locator(".provenance pre").text_content()) == headlines["provenance"]

    # Reuse the seed: the same request again writes the same headlines.
    visible_knobs(page).get_by_role("button", name="Reuse last").click()
    assert knob(page, "Seed").input_value() == str(headlines["provenance"]["seed"])
    sent, again = generate(page, "/v1/headlines", lambda: page.get_by_label("How many").press("Control+Enter"))
    assert sent["parameters"]["seed"] == headlines["provenance"]["seed"]
    assert [r["text"] for r in again["body"]["results"]] == [r["text"] for r in headlines["results"]]

    # Copy keeps the label with the text.
    page.locator(".card").first.get_by_role("button", name="Copy with label").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert LABEL in copied.lower() and headlines["results"][0]["text"] in copied

    # A 400 from the API (n=2 with greedy decoding): its JSON message is shown, the busy state ends.
    knob(page, "Seed").fill("")
    page.get_by_label("How many").fill("2")
    knob(page, "Sampling").select_option("false")
    _, refused = generate(page, "/v1/headlines")
    assert refused["status"] == 400 and refused["body"]["error_type"] == "invalid_request"
    error = page.locator("#generate-error")
    assert error.is_visible() and refused["body"]["error"] in error.text_content()
    assert refused["body"]["error_type"] in error.text_content()
    assert page.get_by_role("button", name="Generate").is_enabled()

    # News: headline + article per card, from Enter in the prompt.
    page.get_by_label("News", exact=True).check()
    knob(page, "Sampling").select_option("true")
    knob(page, "Max new tokens").fill("24")
    sent, news = generate(page, "/v1/news", lambda: page.get_by_label("Start of the headline").press("Enter"))
    assert news["status"] == 200 and sent["n"] == 2 and sent["prompt"] == "City council"
    assert not error.is_visible()  # the last error is cleared
    shown = cards(page)
    assert [(c["headline"], c["article"]) for c in shown] == [
        (item["headline"]["text"], item["article"]["text"]) for item in news["body"]["results"]
    ]
    assert all(c["label"].lower() == LABEL for c in shown)

    # Check a text: the first news item, headline and article together.
    with page.expect_response(lambda r: r.url.endswith("/v1/detect")) as info:
        page.locator(".card").first.get_by_role("button", name="Check watermark").click()
    checked = info.value
    assert checked.request.post_data_json == {"text": f"{shown[0]['headline']}\n\n{shown[0]['article']}"}
    verdict = checked.json()["results"][0]
    page.wait_for_selector("#verdict:not([hidden])")
    assert page.locator("#verdict").get_attribute("class") == f"verdict {verdict['verdict']}"
    assert f"{verdict['tokens_scored']} tokens scored" in page.locator("#verdict").text_content()

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "playground-desktop.png", full_page=True)
    watched.assert_clean(expected_statuses=(400,))
    # The policy is live: an HTML sink throws (Trusted Types), an inline style is refused and reported.
    assert (
        page.evaluate(
            "() => { try { document.body.innerHTML = '<b>x</b>'; return 'written'; } catch (e) { return e.name; } }"
        )
        == "TypeError"
    )
    page.evaluate("document.body.setAttribute('style', 'color: red')")
    page.wait_for_function("() => window.__violations.some(v => v.startsWith('style-src-attr'))")


def test_playground_on_a_phone_and_with_an_article(open_page):
    watched = open_page(width=375, height=800)
    page = watched.page
    page.get_by_label("Article for a headline").check()
    assert page.get_by_label("Headline", exact=True).get_attribute("required") is not None
    page.get_by_label("Headline", exact=True).fill("City council approves a new harbor ferry line")
    knob(page, "Max new tokens").fill("30")
    sent, article = generate(page, "/v1/articles")
    assert article["status"] == 200 and sent["headline"] == "City council approves a new harbor ferry line"
    shown = cards(page)
    assert [c["article"] for c in shown] == [r["text"] for r in article["body"]["results"]]
    assert shown[0]["label"].lower() == LABEL
    # Nothing wider than the phone: no sideways scrolling.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "playground-phone.png", full_page=True)
    watched.assert_clean()


def test_playground_asks_for_the_api_key_and_keeps_it_in_the_tab(open_page):
    """A stack that wants a key answers API Gateway's 403 {"message": "Forbidden"}: the page shows the key
    field; the key goes out as x-api-key and is kept in sessionStorage only."""
    watched = open_page()
    page = watched.page
    assert not page.get_by_label("API key").is_visible()

    def gateway(route):
        if route.request.headers.get("x-api-key") == "playground-test-key":
            route.continue_()
        else:
            route.fulfill(status=403, content_type="application/json", body='{"message":"Forbidden"}')

    page.route("**/v1/headlines", gateway)
    knob(page, "Max new tokens").fill("8")
    _, refused = generate(page, "/v1/headlines")
    assert refused["status"] == 403
    assert page.get_by_label("API key").is_visible()
    assert "needs an API key" in page.locator("#generate-error").text_content()
    page.get_by_label("API key").fill("playground-test-key")
    _, answer = generate(page, "/v1/headlines")
    assert answer["status"] == 200 and len(cards(page)) == 1
    assert page.evaluate("sessionStorage.getItem('newsgen.apiKey')") == "playground-test-key"
    assert page.evaluate("localStorage.length") == 0
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.get_by_label("API key").input_value() == "playground-test-key"  # same tab: still there
    watched.assert_clean(expected_statuses=(403,))
