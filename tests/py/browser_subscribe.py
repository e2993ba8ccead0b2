#!/usr/bin/env python3
"""A reader subscribes in a real browser: headless Chromium driven by Selenium through
Debian's chromedriver (nothing is downloaded). Opens an issue page served by `gazette serve`,
fills the subscribe form and submits it; waits for the confirmation mail in smtp-sink's dump
directory; opens the mail's confirm link and presses the button. With a sent issue's file
given, it then follows that mail's unsubscribe link and presses that button too.

usage: browser_subscribe.py subscribe ISSUE_URL DUMP_DIR EMAIL
       browser_subscribe.py unsubscribe EML_FILE
Prints one JSON object with what each page said; exits non-zero on any failure.
"""

import email
import html
import email.policy
import json
import os
import re
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait


def browser(profile):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
    ]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(20)
    return driver


def mail_to(dump, address, deadline):
    """The first message smtp-sink received for `address` (waits until `deadline`)."""
    while time.time() < deadline:
        for name in sorted(os.listdir(dump)):
            with open(os.path.join(dump, name), "rb") as f:
                raw = f.read()
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            rcpts = [v for k, v in msg.items() if k.lower() == "x-rcpt-args"]
            if any(address in r for r in rcpts):
                try:
                    if "token=" in text_of(msg):
                        return msg
                except Exception:
                    pass  # still being written
        time.sleep(0.2)
    raise SystemExit(f"no mail to {address} arrived within the time")


def text_of(msg):
    return msg.get_body(("plain",)).get_content()


def press(driver, url, title_before):
    """Opens `url`, checks the page, presses its one button; returns both pages' headings."""
    driver.get(url)
    wait = WebDriverWait(driver, 20)
    first = wait.until(EC.presence_of_element_located((By.TAG_NAME, "h1"))).text
    buttons = driver.find_elements(By.CSS_SELECTOR, "form button, form input[type=submit]")
    if len(buttons) != 1:
        raise SystemExit(f"{len(buttons)} buttons on {title_before} page")
    buttons[0].click()
    # The old page's heading goes stale while the next page loads: look again until the new
    # one is there, and read it in the same look.
    after = WebDriverWait(
        driver, 20, ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)
    )

    def new_heading(d):
        text = d.find_element(By.TAG_NAME, "h1").text
        return text if text != first else False

    return first, after.until(new_heading)


def subscribe(issue_url, dump, address):
    out = {}
    with tempfile.TemporaryDirectory() as profile:
        driver = browser(profile)
        try:
            driver.get(issue_url)
            wait = WebDriverWait(driver, 20)
            field = wait.until(EC.presence_of_element_located((By.ID, "subscribe-email")))
            out["issue_title"] = driver.title
            field.send_keys(address)
            driver.find_element(By.ID, "subscribe-name").send_keys("浏览器读者")
            # A person cannot see the honeypot.
            honeypot = driver.find_element(By.ID, "subscribe-website")
            out["honeypot_displayed"] = honeypot.is_displayed() and honeypot.rect["x"] >= 0
            driver.find_element(By.CSS_SELECTOR, "form.subscribe button[type=submit]").click()
            wait.until(lambda d: "subscribe" in d.current_url)
            out["after_submit"] = wait.until(
                EC.presence_of_element_located((By.TAG_NAME, "h1"))
            ).text
            msg = mail_to(dump, address, time.time() + 20)
            links = re.findall(r"https?://\S+/confirm\?token=\S+", text_of(msg))
            if len(links) != 1:
                raise SystemExit(f"confirm links in the mail: {links}")
            out["confirm_link"] = links[0]
            out["confirm_page"], out["after_confirm"] = press(driver, links[0], "confirm")
        finally:
            driver.quit()
    return out


def unsubscribe(eml):
    with open(eml, "rb") as f:
        msg = email.message_from_bytes(f.read(), policy=email.policy.default)
    # The footer's link, as a reader clicks it in the HTML part.
    body = msg.get_body(("html",)).get_content()
    links = [
        html.unescape(h)
        for h in re.findall(r'href="([^"]*unsubscribe[^"]*token=[^"]*)"', body)
    ]
    if not links:
        raise SystemExit("no unsubscribe link in the mail's HTML")
    out = {"unsubscribe_link": links[0]}
    with tempfile.TemporaryDirectory() as profile:
        driver = browser(profile)
        try:
            out["unsubscribe_page"], out["after_unsubscribe"] = press(
                driver, links[0], "unsubscribe"
            )
        finally:
            driver.quit()
    return out


if sys.argv[1] == "subscribe":
    result = subscribe(sys.argv[2], sys.argv[3], sys.argv[4])
else:
    result = unsubscribe(sys.argv[2])
print(json.dumps(result, ensure_ascii=False))
