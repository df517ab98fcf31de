"""The console in headless Chromium (Debian's ``chromium`` driven by Playwright) against a real
``ztgw serve``: request → approve in the console → the application's call succeeds → revoke in
the console → the next call is denied; consent given by the citizen → the application reads only
that citizen's records → consent revoked → denied.

With ``ZTGW_SCREENSHOTS=1`` the main pages are saved to docs/screenshots/ (desktop and phone).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ztgw.gateway.demo.realm import demo_citizen_record

from .conftest import RunningGateway

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).exists():
    pytest.skip("Debian chromium is not installed (apt-get install -y chromium)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


def shot(page: Any, name: str) -> None:
    if os.environ.get("ZTGW_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(browser: Any, gw: RunningGateway, username: str, password: str,
            viewport: dict[str, int] = DESKTOP) -> Any:
    context = browser.new_context(viewport=viewport, locale="zh-CN")
    page = context.new_page()
    page.goto(f"{gw.base}/console/")
    assert "/login" in page.url  # no session: the console sends the browser to sign in
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.goto(f"{gw.base}/console/")
    return page


def password(gw: RunningGateway, username: str) -> str:
    return next(u["password"] for u in gw.accounts["users"] if u["username"] == username)


def call(gw: RunningGateway, token: str, path: str) -> httpx.Response:
    return httpx.get(f"{gw.base}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_request_approve_read_revoke_in_the_console(gateway: RunningGateway, browser: Any) -> None:
    gw = gateway
    app = gw.token("demo-research")
    path = "/api/enterprise/companies?size=5"
    assert call(gw, app, path).status_code == 403
    r = httpx.post(f"{gw.base}/admin/v1/access-requests", timeout=30,
                   headers={"Authorization": f"Bearer {app}"},
                   json={"dataset": "enterprise.companies", "fields": ["uscc", "name", "industry"],
                         "purpose": "产业园区企业布局研究", "days": 90, "row_field": "district",
                         "row_values": ["南山区"], "rows_per_day": 500})
    assert r.status_code == 201, r.text
    request_id = r.json()["id"]

    page = sign_in(browser, gw, "zhouqiang", password(gw, "zhouqiang"))
    assert page.url.endswith("/console/requests")
    assert page.locator(f"a[href='/console/requests/{request_id}']").count() == 1
    shot(page, "console-requests")
    page.click(f"a[href='/console/requests/{request_id}']")
    assert "产业园区企业布局研究" in page.content()
    shot(page, "console-request")
    page.fill("#reason-a", "用途明确，字段与行范围最小必要，同意。")
    page.click("#approve")
    assert "已批准" in page.content()

    got = call(gw, app, path)
    assert got.status_code == 200, got.text
    items = got.json()["items"]  # one district: the row scope is pushed down to the upstream
    assert items and all(set(i) == {"uscc", "name", "industry"} for i in items)

    page.click("a[href^='/console/grants/grant-']")
    assert "生效中" in page.locator("#grant-status").inner_text()
    shot(page, "console-grant")
    page.fill("#rreason", "项目结束，收回授权。")
    page.click("#revoke")
    assert "已撤销" in page.locator("#grant-status").inner_text()
    refused = call(gw, app, path)
    assert refused.status_code == 403 and refused.json()["error"] == "access_denied"

    page.goto(f"{gw.base}/console/grants")
    shot(page, "console-grants")
    page.goto(f"{gw.base}/console/history")
    assert "demo-research" in page.content()
    shot(page, "console-history")
    page.goto(f"{gw.base}/console/datasets")
    assert "敏感个人信息" in page.content() or "个人信息" in page.content()
    shot(page, "console-datasets")
    page.goto(f"{gw.base}/console/apply/population.persons")
    assert page.locator("#submit-request").count() == 1
    shot(page, "console-apply")
    page.context.close()


def test_consent_given_read_own_records_revoked_in_the_console(gateway: RunningGateway,
                                                               browser: Any) -> None:
    gw = gateway
    me = demo_citizen_record()["id_number"]
    app = gw.token("demo-fintech")
    path = "/api/social-security/contributions?size=50"
    assert call(gw, app, path).status_code == 403
    r = httpx.post(f"{gw.base}/admin/v1/consent-requests", timeout=30,
                   headers={"Authorization": f"Bearer {app}"},
                   json={"dataset": "social-security.contributions", "purpose": "个人消费贷款资格核验",
                         "days": 30, "citizen": "citizen"})
    assert r.status_code == 201, r.text
    consent_url = r.json()["consent_url"]

    page = sign_in(browser, gw, "citizen", password(gw, "citizen"))
    assert page.url.endswith("/console/consent")
    assert "个人消费贷款资格核验" in page.content()
    shot(page, "console-consent-pending")
    page.click(f"a[href='{consent_url}']")
    assert "仅限您本人的记录" in page.content() and me not in page.content()
    shot(page, "console-consent-request")
    page.click("#give")
    assert "已授权" in page.content()

    got = call(gw, app, path)
    assert got.status_code == 200, got.text
    items = got.json()["items"]
    assert items and {i["id_number"] for i in items} == {me}
    # someone else's record is not readable: asking for it is refused
    assert call(gw, app, f"{path}&id_number=110101199003077777").status_code == 403

    page.goto(f"{gw.base}/console/my-data")
    assert "个人消费贷款资格核验" in page.content()  # the read above, under this consent
    shot(page, "console-my-data")
    page.goto(f"{gw.base}/console/consent")
    shot(page, "console-consent")
    page.click("button[id^='revoke-consent-']")
    assert "已撤销授权" in page.content()
    assert call(gw, app, path).status_code == 403
    page.context.close()

    phone = sign_in(browser, gw, "citizen", password(gw, "citizen"), viewport=PHONE)
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(phone, "console-consent-phone")
    phone.context.close()
