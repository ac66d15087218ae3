#!/usr/bin/env python3
"""Drives `ringdropctl web`'s page in a real headless Chromium (Debian's
chromium and chromium-driver, through Selenium), as a user would: the
Rust test (tests/tests/web.rs) starts the daemons and the page's server,
then runs this with what it needs in the environment, and checks the
files afterwards.

Steps (each leaves a screenshot in RD_SHOTS):
  no-token   the page without its token shows why and no data
  fetch      a ticket pasted into the fetch form starts a transfer whose
             progress moves on the page; its pause and resume buttons work
  inbox      an offer (its name chosen by the sender, with markup in it)
             is accepted into RD_INBOX_DIR by clicking
  share      RD_SHARE_PATH is shared from the page (typed, then Enter); its
             ticket goes to RD_OUT
  names      names a peer chose with <script> (the transfer's) show as
             text; nothing ran
  phone      at 390 px wide the page needs no sideways scrolling
Or, with RD_BENCH=1: the time to the page's first render (rd-ready).
"""

import json
import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

URL = os.environ["RD_URL"]
TOKEN = os.environ.get("RD_TOKEN", "")
SHOTS = os.environ.get("RD_SHOTS", "/tmp")
WAIT = 60


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("RD_CHROMIUM", "/usr/bin/chromium")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
    ):
        opts.add_argument(flag)
    opts.add_argument("--user-data-dir=" + os.environ.get("RD_PROFILE", "/tmp/rd-chromium"))
    service = Service(os.environ.get("RD_CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=opts)


def shot(d, name):
    os.makedirs(SHOTS, exist_ok=True)
    d.save_screenshot(os.path.join(SHOTS, name + ".png"))


def until(d, what, fn, timeout=WAIT):
    try:
        # Rows are redrawn as the daemon reports: an element may go stale
        # between finding and reading it; the next poll finds the new one.
        ignored = (StaleElementReferenceException, NoSuchElementException)
        return WebDriverWait(d, timeout, poll_frequency=0.1, ignored_exceptions=ignored).until(
            lambda _: fn()
        )
    except Exception as e:
        shot(d, "failed-" + what.replace(" ", "-"))
        errors = d.find_elements(By.ID, "error")
        shown = errors[0].text if errors else ""
        raise SystemExit(f"timed out waiting for {what} (page error: {shown!r}): {e}")


def fill(d, element_id, text):
    el = d.find_element(By.ID, element_id)
    el.clear()
    el.send_keys(text)


def click(d, el):
    d.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
    el.click()


def click_css(d, what, css):
    """Clicks what `css` finds, finding it again if a live update redrew it."""
    def go():
        click(d, d.find_element(By.CSS_SELECTOR, css))
        return True
    until(d, what, go)


def open_with_token(d):
    d.get(URL + "#token=" + TOKEN)
    until(d, "the first render", lambda: d.execute_script("return document.body.dataset.ready === '1'"))
    # The token left the address bar.
    assert "#token" not in d.current_url, d.current_url


def no_token(d):
    d.get(URL)
    until(d, "the missing token to be shown", lambda: d.find_element(By.ID, "auth-error").is_displayed())
    assert not d.find_elements(By.CSS_SELECTOR, "#transfers tr[data-transfer-id]"), "data without a token"
    shot(d, "01-no-token")


def fetch_moves(d):
    fill(d, "fetch-ticket", os.environ["RD_FETCH_TICKET"])
    fill(d, "fetch-out", os.environ["RD_FETCH_OUT"])
    click(d, d.find_element(By.ID, "fetch-submit"))
    row = "#transfers tr[data-transfer-id]"

    def done():
        rows = d.find_elements(By.CSS_SELECTOR, row + " .progress")
        return int(rows[0].get_attribute("data-bytes-done") or 0) if rows else None

    first = until(d, "the transfer's progress", lambda: (done() or 0) > 0 and done())
    shot(d, "02-transfer-running")
    later = until(d, "the progress to move", lambda: (done() or 0) > first and done())
    print(f"progress moved on the page: {first} -> {later} bytes")

    # Pause and resume it with the row's buttons.
    def state():
        rows = d.find_elements(By.CSS_SELECTOR, row)
        return rows[0].get_attribute("data-state") if rows else ""

    click_css(d, "the pause button", row + " button.pause")
    until(d, "the transfer to pause", lambda: state() == "TRANSFER_STATE_PAUSED")
    shot(d, "02b-transfer-paused")
    click_css(d, "the resume button", row + " button.resume")
    until(d, "the transfer to run again",
          lambda: state() in ("TRANSFER_STATE_RUNNING", "TRANSFER_STATE_COMPLETED"))
    print("paused and resumed from the page")
    return later


def accept_offer(d):
    sel = "#inbox tr[data-offer-id]"
    until(d, "the offer in the inbox", lambda: d.find_elements(By.CSS_SELECTOR, sel))
    row = d.find_element(By.CSS_SELECTOR, sel)
    offer_name = os.environ["RD_OFFER_NAME"]
    assert offer_name in row.text, f"offer name not shown as text: {row.text!r}"
    shot(d, "03-inbox-offer")
    dest = row.find_element(By.CSS_SELECTOR, ".accept-dir")
    dest.clear()
    dest.send_keys(os.environ["RD_INBOX_DIR"])
    click(d, row.find_element(By.CSS_SELECTOR, ".accept"))

    def state():
        cells = d.find_elements(By.CSS_SELECTOR, sel + " .state")
        return cells[0].text.lower() if cells else ""

    until(d, "the offer to be accepted", lambda: state() not in ("", "pending", "delivered"))
    print(f"offer accepted on the page: {state()}")
    shot(d, "04-inbox-accepted")


def share_path(d):
    # With the keyboard: the path, then Enter.
    fill(d, "share-path", os.environ["RD_SHARE_PATH"] + Keys.ENTER)
    ticket = until(
        d,
        "the new share's ticket",
        lambda: (t := d.find_elements(By.CSS_SELECTOR, "#share-result .ticket")) and t[0].text.strip(),
    )
    assert ticket.startswith("rdrop"), ticket
    until(d, "the share in the table", lambda: d.find_elements(By.CSS_SELECTOR, "#shares tr[data-hash]"))
    shot(d, "05-shared")
    return ticket


def names_are_text(d):
    evil = os.environ["RD_EVIL_NAME"]
    until(
        d,
        "the transfer's name as text",
        lambda: any(evil in r.text for r in d.find_elements(By.CSS_SELECTOR, "#transfers tr[data-transfer-id]")),
    )
    # Nothing the peers chose ran or became an element.
    scripts = d.execute_script("return document.querySelectorAll('script').length")
    assert scripts == 1, f"{scripts} script elements: a name became markup"
    injected = d.execute_script("return document.querySelectorAll('img[src=\"x\"]').length")
    assert injected == 0, f"{injected} elements injected from names"
    logs = d.get_log("browser") if hasattr(d, "get_log") else []
    csp = [entry for entry in logs if "Content Security Policy" in entry.get("message", "")]
    assert not csp, f"the page broke its own CSP: {csp}"
    shot(d, "06-names-as-text")


def phone_width(d):
    """At a phone's width the page needs no sideways scrolling (wide
    tables scroll inside their own box)."""
    d.set_window_size(390, 844)
    until(d, "the narrow layout", lambda: d.execute_script("return window.innerWidth") <= 400)
    over = d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    shot(d, "07-phone-width")
    assert over <= 1, f"the page is {over} px wider than a phone's screen"


def bench(d):
    """Time from navigation to the page's first full render, median of 3."""
    times = []
    for _ in range(3):
        d.get("about:blank")
        d.get(URL + "#token=" + TOKEN)
        until(d, "the first render", lambda: d.execute_script("return document.body.dataset.ready === '1'"))
        ms = d.execute_script(
            "const m = performance.getEntriesByName('rd-ready');"
            "return m.length ? m[0].startTime : null;"
        )
        times.append(ms)
    shot(d, "bench-first-render")
    rows = d.execute_script(
        "return [document.querySelectorAll('#transfers tr[data-transfer-id]').length,"
        " document.querySelectorAll('#shares tr[data-hash]').length]"
    )
    times.sort()
    print(json.dumps({"first_render_ms": times[1], "runs_ms": times, "rows": rows}))


def main():
    d = browser()
    try:
        if os.environ.get("RD_BENCH"):
            bench(d)
            return
        no_token(d)
        open_with_token(d)
        shot(d, "00-page")
        result = {}
        result["bytes_seen"] = fetch_moves(d)
        accept_offer(d)
        result["ticket"] = share_path(d)
        names_are_text(d)
        phone_width(d)
        with open(os.environ["RD_OUT"], "w") as f:
            json.dump(result, f)
    finally:
        d.quit()


if __name__ == "__main__":
    sys.exit(main())
