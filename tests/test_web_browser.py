"""The page in a real browser: headless Chromium, driven by selenium, against the real Server.py.

People on the page meet people on ``nc`` (a real nc process) in the same room.
What a user would see is read from the page: text, classes, and the styles the
browser computed for them (bold, italic, strike, the colour table).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator

import pytest
from web_harness import web_url

from harness import WAIT, Output, ServerProcess, StartServer

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install selenium)"
)
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = [
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="chromium is not installed (Debian: chromium)"),
    pytest.mark.skipif(not shutil.which(CHROMEDRIVER), reason="no chromedriver (Debian: chromium-driver)"),
]
HEADLESS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
#: The colour table as the page draws it (chat.css), for the colours the tests use.
RGB = {"red": "rgba(204, 0, 0, 1)", "green": "rgba(78, 154, 6, 1)"}


class Page:
    """One browser showing the chat page."""

    def __init__(self, driver: WebDriver, url: str) -> None:
        self.driver = driver
        self.url = url
        driver.get(url)

    def el(self, element_id: str) -> WebElement:
        return self.driver.find_element(By.ID, element_id)

    def until(self, condition: Callable[[], object], what: str) -> object:
        def check(_driver: WebDriver) -> object:
            try:
                return condition()
            except StaleElementReferenceException:
                return False

        return WebDriverWait(self.driver, WAIT, poll_frequency=0.05).until(
            check, f"timed out waiting for {what}"
        )

    def visible(self, element_id: str) -> WebElement:
        self.until(lambda: self.el(element_id).is_displayed(), f"#{element_id} to show")
        return self.el(element_id)

    def join(self, name: str) -> None:
        field = self.visible("name")
        field.clear()
        field.send_keys(name, Keys.ENTER)

    def in_room(self) -> None:
        self.visible("input")

    def say(self, text: str) -> None:
        self.el("input").send_keys(text, Keys.ENTER)

    def line(self, text: str) -> WebElement:
        """The newest line of the conversation that shows ``text``."""

        def find() -> WebElement | None:
            found = [
                li for li in self.driver.find_elements(By.CSS_SELECTOR, "#log li.line") if text in li.text
            ]
            return found[-1] if found else None

        return self.until(find, f"a line with {text!r}")  # type: ignore[return-value]

    def log_text(self) -> str:
        return str(self.el("log").text)

    def style(self, element: WebElement, prop: str) -> str:
        return str(element.value_of_css_property(prop))


OpenPage = Callable[[ServerProcess], Page]


@pytest.fixture
def browser() -> Iterator[OpenPage]:
    """``browser(server)``: a fresh headless Chromium on the server's page; all are closed afterwards."""
    drivers: list[WebDriver] = []
    profiles: list[tempfile.TemporaryDirectory[str]] = []

    def open_page(server: ServerProcess) -> Page:
        profile = tempfile.TemporaryDirectory()
        profiles.append(profile)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in [*HEADLESS, f"--user-data-dir={profile.name}", "--window-size=1100,700"]:
            options.add_argument(argument)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        drivers.append(driver)
        return Page(driver, web_url(server))

    yield open_page
    for driver in drivers:
        driver.quit()
    for profile in profiles:
        profile.cleanup()


class Nc:
    """A friend on ``nc``: what it types, and every line it is sent."""

    def __init__(self, server: ServerProcess, name: str) -> None:
        self.proc = subprocess.Popen(
            ["nc", server.host, str(server.port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        self.output = Output(self.proc.stdout)
        self.say(name)

    def say(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def expect(self, pattern: str) -> str:
        return self.output.wait_for(pattern)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


StartNc = Callable[[ServerProcess, str], Nc]


@pytest.fixture
def nc() -> Iterator[StartNc]:
    if shutil.which("nc") is None:
        pytest.skip("nc is not installed (Debian package netcat-openbsd)")
    started: list[Nc] = []

    def start(server: ServerProcess, name: str) -> Nc:
        client = Nc(server, name)
        started.append(client)
        return client

    yield start
    for client in started:
        client.close()


# --- joining --------------------------------------------------------------------------------------


def test_a_browser_joins_through_the_operator_and_talks_with_nc(
    start_server: StartServer,
    browser: OpenPage,
    nc: Callable[[ServerProcess, str], Nc],
) -> None:
    server = start_server("--web-port", "0")
    page = browser(server)
    page.join("alice")
    waiting = page.visible("waiting")
    assert "Hello alice. Waiting for the operator to let you in" in waiting.text
    assert " via the web - let in?" in server.asked_about("alice")
    server.console("y")
    page.in_room()
    friend = nc(server, "ned")
    server.approve("ned")
    friend.expect(r"Welcome, ned!")
    friend.say("hi alice, from nc")
    line = page.line("hi alice, from nc")
    head = line.find_element(By.CSS_SELECTOR, ".head")
    assert re.fullmatch(r"\d\d:\d\d ned", head.text), head.text  # the time (HH:MM) and the sender together
    assert "mention" in (line.get_attribute("class") or "")  # alice's name, said by someone else
    assert line.find_element(By.TAG_NAME, "mark").text == "alice"
    page.say("hello ned, from the browser 👍")
    friend.expect(r"<alice> hello ned, from the browser 👍")
    names = [li.text for li in page.driver.find_elements(By.CSS_SELECTOR, "#names li")]
    assert names == ["alice", "ned"]
    friend.say("/me waves")
    assert page.line("waves").get_attribute("data-kind") == "Action"
    page.say("/who")
    page.line("In the room (2): alice, ned")  # a reply, in the conversation as on a terminal


def test_turned_away_the_page_says_so_and_offers_to_try_again(
    start_server: StartServer, browser: OpenPage
) -> None:
    server = start_server("--web-port", "0")
    page = browser(server)
    page.join("mallory")
    server.refuse("mallory")
    ended = page.visible("ended")
    assert "The operator did not let you in." in ended.text
    page.el("again").click()
    assert page.visible("name").get_attribute("value") == "mallory"


def test_a_name_the_room_refuses_is_explained_and_asked_again(
    start_server: StartServer, browser: OpenPage
) -> None:
    server = start_server("--web-port", "0", "--approve", "all")
    page = browser(server)
    page.join("root")
    error = page.visible("join-error")
    assert "That name can't be used: 'root' is reserved." in error.text
    page.join("rooted")
    page.in_room()
    page.line("Welcome, rooted!")


# --- what the room shows -------------------------------------------------------------------------


def test_markup_and_colours_are_shown_as_styles(
    start_server: StartServer,
    browser: OpenPage,
    nc: Callable[[ServerProcess, str], Nc],
) -> None:
    server = start_server("--web-port", "0", "--approve", "all")
    page = browser(server)
    page.join("viewer")
    page.in_room()
    friend = nc(server, "painter")
    friend.expect("Welcome, painter")
    friend.say("/color red **bold** __italic__ ~~struck~~ plain")
    line = page.line("struck")
    spans = {s.text: s for s in line.find_elements(By.CSS_SELECTOR, ".text span") if s.text.strip()}
    assert page.style(spans["bold"], "font-weight") == "700"
    assert page.style(spans["italic"], "font-style") == "italic"
    assert "line-through" in page.style(spans["struck"], "text-decoration-line")
    plain = spans[" plain"]
    assert page.style(plain, "font-weight") == "400" and page.style(plain, "font-style") == "normal"
    for span in spans.values():
        assert page.style(span, "color") == RGB["red"]
    friend.say("/me __paints__ **in** green")  # an action is italic, as on a terminal
    action = page.line("paints")
    assert page.style(action.find_element(By.CSS_SELECTOR, ".text span"), "font-style") == "italic"
    page.say("/color green mine too")
    mine = page.line("mine too").find_element(By.CSS_SELECTOR, ".text span")
    assert page.style(mine, "color") == RGB["green"]
    friend.expect(r"<viewer> mine too")


def test_hostile_text_stays_text(
    start_server: StartServer,
    browser: OpenPage,
    nc: Callable[[ServerProcess, str], Nc],
) -> None:
    server = start_server("--web-port", "0", "--approve", "all")
    page = browser(server)
    page.join("target")
    page.in_room()
    friend = nc(server, "eve")
    friend.expect("Welcome, eve")
    attack = (
        '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
        "**<b onmouseover=alert(1)>bold?</b>** <a href=javascript:alert(3)>link</a> &amp; \u202edesrever"
    )
    friend.say(attack)
    line = page.line("window.pwned=2")
    assert '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script><b onmouseover' in line.text
    found = page.driver.execute_script(
        "return [document.querySelectorAll('#log img, #log script, #log a, #log b').length, window.pwned]"
    )
    assert found == [0, None]
    assert "&amp;" in line.text  # not decoded either
    assert "\u202e" not in line.text  # the server's sanitiser removed the bidi override, as for terminals


def test_private_messages_reach_only_their_recipient(
    start_server: StartServer,
    browser: OpenPage,
    nc: Callable[[ServerProcess, str], Nc],
) -> None:
    server = start_server("--web-port", "0", "--approve", "all")
    alice, bob = browser(server), browser(server)
    alice.join("alice")
    alice.in_room()
    bob.join("bob")
    bob.in_room()
    carol = nc(server, "carol")
    carol.expect("Welcome, carol")
    carol.say("/private alice the password is swordfish")
    secret = alice.line("swordfish")
    assert secret.get_attribute("data-kind") == "PrivateFrom"
    assert "PM FROM" in secret.text.upper() and "private" in (secret.get_attribute("class") or "")
    carol.say("now for everyone")
    bob.line("now for everyone")
    alice.line("now for everyone")
    assert "swordfish" not in bob.log_text()
    alice.say("/reply got it")
    carol.expect(r"\[PM from alice\] got it")
    assert alice.line("got it").get_attribute("data-kind") == "PrivateTo"
    assert "got it" not in bob.log_text()


# --- Tab -------------------------------------------------------------------------------------------


def test_tab_completes_commands_names_and_colours_from_the_servers_table(
    start_server: StartServer,
    browser: OpenPage,
    nc: Callable[[ServerProcess, str], Nc],
) -> None:
    server = start_server("--web-port", "0", "--approve", "all")
    page = browser(server)
    page.join("tabby")
    page.in_room()
    friend = nc(server, "bob")
    friend.expect("Welcome, bob")
    page.line("bob joined")
    field = page.el("input")

    def typed(keys: str) -> str:
        field.send_keys(keys)
        return str(field.get_attribute("value"))

    assert typed("/pri" + Keys.TAB) == "/private "
    assert typed("b" + Keys.TAB) == "/private bob "
    assert typed("/col" + Keys.TAB) == "/private bob /color "
    assert typed("gr" + Keys.TAB) == "/private bob /color green "
    field.clear()
    assert typed("b" + Keys.TAB) == "bob: "  # a name at the start of a line addresses them
    field.clear()
    assert typed("/q" + Keys.TAB) == "/query "  # only aliases fit: each in turn
    assert typed(Keys.TAB) == "/quit "
    assert page.el("completions").text.split() == ["/query", "/quit"]
    field.clear()
    assert typed("DM b" + Keys.TAB) == "DM bob "


# --- notifications -----------------------------------------------------------------------------------


def test_a_mention_or_private_message_notifies_when_the_tab_is_hidden(
    start_server: StartServer,
    browser: OpenPage,
    nc: Callable[[ServerProcess, str], Nc],
) -> None:
    server = start_server("--web-port", "0", "--approve", "all")
    page = browser(server)
    driver = page.driver
    origin = page.url.rstrip("/")
    driver.execute_cdp_cmd("Browser.grantPermissions", {"origin": origin, "permissions": ["notifications"]})
    # Record what the page shows as notifications (the real ones go to the desktop).
    driver.execute_script(
        "window.shown = []; const Real = window.Notification;"
        "window.Notification = class extends Real {"
        "  constructor(title, options) {"
        "    super(title, options); window.shown.push([title, options.body]); } };"
    )
    page.join("nora")
    page.in_room()
    friend = nc(server, "sam")
    friend.expect("Welcome, sam")
    friend.say("nora is not hidden yet")
    page.line("not hidden yet")
    other = driver.execute_cdp_cmd("Target.createTarget", {"url": "about:blank", "background": True})
    driver.execute_cdp_cmd("Target.activateTarget", {"targetId": other["targetId"]})
    page.until(lambda: driver.execute_script("return document.hidden"), "the page to be hidden")
    friend.say("nothing for you here")
    friend.say("hey nora, look")
    friend.say("/private nora just between us")
    page.until(lambda: len(driver.execute_script("return window.shown")) == 2, "two notifications")
    assert driver.execute_script("return window.shown") == [
        ["sam mentioned you", "hey nora, look"],
        ["Private message from sam", "just between us"],
    ]
    assert driver.title == "(2) chatroom"


# --- leaving and being sent away ------------------------------------------------------------------------


def test_leave_then_join_again(start_server: StartServer, browser: OpenPage) -> None:
    server = start_server("--web-port", "0", "--approve", "all")
    page = browser(server)
    page.join("leaver")
    page.in_room()
    page.say("/leave")
    over = page.visible("over")
    assert "You left the room." in over.text
    assert not page.el("input").is_displayed()
    server.log.wait_for(r"leave leaver .*left with /leave")
    page.el("rejoin").click()
    page.in_room()
    page.line("Welcome, leaver!")
    server.log.wait_for(r"join leaver .*\(1 in room")


def test_a_registered_name_is_asked_its_password_on_the_page(
    start_server: StartServer, browser: OpenPage
) -> None:
    server = start_server("--web-port", "0")
    page = browser(server)
    page.join("alice")
    server.approve("alice")
    page.in_room()
    page.say("/register open sesame")
    page.line("alice is registered to you")
    page.say("/leave")
    page.visible("over")
    page.el("rejoin").click()
    password = page.visible("password")
    assert password.get_attribute("type") == "password"  # not shown as typed
    password.send_keys("not it", Keys.ENTER)
    error = page.visible("password-error")
    page.until(lambda: "Wrong password for alice" in error.text, "the wrong password said")
    page.until(lambda: page.el("password-button").is_enabled(), "the password asked again")
    page.el("password").send_keys("open sesame", Keys.ENTER)
    page.in_room()  # without the operator: no second join request
    page.line("Nothing was said since you left")
    assert server.log.text().count("join request: alice") == 1
    assert "open sesame" not in server.log.text()


def test_removed_by_the_operator_then_the_server_shuts_down(
    start_server: StartServer, browser: OpenPage
) -> None:
    server = start_server("--web-port", "0", "--approve", "all")
    page = browser(server)
    page.join("pest")
    page.in_room()
    server.console("/kick pest spamming")
    assert "You were removed by the operator: spamming." in page.visible("over").text
    page.el("rejoin").click()
    page.in_room()
    server.console("/ban pest")
    assert "You were removed by the operator: banned." in page.visible("over").text
    page.el("rejoin").click()
    assert "You are banned from this room." in page.visible("ended").text
    server.console("/unban pest")
    server.log.wait_for("unbanned name pest")
    page.el("again").click()
    page.join("pest")
    page.in_room()
    server.stop()
    assert "The server is shutting down." in page.visible("over").text


def test_a_lost_connection_is_said_plainly(start_server: StartServer, browser: OpenPage) -> None:
    server = start_server("--web-port", "0", "--approve", "all")
    page = browser(server)
    page.join("lonely")
    page.in_room()
    server.proc.kill()
    assert "The connection to the chat server was lost." in page.visible("over").text
    assert page.el("rejoin").is_displayed()
