#!/usr/bin/env python3
"""End-to-end checks of a running `polyglot serve`: loads data through the API, then opens the dashboard in
headless Chromium (Debian's chromium + chromium-driver, PyPI selenium), checks that the datasets and figures
the API reports appear on the page, and saves a screenshot.

Usage: e2e.py BASE_URL ADMIN_KEY OUTPUT_DIR
"""
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BASE, KEY, OUT = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]


def call(method, path, body=None, raw=None, headers=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    h = {"Authorization": "Bearer " + KEY}
    if body is not None:
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def ok(status, what):
    if status >= 300:
        raise SystemExit(f"e2e: {what} answered {status}")


# 1. Data through the API: documents (through the cache), key-value, vectors, graph, time series.
categories = ["shoes", "hats", "jackets", "bags"]
docs = [{"id": f"p{i}", "body": {"name": f"{categories[i % 4][:-1]} model {i}", "description": f"a fine {categories[i % 4]} item number {i}",
                                   "price": 10 + i % 90, "category": categories[i % 4], "stock": i % 7}} for i in range(300)]
for chunk in range(0, len(docs), 100):
    s, _, b = call("POST", "/v1/documents/products", {"put": docs[chunk:chunk + 100]})
    ok(s, "batch put")
for i in range(400):
    s, _, _ = call("GET", f"/v1/documents/products/p{(i * 7) % 40}")
    ok(s, "get")
s, _, _ = call("GET", "/v1/search/products?q=" + urllib.parse.quote("fine shoes"))
ok(s, "search")
s, _, _ = call("POST", "/v1/nearest/products", {"text": "warm hat", "k": 5})
ok(s, "nearest")
for i in range(20):
    ok(call("PUT", f"/v1/kv/sessions/s{i}?ttl=30m", raw=b"customer-%d" % i)[0], "kv put")
now = time.time()
s, _, _ = call("POST", "/v1/timeseries/page_views", {"samples": [{"series": "/home", "time": now - 60 * i, "value": i % 5} for i in range(100)]})
ok(s, "append")
ok(call("POST", "/v1/graph/bought_together/edges", {"edges": [{"from": "p1", "to": "p2"}, {"from": "p2", "to": "p3"}]})[0], "edges")
ok(call("GET", "/v1/graph/bought_together/traverse/p1?depth=2")[0], "traverse")

time.sleep(2.5)  # at least one telemetry window for the charts
s, _, b = call("GET", "/v1/status")
ok(s, "status")
status = json.loads(b)
api_datasets = {d["name"]: d for d in status["datasets"]}
cache = status["caches"][0]

# 2. The dashboard in headless Chromium.
opts = Options()
opts.binary_location = "/usr/bin/chromium"
for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1440,2200"]:
    opts.add_argument(a)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
failures = []
try:
    driver.get(BASE + "/")
    wait = WebDriverWait(driver, 20)
    # The server requires keys: the page asks for one, like an operator would enter it.
    wait.until(lambda d: "hidden" not in d.find_element(By.ID, "keybar").get_attribute("class"))
    driver.get_log("browser")  # drop the expected 401 of the first, keyless refresh
    driver.find_element(By.ID, "keyinput").send_keys(KEY)
    driver.find_element(By.ID, "keysave").click()
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "true")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#charts .chart")) > 0)

    rows = {r.get_attribute("data-dataset"): r for r in driver.find_elements(By.CSS_SELECTOR, "#datasets-table tbody tr")}
    if set(rows) != set(api_datasets):
        failures.append(f"dataset rows {sorted(rows)} != API datasets {sorted(api_datasets)}")
    shown = int(rows["products"].find_element(By.CSS_SELECTOR, "[data-testid=count]").get_attribute("data-value"))
    if shown < api_datasets["products"]["count"]:
        failures.append(f"products count on page {shown} < API {api_datasets['products']['count']}")
    nodes = {g.get_attribute("data-node") for g in driver.find_elements(By.CSS_SELECTOR, "#map-svg g")}
    for expected in ["dataset:products", "engine:primary", "engine:cache", "projection:products:cache", "projection:products:search"]:
        if expected not in nodes:
            failures.append(f"data map lacks {expected} (has {sorted(nodes)})")
    for e in status["engines"]:
        tile = driver.find_element(By.ID, "engine-" + e["name"])
        if tile.get_attribute("data-ok") != ("true" if e["ok"] else "false"):
            failures.append(f"engine {e['name']} health differs")
    rate = driver.find_element(By.CSS_SELECTOR, f"#cache-{cache['engine']} [data-testid=hit-rate]").text
    api_rate = cache["hitRate"] * 100
    if not rate.endswith("%") or abs(float(rate[:-1]) - api_rate) > 5:
        failures.append(f"hit rate on page {rate} vs API {api_rate:.1f}%")
    charts = [c.get_attribute("data-chart") for c in driver.find_elements(By.CSS_SELECTOR, "#charts .chart")]
    if "products" not in charts:
        failures.append(f"no latency chart for products (charts: {charts})")
    if not driver.find_elements(By.CSS_SELECTOR, "#charts .chart path"):
        failures.append("latency charts have no lines")
    proj = {r.get_attribute("data-projection") for r in driver.find_elements(By.CSS_SELECTOR, "#projections-table tbody tr")}
    if "products:search" not in proj:
        failures.append(f"projection rows {sorted(proj)}")
    # The advisor's recommendations from the API (at least "stay as you are" ones) appear in the advisor panel.
    s, _, b = call("GET", "/v1/advice?window=1h")
    ok(s, "advice")
    recs = json.loads(b)["recommendations"]
    if not recs:
        failures.append("the advisor returned no recommendation (it says 'stay as you are' when nothing is wrong)")
    shown = {(e.get_attribute("data-dataset"), e.get_attribute("data-rule")) for e in driver.find_elements(By.CSS_SELECTOR, "#advice .advice-item")}
    for r in recs:
        if (r["dataset"], r["rule"]) not in shown:
            failures.append(f"advice {r['dataset']}/{r['rule']} is not on the page (shown: {sorted(shown)})")
    logs = [l for l in driver.get_log("browser") if l["level"] == "SEVERE"]
    if logs:
        failures.append(f"browser console errors: {logs}")
    driver.save_screenshot(OUT + "/dashboard.png")
finally:
    driver.quit()

if failures:
    print("e2e: dashboard FAILED:\n  " + "\n  ".join(failures))
    sys.exit(1)
print(f"e2e: dashboard OK: {len(api_datasets)} datasets, {len(nodes)} map nodes, hit rate {rate}, charts for {charts}; screenshot {OUT}/dashboard.png")
