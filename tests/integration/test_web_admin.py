"""Issue 15: the web admin in a real browser (Debian's chromium, headless, driven by its chromedriver) against a real
controller, with a real member asking to join; and forged requests (no cookie, wrong CSRF token) changing nothing.

The controller lives in a lab namespace, its admin API on that namespace's
loopback, as `l2mesh-ctl serve` binds it by default. The test thread enters
the namespace (setns) for the browser part, so chromedriver and chromium
start there and every connection the test makes reaches that loopback.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

import l2mesh

from tests.integration.topology import Topology, add_controller, network_status, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CLONE_NEWNET = 0x40000000
BUSY_COLOURS = 32  # a screenshot with text in it has hundreds (anti-aliasing); a blank one has one
LIVE_TIMEOUT_S = 15.0  # a join request reaches the page within ~1 s (the stream's poll) plus the node's first ask

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None or shutil.which(CHROMEDRIVER) is None,
    reason="web admin browser tests: needs Debian's chromium and chromium-driver (make deps)",
)


@contextmanager
def inside_namespace(namespace: str) -> Iterator[None]:
    """This thread in the named network namespace (sockets it opens, processes it starts), then back."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {namespace}")
        try:
            yield
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the test's network namespace")
    finally:
        os.close(target)
        os.close(home)


@contextmanager
def browser(profile_dir: Path) -> Iterator[Any]:
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", f"--user-data-dir={profile_dir}", "--window-size=1280,900",
                     "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()  # chromium and chromedriver, by the PIDs selenium started


# -- screenshots ---------------------------------------------------------------------------------------
def png_colours(data: bytes, enough: int | None = None) -> int:
    """How many distinct colours an 8-bit RGB/RGBA PNG (what chromium saves) holds, counted from the top down
    and no further than `enough` (decoding in Python takes seconds per screen); zlib and struct only."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, idat, header = 8, bytearray(), None
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        chunk = data[offset + 8:offset + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        offset += 12 + length
    assert header is not None
    width, height, depth, colour_type, _, _, interlace = header
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, f"unexpected PNG format {header}"
    pixel_bytes = 3 if colour_type == 2 else 4
    raw, stride = zlib.decompress(bytes(idat)), width * pixel_bytes
    previous, colours = bytearray(stride), set()
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):  # PNG's five row filters (RFC 2083, 6.1)
            left = line[i - pixel_bytes] if i >= pixel_bytes else 0
            up, up_left = previous[i], previous[i - pixel_bytes] if i >= pixel_bytes else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else up_left)
                line[i] = (line[i] + predictor) & 0xFF
        colours.update(bytes(line[i:i + 3]) for i in range(0, stride, pixel_bytes))
        if enough is not None and len(colours) >= enough:
            break
        previous = line
    return len(colours)


def screenshot(driver: Any, path: Path) -> None:
    """Saved, and not blank."""
    assert driver.save_screenshot(str(path))
    assert png_colours(path.read_bytes(), enough=BUSY_COLOURS) >= BUSY_COLOURS, f"{path.name} looks blank"


def cell_text(driver: Any, node_id: str, css: str) -> str:
    """The text of a cell in the member's row, "" while it is not there (or is being replaced by a live update)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        cells = driver.find_elements(By.CSS_SELECTOR, f"[data-member='{node_id}'] {css}")
        return str(cells[0].text) if cells else ""
    except StaleElementReferenceException:
        return ""


def click(driver: Any, css: str) -> None:
    """Click what css finds, found afresh if a live update replaced it in between."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for _ in range(5):
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
            return
        except StaleElementReferenceException:
            continue
    raise AssertionError(f"{css} kept being replaced")


# -- the tests ---------------------------------------------------------------------------------------------
def test_admin_logs_in_with_the_link_creates_a_network_sees_a_join_live_authorizes_and_deauthorizes(
    topology: Topology, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    controller = add_controller(topology)
    member = topology.add_host("m1")
    member.start_daemon()
    url = controller.ctl_json("web")["url"]
    assert re.fullmatch(r"http://127\.0\.0\.1:9995/web/login\?token=[\w-]{40,}", url)
    with inside_namespace(controller.host.namespace), browser(tmp_path / "chromium") as driver:
        driver.get(url)
        assert driver.current_url.endswith("/web/"), "the login link lands on the overview"
        driver.find_element(By.ID, "new-name").send_keys("lab")
        driver.find_element(By.ID, "new-pools").send_keys("10.147.17.0/24")
        driver.find_element(By.ID, "create-network").click()
        network_id = wait_until(lambda: driver.find_elements(By.ID, "network-id"), 10, what="the new network's page")[0].text
        assert [n["name"] for n in controller.ctl_json("network", "list")] == ["lab"]
        screenshot(driver, tmp_path / "network.png")

        driver.get(url.split("/web/")[0] + "/web/")  # the overview, in this session (the link itself is spent)
        driver.execute_script("window.notReloaded = true;")
        wait_until(lambda: driver.find_element(By.ID, "live-status").text == "live", 10, what="the live stream")
        member.l2mesh("join", network_id, "--controller", controller.endpoint)
        wait_until(lambda: cell_text(driver, member.node_id, "button.authorize"), LIVE_TIMEOUT_S, what="the join request on the overview")
        assert driver.execute_script("return window.notReloaded === true;"), "the request must appear without a reload"
        assert "Asking to join" in driver.page_source
        screenshot(driver, tmp_path / "overview.png")

        click(driver, f"[data-member='{member.node_id}'] button.authorize")
        wait_until(lambda: network_status(member, network_id) == "OK", 10, what="the member authorized")
        driver.find_element(By.LINK_TEXT, "Members (1 authorized of 1)").click()
        address = wait_until(
            lambda: re.search(r"10\.147\.17\.\d+", cell_text(driver, member.node_id, "td.ips")), 10, what="the member's address on the members page"
        ).group(0)
        assert controller.ctl_json("member", "show", network_id, member.node_id)[0]["ips"] == [address]
        assert cell_text(driver, member.node_id, "td.version") == l2mesh.__version__  # as the node reported it
        screenshot(driver, tmp_path / "members.png")
        driver.set_window_size(390, 844)  # a phone: the page fits its width (the members table scrolls inside it)
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth;")
        screenshot(driver, tmp_path / "members-phone.png")
        driver.set_window_size(1280, 900)

        click(driver, f"[data-member='{member.node_id}'] button.deauthorize")
        wait_until(lambda: cell_text(driver, member.node_id, "td.authorized") == "asking", 10, what="deauthorized on the page")
        assert controller.ctl_json("member", "show", network_id, member.node_id)[0]["authorized"] is False
        wait_until(lambda: network_status(member, network_id) == "ACCESS_DENIED", 10, what="the member cut off")


def test_a_login_link_works_once_and_a_post_without_the_cookie_or_with_a_forged_csrf_token_changes_nothing(
    topology: Topology,
) -> None:
    controller = add_controller(topology)
    network_id = controller.ctl("network", "create", "lab").stdout.strip()
    base = "http://127.0.0.1:9995"
    node_id, legit_node_id = "0123456789", "0a0b0c0d0e"
    url = controller.ctl_json("web")["url"]
    with inside_namespace(controller.host.namespace), httpx.Client(base_url=base) as admin:
        assert httpx.get(f"{base}/web/").headers["location"] == "/web/login"  # no session: the login page
        first = admin.get(url)
        assert first.status_code == 303 and "l2mesh_session" in admin.cookies
        again = httpx.get(url)
        assert again.status_code == 403 and "l2mesh_session" not in again.cookies, "a login link works once"
        page = admin.get(f"/web/networks/{network_id}/members")
        assert page.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        cookie = admin.cookies["l2mesh_session"]
        attempts = {
            "no cookie": httpx.post(f"{base}/web/networks/{network_id}/members", data={"csrf": csrf.group(1), "node_id": node_id}),
            "no cookie, create": httpx.post(f"{base}/web/networks", data={"csrf": csrf.group(1), "name": "evil"}),
            "forged CSRF token": admin.post(f"/web/networks/{network_id}/members", data={"csrf": "x" * 43, "node_id": node_id}),
            "no CSRF token": admin.post(f"/web/networks/{network_id}/delete", data={"confirm": "yes"}),
            "another site": httpx.post(
                f"{base}/web/networks/{network_id}/delete", data={"csrf": csrf.group(1), "confirm": "yes"},
                headers={"origin": "http://evil.example", "cookie": f"l2mesh_session={cookie}"},
            ),
        }
        assert {what: r.status_code for what, r in attempts.items()} == dict.fromkeys(attempts, 403)
        # The same forms with the session and its token do change things: the refusals above were the checks.
        done = admin.post(f"/web/networks/{network_id}/members", data={"csrf": csrf.group(1), "node_id": legit_node_id})
        assert done.status_code == 303
    assert [n["name"] for n in controller.ctl_json("network", "list")] == ["lab"]
    assert [(m["id"], m["authorized"]) for m in controller.ctl_json("member", "list", network_id)] == [(legit_node_id, True)]

