"""A small driver for Debian's Chromium through its DevTools protocol, for the serve page's browser test, its
screenshot and its load-time benchmark: no downloaded browser build, no driver package.

Chromium is started headless with ``--remote-debugging-port=0``; the port it picked is read from its
"DevTools listening on ws://..." line, the page target from ``/json/list``, and commands go over tornado's
websocket client (tornado is installed with dask's distributed).

    with Browser() as browser:
        browser.navigate("http://127.0.0.1:8765/")
        browser.wait_for("document.body.dataset.ready === '1'")
        browser.click(400, 300)
        browser.screenshot(Path("shot.png"))
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


class DevToolsError(RuntimeError):
    """A DevTools command failed, or the page threw."""


class Browser:
    """One headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, width: int = 1280, height: int = 800, binary: str | None = None, timeout: float = 60) -> None:
        from tornado.websocket import websocket_connect

        binary = binary or BROWSER
        if binary is None:
            raise FileNotFoundError("no chromium on PATH (Debian: apt-get install chromium)")
        self.profile = tempfile.TemporaryDirectory(prefix="ofa-chromium-")
        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             "--disable-background-networking", "--disable-extensions", "--mute-audio", f"--window-size={width},{height}",
             f"--user-data-dir={self.profile.name}", "--remote-debugging-port=0", "--remote-allow-origins=*", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.port = self._devtools_port(timeout)
        deadline = time.time() + timeout
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as answer:
                pages = [t for t in json.loads(answer.read()) if t.get("type") == "page"]
            if pages or time.time() > deadline:
                break
            time.sleep(0.1)
        if not pages:
            self.close()
            raise DevToolsError("chromium opened no page")
        self.loop = asyncio.new_event_loop()
        async def connect() -> Any:  # the connection belongs to the loop it is made on
            return await websocket_connect(pages[0]["webSocketDebuggerUrl"], max_message_size=2**30)

        self.socket = self.loop.run_until_complete(connect())
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def _devtools_port(self, timeout: float) -> int:
        found: list[int] = []
        lines: list[str] = []

        def read() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                lines.append(line)
                match = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
                if match and not found:
                    found.append(int(match.group(1)))
            # keep draining so chromium never blocks on a full pipe

        threading.Thread(target=read, daemon=True).start()
        deadline = time.time() + timeout
        while not found and time.time() < deadline and self.process.poll() is None:
            time.sleep(0.05)
        if not found:
            self.close()
            raise DevToolsError(f"chromium did not open its DevTools port: {''.join(lines[-5:])}")
        return found[0]

    async def _call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        ident = self.next_id
        await self.socket.write_message(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = await self.socket.read_message()
            if message is None:
                raise DevToolsError("the DevTools connection closed")
            data = json.loads(message)
            if data.get("id") == ident:
                if "error" in data:
                    raise DevToolsError(f"{method}: {data['error'].get('message')}")
                return data.get("result", {})
            if "method" in data:
                self.events.append(data)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result."""
        return self.loop.run_until_complete(self._call(method, params))

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited).

        Raises:
            DevToolsError: the expression threw.
        """
        result = self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise DevToolsError(f"{expression[:80]}: {details.get('exception', {}).get('description') or details.get('text')}")
        return result.get("result", {}).get("value")

    def navigate(self, url: str) -> None:
        """Open ``url`` in the page."""
        self.send("Page.navigate", url=url)

    def wait_for(self, expression: str, timeout: float = 60) -> Any:
        """Wait until ``expression`` is truthy; its value.

        Raises:
            TimeoutError: it never was within ``timeout`` seconds.
        """
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                value = self.evaluate(expression)
            except DevToolsError:
                value = None
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"{expression} not true within {timeout} s")

    def click(self, x: float, y: float) -> None:
        """A left click at CSS pixel ``(x, y)``: press and release, as a mouse does."""
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        self.send("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button="left", clickCount=1)
        self.send("Input.dispatchMouseEvent", type="mouseReleased", x=x, y=y, button="left", clickCount=1)

    def click_element(self, selector: str) -> None:
        """Click the middle of the first element matching ``selector``."""
        box = self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect(); "
                            "return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        self.click(*box)

    def screenshot(self, path: Path) -> Path:
        """The page as drawn, as a PNG file."""
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        """Close the connection and end Chromium."""
        socket = getattr(self, "socket", None)
        if socket is not None:
            socket.close()
            self.loop.run_until_complete(asyncio.sleep(0))
            self.loop.close()
            self.socket = None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
