"""The admin page in a real headless Chromium (Debian's chromium, driven by Playwright):
sign in, filter by user, open a conversation, open an error group, take a screenshot,
all under the service's Content-Security-Policy; and the API docs page's CDN script
runs only when it is the file its hash names."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from seed import seed
from servers import clean_env, run_chatspan_serve

pytestmark = pytest.mark.slow
ADMIN_KEY = "admin-page-key-0123456789abcdef"
CHROMIUM = os.environ.get("CHATSPAN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
# Records what the page's Content-Security-Policy blocked (Playwright's init scripts are
# not subject to it).
RECORD_CSP_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__violations.push(`${e.effectiveDirective} ${e.blockedURI}`));
"""
INJECT_AN_INLINE_SCRIPT = """() => new Promise((resolve) => {
  document.addEventListener("securitypolicyviolation",
    (e) => resolve(e.effectiveDirective), {once: true});
  const script = document.createElement("script");
  script.textContent = "window.__inline = true";
  document.body.append(script);  // an inline script that may run, runs now
  if (window.__inline) resolve("not blocked");
})"""


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHATSPAN_CHROMIUM)"
        if os.environ.get("CHATSPAN_REQUIRE_CHROMIUM") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


def test_sign_in_filter_open_a_conversation_and_an_error_group(browser, database_url, tmp_path):
    seed(database_url)
    env = clean_env(
        CHATSPAN_DATABASE_URL=database_url,
        CHATSPAN_ADMIN_API_KEYS=ADMIN_KEY,
        CHATSPAN_TRACE_URL_TEMPLATE="http://jaeger.local/trace/{trace_id}",
    )
    with run_chatspan_serve(tmp_path, env) as server:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.add_init_script(RECORD_CSP_VIOLATIONS)
        page.goto(f"{server.base_url}/console/admin/")

        page.fill("#key", "not-the-key-0123456789")
        page.click("#sign-in-form button")
        page.wait_for_selector("#sign-in-error:not([hidden])")
        assert "not accepted" in page.inner_text("#sign-in-error")

        page.fill("#key", ADMIN_KEY)
        page.click("#sign-in-form button")
        page.wait_for_selector("#chat-rows tr")
        assert page.locator("#chat-rows tr").count() == 50

        page.fill("#chat-filters input[name=user_id]", "user-3")
        page.click("#chat-filters button")
        # (a locator, not wait_for_function: the page's policy forbids the eval it polls with)
        from playwright.sync_api import expect

        expect(page.locator("#chat-rows tr")).to_have_count(12)
        users = page.locator("#chat-rows td:nth-child(2)").all_inner_texts()
        assert set(users) == {"user-3"}
        assert page.locator("#chat-rows a[href^='http://jaeger.local/trace/']").count() == 12

        page.locator("#chat-rows a.user").first.click()
        page.wait_for_selector("#conversation-turns .turn")
        assert "Conversations of user-3" in page.inner_text("#conversation-title")
        questions = page.locator("#conversation-turns .question").all_inner_texts()
        assert len(questions) == 12
        assert all(q.startswith("Question ") for q in questions)
        assert page.locator("#conversation-turns .conversation-id").count() >= 2

        page.click("#tabs button[data-view=errors]")
        page.wait_for_selector("#error-groups details")
        group = page.locator("#error-groups details", has_text="TimeoutError")
        group.locator("summary").click()
        assert "llm.py" in group.locator("pre.stack").inner_text()
        assert group.locator("pre.stack").is_visible()

        page.click("#tabs button[data-view=stats]")
        page.wait_for_selector("#totals .card")
        assert page.locator("#series-chart rect").count() > 0
        page.click("#tabs button[data-view=errors]")
        page.wait_for_selector("#error-groups details")
        page.locator("#error-groups details", has_text="TimeoutError").locator("summary").click()
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / f"admin-page-{database_url.split(':')[0]}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000

        # Everything above ran under the policy, which blocked nothing of the page's own;
        # an inline script (what an injected one would be) it does block.
        assert page.evaluate("window.__violations") == []
        blocked = page.evaluate(INJECT_AN_INLINE_SCRIPT)
        assert blocked.startswith("script-src")
        assert page.evaluate("window.__inline === undefined")


def test_chat_text_is_shown_as_text_never_run_as_html(browser, database_url, tmp_path):
    from chatspan import semconv as sc
    from chatspan.records import SpanData
    from chatspan.store.engine import make_engine
    from chatspan.store.writer import RecordWriter

    hostile = '<img src=x onerror="window.__owned = true"><script>window.__owned = true</script>'
    engine = make_engine(database_url, timeout_s=10)
    RecordWriter(engine).write(
        [
            SpanData(
                7,
                8,
                "chat",
                1_767_225_600_000_000_000,
                1_767_225_601_000_000_000,
                False,
                {
                    sc.GEN_AI_OPERATION_NAME: "chat",
                    sc.USER_ID: hostile,
                    sc.INPUT_VALUE: hostile,
                    sc.OUTPUT_VALUE: hostile,
                },
            )
        ]
    )
    engine.dispose()
    env = clean_env(CHATSPAN_DATABASE_URL=database_url, CHATSPAN_ADMIN_API_KEYS=ADMIN_KEY)
    with run_chatspan_serve(tmp_path, env) as server:
        page = browser.new_page()
        page.goto(f"{server.base_url}/console/admin/")
        page.fill("#key", ADMIN_KEY)
        page.click("#sign-in-form button")
        page.wait_for_selector("#chat-rows tr")
        page.locator("#chat-rows a.user").first.click()
        page.wait_for_selector("#conversation-turns .turn")
        # No element was made from the text (an <img> would fire onerror only later).
        assert page.locator("main img, main script").count() == 0
        assert page.evaluate("window.__owned === undefined")
        assert hostile in page.inner_text("#conversation-turns .question")


def test_the_docs_page_runs_no_cdn_script_but_the_one_its_hash_names(
    browser, database_url, tmp_path
):
    from chatspan.query_api.browser import SWAGGER_UI

    env = clean_env(CHATSPAN_DATABASE_URL=database_url, CHATSPAN_ADMIN_API_KEYS=ADMIN_KEY)
    with run_chatspan_serve(tmp_path, env, args=["--docs"]) as server:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text))
        # The CDN, taken over: it serves a script of its own under the pinned name.
        page.route(
            f"{SWAGGER_UI}/**",
            lambda route: route.fulfill(
                status=200,
                content_type="text/css"
                if route.request.url.endswith(".css")
                else "text/javascript",
                headers={"Access-Control-Allow-Origin": "*"},
                body="window.__owned = sessionStorage.getItem('chatspan-key');",
            ),
        )
        page.goto(f"{server.base_url}/docs")  # returns once the page has loaded
        # The page's own inline start-up script ran (its hash is in the policy) and found
        # no Swagger UI, because the changed bundle was refused and never ran.
        assert any("SwaggerUIBundle is not defined" in e for e in errors), errors
        assert any("integrity" in e for e in errors), errors
        assert page.evaluate("window.__owned === undefined")
