"""The dashboard in a real browser: Debian's Chromium, driven by Playwright.

One bridge (Samsara, FLEETIZE and Metrotec accounts against the simulator, on
its frozen clock, through a real Mosquitto) and one browser serve the whole
module: starting them is most of the time these tests take. Each test checks
what a depot operator would see: every vehicle, a vehicle moving as it moves on
MQTT, the same quota as the quota topic, each alert once, a lights command
answered in the page and carried out once, and nothing at all for a wrong
token. Waits are on conditions in the page or on MQTT, never on time.

Screenshots go to the test's temporary directory, and to
$FLEET_DASHBOARD_SCREENSHOTS when set (`docs/img` for the README's).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page

from bridge.app import Bridge
from bridge.config import BridgeConfig
from bridge.simulator.server import SimulatorServer
from tests.bridge.test_bridge_mqtt import running, settle
from tests.support.mqtt import Mosquitto, Recorder, free_port, record

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "dashboard-test-token-5f1c2a"
PASSWORD = "depot-password-77"
SAMSARA, FLEETIZE, METROTEC = "depot-samsara", "depot-fleetize", "depot-metrotec"
WAIT_MS = 30_000


@dataclass
class Dashboard:
    server: SimulatorServer
    broker: Mosquitto
    recorder: Recorder
    bridge: Bridge
    url: str
    page: Page
    context: BrowserContext
    shots: list[Path]

    def keys(self) -> set[str]:
        worlds = {
            SAMSARA: self.server.world,
            FLEETIZE: self.server.fleetize_world,
            METROTEC: self.server.metrotec_world,
        }
        return {f"{account}/{vid}" for account, world in worlds.items() for vid in world.ids()}

    async def screenshot(self, name: str, page: Page | None = None) -> None:
        for folder in self.shots:
            folder.mkdir(parents=True, exist_ok=True)
            await (page or self.page).screenshot(path=str(folder / name))

    async def poll(self, account: str, advance: float = 10, whole: bool = False) -> None:
        """One more poll of `account` (the simulated clock moves on enough for
        its budgets; `whole`: the whole fleet's list too), published before this
        returns."""
        poller = self.bridge.pollers[account]
        done = poller.health.polls
        self.server.clock.advance(advance)
        poller.request_poll(refresh_vehicles=whole)
        await poller.wait_polls(done + 1)


def stale_split_max_age(server: SimulatorServer) -> float:
    """An `alerts.max_age` with safety events on both sides of it: some are
    published as stale, some as fresh."""
    server.samsara.safety.catch_up()
    now_ms = server.clock.now_ms()
    ages = sorted((now_ms - e.start_ms) / 1000 for e in server.samsara.safety.events())
    assert len(ages) >= 2, "the seed must give the simulated fleet a few safety events"
    middle = len(ages) // 2
    return max(60.0, (ages[middle - 1] + ages[middle]) / 2)


def config(broker: Mosquitto, server: SimulatorServer, store: Path, port: int) -> BridgeConfig:
    closed = free_port()  # nothing listens there: every tile fails, as offline
    return BridgeConfig.model_validate(
        {
            "mqtt": {"host": broker.host, "port": broker.port, "client_id": "dash-test"},
            "store": {"path": str(store)},
            "accounts": [
                {
                    "id": SAMSARA,
                    "name": "Chicago depot",
                    "provider": "samsara",
                    "token": "demo-samsara-token",
                    "base_url": server.samsara_url,
                    "poll_interval": 3600,
                    "offline_after": 864000,
                },
                {
                    "id": FLEETIZE,
                    "provider": "fleetize",
                    "token": "demo-fleetize-token",
                    "base_url": server.fleetize_url,
                    "offline_after": 864000,
                },
                {
                    "id": METROTEC,
                    "name": "Tallinn",
                    "provider": "metrotec",
                    "api_key": "demo-metrotec-key",
                    "base_url": server.metrotec_url,
                    "poll_interval": 3600,
                    "offline_after": 864000,
                },
            ],
            "commands": {
                "allow": [{"accounts": [METROTEC], "commands": ["lights", "task/create"]}],
                "lights_timeout": 120,
            },
            "alerts": {"max_age": stale_split_max_age(server)},
            "http": {
                "dashboard": True,
                "metrics": True,
                "port": port,
                "token": TOKEN,
                "password": PASSWORD,
                "tile_url": f"http://127.0.0.1:{closed}/{{z}}/{{x}}/{{y}}.png",
            },
        }
    )


async def open_page(browser: Browser, url: str) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    await page.goto(url)
    return context, page


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def dash(
    browser: Browser, module_broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Dashboard]:
    work = tmp_path_factory.mktemp("dashboard")
    shots = [work / "screenshots"]
    if os.environ.get("FLEET_DASHBOARD_SCREENSHOTS"):
        shots.append(Path(os.environ["FLEET_DASHBOARD_SCREENSHOTS"]))
    async with SimulatorServer(
        vehicles=6,
        fleetize_vehicles=3,
        metrotec_vehicles=3,
        telemax_vehicles=1,
        tracksafe365_vehicles=1,
        speed=0,
        seed=11,
    ) as server:
        server.clock.advance(3600)  # an hour of driving: safety events to show
        port = free_port()
        cfg = config(module_broker, server, work / "store.sqlite", port)
        async with (
            record(module_broker.host, module_broker.port) as recorder,
            running(cfg, now=server.clock.now) as bridge,
        ):
            for poller in bridge.pollers.values():
                await poller.wait_polls(1)
            await settle(recorder, module_broker, bridge)
            url = f"http://127.0.0.1:{port}/"
            context, page = await open_page(browser, f"{url}#token={TOKEN}")
            await page.wait_for_function(
                "() => window.fleet && window.fleet.ready", timeout=WAIT_MS
            )
            try:
                yield Dashboard(server, module_broker, recorder, bridge, url, page, context, shots)
            finally:
                await context.close()


async def page_keys(page: Page) -> set[str]:
    keys: list[str] = await page.evaluate("() => [...window.fleet.vehicles.keys()]")
    return set(keys)


async def test_every_simulated_vehicle_is_on_the_map_and_in_the_table(dash: Dashboard) -> None:
    page = dash.page
    expected = dash.keys()
    await page.wait_for_function(
        "n => window.fleet.vehicles.size === n", arg=len(expected), timeout=WAIT_MS
    )
    assert await page_keys(page) == expected
    # On the map: each one drawn where its row says.
    for key in sorted(expected):
        point = await page.evaluate("k => window.fleet.mapPoint(k)", key)
        row = await page.evaluate("k => window.fleet.vehicles.get(k)", key)
        assert point is not None, key
        assert (point["la"], point["lo"], point["state"]) == (row["la"], row["lo"], row["st"])
    assert await page.inner_text("#shown") == f"{len(expected)} of {len(expected)}"
    # No internet: the tiles fail and the coordinate grid stands in, said so.
    await page.wait_for_selector("#map-notice:not([hidden])", timeout=WAIT_MS)
    assert "coordinate grid" in await page.inner_text("#map-notice")
    assert (await page.evaluate("() => window.fleet.tiles"))["loaded"] == 0

    # The table filters by account, provider and state, and sorts.
    await page.select_option("#f-account", METROTEC)
    rows = await page.eval_on_selector_all(".vt-row", "rs => rs.map(r => r.dataset.key)")
    assert set(rows) == {k for k in expected if k.startswith(f"{METROTEC}/")}
    await page.select_option("#f-account", "")
    await page.select_option("#f-provider", "fleetize")
    rows = await page.eval_on_selector_all(".vt-row", "rs => rs.map(r => r.dataset.key)")
    assert set(rows) == {k for k in expected if k.startswith(f"{FLEETIZE}/")}
    await page.select_option("#f-provider", "")
    await page.click('.vt-head button[data-sort="n"]')  # name, descending now
    names = await page.eval_on_selector_all(".vt-row .c-name", "cs => cs.map(c => c.textContent)")
    assert names == sorted(names, reverse=True)
    states = await page.evaluate("() => [...window.fleet.vehicles.values()].map(v => v.st)")
    for state in set(states):
        await page.select_option("#f-state", state)
        shown = await page.eval_on_selector_all(
            ".vt-row .badge", "bs => bs.map(b => b.textContent)"
        )
        assert set(shown) == {state}
    await page.select_option("#f-state", "")
    # One depot on the map (choosing an account zooms to it), for the README.
    await page.select_option("#f-account", SAMSARA)
    await dash.screenshot("dashboard.png")
    await page.select_option("#f-account", "")


async def test_a_vehicle_moving_in_the_simulator_moves_on_the_page_after_its_mqtt_state(
    dash: Dashboard,
) -> None:
    page, world = dash.page, dash.server.world
    world.park_all()  # only the one moved by hand changes position
    await dash.poll(SAMSARA)
    vid = world.ids()[0]
    key = f"{SAMSARA}/{vid}"
    topic = dash.bridge.topics.vehicle_state(SAMSARA, vid)
    await page.evaluate("k => window.fleet.watch(k)", key)
    start = world.truth(vid)
    mark = dash.recorder.mark()
    for step in (1, 2, 3):
        lat, lon = start.latitude + 0.002 * step, start.longitude - 0.003 * step
        world.set_vehicle(vid, latitude=lat, longitude=lon)
        await dash.poll(SAMSARA)

        def on_mqtt(lat: float = lat) -> bool:
            payload = dash.recorder.retained.get(topic)
            return payload is not None and round(json.loads(payload)["latitude"], 6) == round(
                lat, 6
            )

        await dash.recorder.wait_for(on_mqtt)
        # The page follows: drawn on the map at the new position.
        await page.wait_for_function(
            "([k, la]) => { const p = window.fleet.mapPoint(k); return p && p.la === la; }",
            arg=[key, round(lat, 6)],
            timeout=WAIT_MS,
        )
    published = [
        (round(json.loads(m.payload)["latitude"], 6), round(json.loads(m.payload)["longitude"], 6))
        for m in dash.recorder.since(mark)
        if m.topic == topic and m.payload
    ]
    shown = [tuple(p) for p in await page.evaluate("k => window.fleet.history.get(k)", key)]
    # The page showed the positions MQTT carried, in the same order, none other.
    assert len(published) == 3
    assert shown[-3:] == published
    assert all(p in published or i == 0 for i, p in enumerate(shown))


async def test_the_fleetize_quota_on_the_page_is_its_quota_topic(dash: Dashboard) -> None:
    page = dash.page
    topic = dash.bridge.topics.account_quota(FLEETIZE)
    await dash.recorder.wait_for(lambda: topic in dash.recorder.retained)

    def topic_quota() -> dict[str, Any]:
        report = json.loads(dash.recorder.retained[topic])
        budgets = {
            name: [b["used"], b["limit"]] for name, b in report["budgets"].items() if name != "hold"
        }
        return {"budgets": budgets, "left": report["calls_left_today"]}

    # The same numbers on the page as on the topic (both from the same report).
    await page.wait_for_function(
        """([a, want]) => {
            const card = document.querySelector(`.account[data-account="${a}"]`);
            if (!card) return false;
            const budgets = {};
            for (const tr of card.querySelectorAll("tr[data-budget]")) {
                budgets[tr.dataset.budget] = [
                    Number(tr.querySelector(".used").textContent),
                    Number(tr.querySelector(".limit").textContent),
                ];
            }
            const left = card.querySelector(".calls-left");
            const shown = {budgets, left: left ? parseInt(left.textContent, 10) : null};
            return JSON.stringify(shown) === JSON.stringify(want);
        }""",
        arg=[FLEETIZE, topic_quota()],
        timeout=WAIT_MS,
    )
    quota = topic_quota()
    assert quota["budgets"]["daily"][1] == 100  # FLEETIZE's 100 calls a day
    assert quota["budgets"]["daily"][0] >= 1
    assert quota["left"] is not None


async def test_each_alert_appears_once_newest_first_and_stale_ones_marked(
    dash: Dashboard,
) -> None:
    page = dash.page

    def alerts() -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in dash.recorder.messages if m.topic.endswith("/alert")]

    await dash.recorder.wait_for(lambda: len(alerts()) > 0)
    before = len(alerts())
    # A new alert while the page is open: a FLEETIZE tracker loses its GPS.
    dash.server.fleetize.set_error(dash.server.fleetize_world.ids()[0], 4)
    # FLEETIZE: one call a minute; a parked tracker's fault shows in the whole list.
    await dash.poll(FLEETIZE, advance=61, whole=True)
    await dash.recorder.wait_for(lambda: len(alerts()) == before + 1)
    # Polled again: nothing repeats.
    await dash.poll(SAMSARA)
    await dash.poll(FLEETIZE, advance=61)
    await settle(dash.recorder, dash.broker, dash.bridge)
    published = {a["id"]: a for a in alerts()}
    assert len(published) == len(alerts()) == before + 1
    await page.wait_for_function(
        "n => document.querySelectorAll('#alerts li').length >= n",
        arg=len(published),
        timeout=WAIT_MS,
    )
    items: list[dict[str, Any]] = await page.eval_on_selector_all(
        "#alerts li",
        "ls => ls.map(l => ({id: l.dataset.alertId, stale: l.classList.contains('stale'),"
        " tag: !!l.querySelector('.tag')}))",
    )
    ids = [item["id"] for item in items]
    assert len(ids) == len(set(ids)) == len(published)
    assert set(ids) == set(published)
    stale = {i["id"] for i in items if i["stale"] and i["tag"]}
    assert stale == {a for a, data in published.items() if data["stale"]}
    assert stale  # both kinds, told apart
    assert stale != set(ids)
    shown = await page.evaluate("() => window.fleet.alerts.map(a => a.time)")
    assert shown == sorted(shown, reverse=True)


async def test_a_lights_command_from_the_page_reaches_the_device_once_and_is_confirmed(
    dash: Dashboard,
) -> None:
    page, server = dash.page, dash.server
    vid = server.metrotec_world.ids()[0]
    key = f"{METROTEC}/{vid}"
    created = server.metrotec.stats()["events"]["created"]
    await page.select_option("#f-account", METROTEC)
    await page.click(f'.vt-row[data-key="{key}"]')
    button = page.locator('#commands button[data-command="lights"][data-state="ON"]')
    await button.wait_for(timeout=WAIT_MS)
    await button.click()
    answer = page.locator("#answers li").first
    await page.wait_for_function(
        "() => document.querySelector('#answers li')?.dataset.status === 'pending'",
        timeout=WAIT_MS,
    )
    transaction = await answer.get_attribute("data-transaction")
    assert transaction is not None
    assert server.metrotec.stats()["events"]["created"] == created + 1
    # The device carries it out; the bridge's follow-up confirms it, the page says so.
    server.clock.advance(30)
    await page.wait_for_function(
        "() => document.querySelector('#answers li')?.dataset.status === 'confirmed'",
        timeout=WAIT_MS,
    )
    lights = dash.bridge.topics.vehicle_lights(METROTEC, vid)
    await dash.recorder.wait_for(
        lambda: json.loads(dash.recorder.retained.get(lights, b"{}")).get("status") == "confirmed"
    )
    await page.wait_for_function(
        "() => document.querySelector('#detail-fields .f-lights')?.textContent === 'on'",
        timeout=WAIT_MS,
    )
    await dash.screenshot("dashboard-command.png")

    # The same transaction again (a retry): the first answer, no second event.
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{dash.url}api/command",
            json={
                "command": "lights",
                "transaction": transaction,
                "account": METROTEC,
                "vehicle": vid,
                "state": "ON",
            },
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response,
    ):
        repeat = (await response.json())["answer"]
    assert (repeat["status"], repeat["data"]["state"], repeat["transaction"]) == (
        "ok",
        "pending",
        transaction,
    )
    assert server.metrotec.stats()["events"]["created"] == created + 1
    # Answered in the page, so never on MQTT (not now, not after a restart).
    assert not any(
        json.loads(m.payload).get("transaction") == transaction
        for m in dash.recorder.messages
        if m.topic.startswith("fleet/bridge/response/")
    )
    assert dash.bridge.store is not None
    entry = await dash.bridge.store.journal_get(f"{METROTEC}/{transaction}")
    assert entry is not None
    assert entry.status == "confirmed"
    await page.select_option("#f-account", "")


async def test_a_wrong_token_gets_no_data_and_no_command(dash: Dashboard, browser: Browser) -> None:
    server, url = dash.server, dash.url
    created = server.metrotec.stats()["events"]["created"]
    context, page = await open_page(browser, f"{url}#token=not-the-token-0000000")
    try:
        await page.wait_for_selector("#login:not([hidden])", timeout=WAIT_MS)
        assert "Wrong" in await page.inner_text("#login-error")
        assert "#token" not in page.url  # dropped from the address bar
        assert await page.evaluate("() => window.fleet.vehicles.size") == 0
        assert await page.evaluate("() => window.fleet.snapshots") == 0
        await dash.screenshot("dashboard-login.png", page)
        # The password, typed in: the fleet appears.
        await page.fill("#login-password", PASSWORD)
        await page.click('#login-form button[type="submit"]')
        await page.wait_for_function("() => window.fleet.ready", timeout=WAIT_MS)
        assert await page_keys(page) == dash.keys()
    finally:
        await context.close()

    vid = server.metrotec_world.ids()[1]
    command = {"command": "lights", "account": METROTEC, "vehicle": vid, "state": "ON"}
    wrong = {"Authorization": "Bearer not-the-token-0000000"}
    async with aiohttp.ClientSession() as session:
        for path in ("api/state", f"api/vehicle?account={METROTEC}&id={vid}"):
            async with session.get(url + path, headers=wrong) as response:
                assert response.status == 401
                assert vid not in await response.text()
        async with session.post(url + "api/command", json=command, headers=wrong) as response:
            assert response.status == 401
        # The right token from another site's page: refused (CSRF).
        evil = {"Authorization": f"Bearer {TOKEN}", "Origin": "http://evil.example"}
        async with session.post(url + "api/command", json=command, headers=evil) as response:
            assert response.status == 403
        # The live channel: closed at once, not one message of data first.
        async with session.ws_connect(url + "api/live") as ws:
            await ws.send_json({"t": "hello", "session": "not-the-token-0000000"})
            message = await ws.receive(timeout=WAIT_MS / 1000)
            assert message.type == aiohttp.WSMsgType.CLOSE
            assert message.data == 4401
        # Nothing secret anywhere a browser can fetch, logged in or not.
        secrets = dash.bridge.config.secrets()
        assert TOKEN in secrets
        assert PASSWORD in secrets
        bodies = []
        for path in ("", "static/app.js", "static/app.css", "api/config", "api/state"):
            async with session.get(
                url + path, headers={"Authorization": f"Bearer {TOKEN}"}
            ) as response:
                assert response.status == 200, path
                bodies.append(await response.text())
    assert not [s for s in secrets for body in bodies if s in body]
    assert server.metrotec.stats()["events"]["created"] == created


async def test_a_task_created_from_the_page_reaches_metrotec_once(dash: Dashboard) -> None:
    page, server = dash.page, dash.server
    vid = server.metrotec_world.ids()[1]
    key = f"{METROTEC}/{vid}"
    created = server.metrotec.stats()["tasks"]["created"]
    await page.select_option("#f-account", METROTEC)
    await page.click(f'.vt-row[data-key="{key}"]')
    opener = page.locator('#commands button[data-command="task/create"]')
    await opener.wait_for(timeout=WAIT_MS)
    for _ in range(2):
        # The page is shared with the other tests of this module, so earlier answers
        # are already listed: wait for this submission's own line (the newest, at the
        # top) to be answered, not for a count that earlier lines may already reach.
        before = await page.locator("#answers li").count()
        await opener.click()
        form = page.locator("#task-form")
        await form.wait_for(state="visible", timeout=WAIT_MS)
        await form.locator('input[name="order_ref"]').fill("WEB-ORDER-1")
        await form.locator('input[name="description"]').fill("Pallets for the harbour")
        await form.locator('button[type="submit"]').click()
        await page.wait_for_function(
            """n => {
                const lines = document.querySelectorAll('#answers li');
                return lines.length > n && lines[0].dataset.status !== undefined;
            }""",
            arg=before,
            timeout=WAIT_MS,
        )
        status = await page.locator("#answers li").first.get_attribute("data-status")
        # The form sent the task; the second time, the order_ref is known: the
        # first answer again, under the page's own transaction, no second task.
        assert status not in (None, "error", "failed"), status
    stats = server.metrotec.stats()["tasks"]
    assert stats["created"] == created + 1
    assert stats["duplicate_order_refs"] == 0
    tasks = server.metrotec.tasks.listing(every=True, order_ref="WEB-ORDER-1")
    assert len(tasks) == 1
    assert tasks[0].object_id == vid
    assert tasks[0].task_description == "Pallets for the harbour"
    await page.select_option("#f-account", "")
