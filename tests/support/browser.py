#!/usr/bin/env python3
"""A real headless browser for the Python tests that look at a page as a person would: Debian's Chromium
driven by Selenium (PyPI) through Debian's chromedriver; `tools/dev deps` installs all three. start() gives a
WebDriver on a throwaway profile that reaches nothing but what a test points it at: every background
service, update, sync, metrics and the like is switched off, and no name but localhost resolves (a page on
127.0.0.1, [::1] or localhost loads; any other name fails with ERR_NAME_NOT_RESOLVED, looked up nowhere).
Downloads land in a directory without a prompt; wait_for_file() waits for one to finish, console_errors()
gives the console's errors (a Content-Security-Policy violation, a script error, a failed load),
screenshot() saves a PNG to look at.
Import it with
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
and always quit what start() gave:
    driver = browser.start(download_dir=work)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        ...
        assert not browser.console_errors(driver)
    finally:
        driver.quit()
Run alone (python3 tests/support/browser.py) it checks itself on a page served from loopback: it loads the
page, sees a CSP violation in the console, downloads a file and takes a screenshot, and prints "ok".
"""
import os
import shutil
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

# The browser binary itself: /usr/bin/chromium is Debian's launcher script, which sources /etc/chromium.d
# (Google API keys, and --enable-remote-extensions, which turns background networking back on).
CHROMIUM = "/usr/lib/chromium/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Headless, and nothing that talks to anyone but the page's own server.
SWITCHES = [
    "--headless=new",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-breakpad",
    "--disable-client-side-phishing-detection",
    "--disable-domain-reliability",
    "--metrics-recording-only",
    "--no-pings",
    "--safebrowsing-disable-auto-update",
    "--disable-search-engine-choice-screen",
    "--password-store=basic",
    # What the switches above leave (a default search engine prewarm, the account list, an update check):
    # no name but localhost resolves, so nothing is looked up or reached but an address a test gives.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.*, EXCLUDE ::1",
    "--disable-features=Translate,OptimizationHints,OptimizationHintsFetching,OptimizationGuideModelDownloading,"
    "MediaRouter,DialMediaRouteProvider,AutofillServerCommunication,CertificateTransparencyComponentUpdater,"
    "InterestFeedContentSuggestions,PrivacySandboxSettings4,NetworkTimeServiceQuerying",
]
PREFS = {
    "safebrowsing.enabled": False,
    "search.suggest_enabled": False,
    "translate.enabled": False,
    "credentials_enable_service": False,
    "profile.password_manager_enabled": False,
    "signin.allowed": False,
    "net.network_prediction_options": 2,
}
# Bounds for everything the driver waits on, in seconds.
PAGE_LOAD_TIMEOUT = 30
SCRIPT_TIMEOUT = 30


class _Chrome(webdriver.Chrome):
    """A Chrome WebDriver whose quit() also removes its throwaway profile."""
    _dala_profile = None

    def quit(self):
        try:
            super().quit()
        finally:
            if self._dala_profile is not None:
                shutil.rmtree(self._dala_profile, ignore_errors=True)


def start(download_dir=None, width=1280, height=900):
    """A WebDriver for a new headless Chromium (its pages, and so screenshots, width x height pixels) on a
    throwaway profile; with download_dir, a download lands there without a prompt. Its console is logged
    (console_errors). The sandbox is off when running as root (Chromium will not start there with it).
    Quit it when done: that also removes the profile."""
    profile = tempfile.mkdtemp(prefix="dala-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for switch in SWITCHES:
        options.add_argument(switch)
    options.add_argument(f"--window-size={width},{height}")
    options.add_argument(f"--user-data-dir={profile}")
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    prefs = dict(PREFS)
    if download_dir is not None:
        download_dir = os.path.abspath(download_dir)
        prefs.update({"download.default_directory": download_dir, "download.prompt_for_download": False,
                      "download.directory_upgrade": True})
    options.add_experimental_option("prefs", prefs)
    try:
        driver = _Chrome(service=Service(CHROMEDRIVER), options=options)
    except BaseException:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    driver._dala_profile = profile
    try:
        driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT)
        driver.set_script_timeout(SCRIPT_TIMEOUT)
        # --window-size is the window's; headless keeps room for a toolbar in it, so grow the window by that.
        dw, dh = driver.execute_script("return [outerWidth - innerWidth, outerHeight - innerHeight]")
        if dw or dh:
            driver.set_window_size(width + dw, height + dh)
        if download_dir is not None:
            driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": download_dir})
    except BaseException:
        driver.quit()
        raise
    return driver


def wait_for_file(dir, suffix, timeout=20):
    """The path of a finished download in dir whose name ends with suffix (the newest, if several), once
    there is one and no download into dir is still in progress (.crdownload); AssertionError after timeout
    seconds."""
    deadline = time.monotonic() + timeout
    while True:
        names = os.listdir(dir)
        done = [n for n in names if n.endswith(suffix) and not n.endswith(".crdownload")]
        if done and not any(n.endswith(".crdownload") for n in names):
            return max((os.path.join(dir, n) for n in done), key=os.path.getmtime)
        if time.monotonic() >= deadline:
            raise AssertionError(f"no finished download ending {suffix!r} in {dir} after {timeout} s: {sorted(names)}")
        time.sleep(0.1)


def console_errors(driver):
    """The console's entries of level SEVERE since the last call (each call takes what it returns): CSP
    violations ("Refused to ... because it violates the following Content Security Policy directive"),
    uncaught script errors, failed loads (a missing favicon.ico counts: give a page <link rel="icon"
    href="data:,">). Each is a dict with level, message, source and timestamp."""
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def screenshot(driver, path):
    """Saves what the window shows as a PNG at path; returns path."""
    if not driver.save_screenshot(path):
        raise AssertionError(f"no screenshot saved at {path}")
    return path


def _self_test():
    import http.server
    import socket
    import threading

    page = b"""<!doctype html><html><head><meta charset="utf-8"><title>Dala browser check</title>
<link rel="icon" href="data:,"></head><body><h1 id="h">Dala</h1>
<p><a id="csv" href="/report.csv">report.csv</a></p>
<script src="/ok.js"></script></body></html>"""
    csp_page = b"""<!doctype html><html><head><meta charset="utf-8"><title>CSP</title>
<link rel="icon" href="data:,"></head><body><script>document.title = "inline ran";</script></body></html>"""
    csv = b"id,value\r\n1,\xc3\xa9t\xc3\xa9\r\n"
    files = {
        "/": ("text/html; charset=utf-8", page, {}),
        "/ok.js": ("text/javascript", b"document.getElementById('h').dataset.ran = 'yes';", {}),
        "/csp": ("text/html; charset=utf-8", csp_page, {"Content-Security-Policy": "script-src 'self'"}),
        "/report.csv": ("text/csv", csv, {"Content-Disposition": 'attachment; filename="report.csv"'}),
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path not in files:
                self.send_error(404)
                return
            kind, body, headers = files[self.path]
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    work = tempfile.mkdtemp(prefix="dala-browser-test-")
    driver = None
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        downloads = os.path.join(work, "downloads")
        os.mkdir(downloads)
        began = time.monotonic()
        driver = start(download_dir=downloads)
        started = time.monotonic() - began
        driver.get(f"http://127.0.0.1:{port}/")
        if driver.title != "Dala browser check":
            raise AssertionError(f"title {driver.title!r}")
        if driver.find_element("id", "h").get_attribute("data-ran") != "yes":
            raise AssertionError("the page's script did not run")
        errors = console_errors(driver)
        if errors:
            raise AssertionError(f"console errors on a clean page: {errors}")
        shot = screenshot(driver, os.path.join(work, "page.png"))
        with open(shot, "rb") as f:
            head = f.read(24)
        if head[:8] != b"\x89PNG\r\n\x1a\n" or head[16:24] != (1280).to_bytes(4, "big") + (900).to_bytes(4, "big"):
            raise AssertionError(f"the screenshot is not a 1280x900 PNG: {head!r}")
        driver.find_element("id", "csv").click()
        got = wait_for_file(downloads, ".csv")
        with open(got, "rb") as f:
            if f.read() != csv:
                raise AssertionError(f"{got} differs from what was served")
        driver.get(f"http://127.0.0.1:{port}/csp")
        if driver.title != "CSP":
            raise AssertionError(f"an inline script ran despite script-src 'self' (title {driver.title!r})")
        errors = console_errors(driver)
        if not any("Content Security Policy" in e["message"] for e in errors):
            raise AssertionError(f"no CSP violation in the console: {errors}")
        print(f"browser started in {started:.2f} s; {driver.capabilities.get('browserVersion')}")
        print("ok")
    finally:
        if driver is not None:
            driver.quit()
        server.shutdown()
        server.server_close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    _self_test()
