#!/usr/bin/env python3
"""A real browser follows an email's unsubscribe link: headless Chromium driven by Selenium
with Debian's chromedriver.

usage: browser_unsubscribe.py MESSAGE.eml ORIGIN SHOTS_DIR

Reads the message, takes the footer's unsubscribe link from its HTML part, and opens it with
its origin replaced by ORIGIN (the server as a reverse proxy would reach it). Prints one JSON
line per step on standard output and waits between steps, so the caller can check the
database:
  {"step": "opened", ...}     the GET page; then waits for a line "click" on standard input
  {"step": "clicked", ...}    the page after the button was clicked
  {"step": "shots", ...}      screenshots of the GET page at 375 and 1024 px wide
"""

import email
import email.policy
import json
import re
import sys
import tempfile
import urllib.parse

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

eml, origin, shots = sys.argv[1], sys.argv[2], sys.argv[3]


def say(obj):
    print(json.dumps(obj), flush=True)


msg = email.message_from_binary_file(open(eml, "rb"), policy=email.policy.default)
html = msg.get_body(preferencelist=("html",)).get_content()
links = re.findall(r'href="([^"]*unsubscribe[^"]*)"', html)
if not links:
    say({"step": "error", "why": "no unsubscribe link in the HTML part"})
    sys.exit(1)
link = links[-1].replace("&amp;", "&")
parts = urllib.parse.urlsplit(link)
local = origin.rstrip("/") + parts.path + ("?" + parts.query if parts.query else "")

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
profile = tempfile.mkdtemp(prefix="gazette-chromium-")
for flag in [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--user-data-dir=" + profile,
    "--window-size=1024,800",
]:
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
driver.set_page_load_timeout(30)
try:
    driver.get(local)
    buttons = driver.find_elements(By.CSS_SELECTOR, "form button, form input[type=submit]")
    opened_title = driver.title
    say({
        "step": "opened",
        "link": link,
        "title": opened_title,
        "text": driver.find_element(By.TAG_NAME, "body").text,
        "buttons": [b.text for b in buttons],
    })
    if sys.stdin.readline().strip() != "click":
        sys.exit(1)
    buttons[0].click()
    # The answer's title, in the newsletter's language, differs from the button page's.
    WebDriverWait(driver, 20).until(lambda d: d.title != opened_title)
    say({
        "step": "clicked",
        "title": driver.title,
        "text": driver.find_element(By.TAG_NAME, "body").text,
        "url": driver.current_url,
    })
    files = []
    for width in (375, 1024):
        driver.set_window_size(width, 800)
        driver.get(local)
        # The layout viewport's width, as the page sees it.
        inner = driver.execute_script("return window.innerWidth")
        scroll = driver.execute_script("return document.documentElement.scrollWidth")
        button = driver.execute_script(
            "return document.querySelector('form button').getBoundingClientRect().height")
        background = driver.execute_script(
            "return getComputedStyle(document.querySelector('form button')).backgroundColor")
        path = f"{shots}/unsubscribe-{width}.png"
        driver.save_screenshot(path)
        files.append({"width": width, "inner": inner, "scroll": scroll, "path": path,
                      "button": button, "background": background})
    say({"step": "shots", "files": files})
finally:
    driver.quit()
