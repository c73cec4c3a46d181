"""Opens a page in headless Chromium and reports what a person would see.

Run: python page_check.py URL
Drives Chromium over the DevTools protocol, waits up to 20 s for the page's service worker
to register (the page sets <body data-sw="registered">), and prints one JSON object: the
agenda items' titles and times, data-sw, the active service worker's script URL and any
console errors.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from websockets.sync.client import connect

PROBE = """(async () => {
  const registration = await navigator.serviceWorker.getRegistration();
  return JSON.stringify({
    sw: document.body.dataset.sw,
    status: document.getElementById('push-status').textContent,
    script: registration && registration.active ? registration.active.scriptURL : null,
    items: [...document.querySelectorAll('#agenda li.occurrence')].map((li) => ({
      id: li.id,
      title: li.querySelector('.title').textContent,
      time: li.querySelector('time').textContent,
      button: li.querySelector('button.remind').textContent,
    })),
  });
})()"""


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def browser_binary():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    sys.exit("no Chromium found: install Debian's chromium package")


def main():
    url = sys.argv[1]
    port = free_port()
    profile = tempfile.mkdtemp()
    log = tempfile.TemporaryFile()
    chrome = subprocess.Popen(
        [browser_binary(), "--headless", "--no-sandbox", "--disable-gpu",
         f"--remote-debugging-port={port}", f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=log,
    )
    try:
        print(json.dumps(inspect(chrome, log, port, url)))
    finally:
        chrome.kill()
        chrome.wait()
        shutil.rmtree(profile, ignore_errors=True)


def page_socket(chrome, log, port):
    # A loaded two-core machine has taken more than 20 s to start Chromium.
    deadline = time.time() + 60
    while True:
        if chrome.poll() is not None:
            log.seek(0)
            tail = log.read().decode("utf-8", "replace")[-2000:]
            sys.exit(f"Chromium exited with status {chrome.returncode} before opening its "
                     f"DevTools port:\n{tail}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as reply:
                pages = [t for t in json.load(reply) if t["type"] == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        if time.time() > deadline:
            sys.exit("Chromium did not open its DevTools port within 60 s")
        time.sleep(0.1)


def inspect(chrome, log, port, url):
    errors = []
    with connect(page_socket(chrome, log, port), max_size=None) as ws:
        counter = iter(range(1, 1_000_000))

        def call(method, **params):
            ident = next(counter)
            ws.send(json.dumps({"id": ident, "method": method, "params": params}))
            while True:
                message = json.loads(ws.recv(timeout=20))
                if message.get("method") == "Runtime.exceptionThrown":
                    errors.append(message["params"]["exceptionDetails"].get("text"))
                if message.get("method") == "Runtime.consoleAPICalled" and message["params"]["type"] == "error":
                    errors.append(str(message["params"]["args"]))
                if message.get("id") == ident:
                    return message.get("result", {})

        call("Runtime.enable")
        call("Page.enable")
        call("Page.navigate", url=url)
        deadline = time.time() + 20
        while True:
            result = call("Runtime.evaluate", expression=PROBE, awaitPromise=True, returnByValue=True)
            value = result.get("result", {}).get("value")
            state = json.loads(value) if value else {}
            if state.get("sw") not in (None, "pending") and state.get("script") or time.time() > deadline:
                state["errors"] = errors
                return state
            time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
