"""The explorer (index.html) in a real browser: headless Chromium driven by
Selenium. It loads from disk with no console error; clicking a node of either
graph shows its numbers and highlights its lines in all three code panes; and
screenshots of the xor and 12-layer-chain explorers are kept for a person to
look at (in $MLPGEN_SCREENSHOTS when set, else in pytest's temporary folder).

Skipped, with the reason, where Chromium, its driver or Selenium is missing;
scripts/setup.sh installs them, so CI runs these tests.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from .conftest import CHAIN12, ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
try:
    import selenium  # noqa: F401

    HAVE_SELENIUM = True
except ImportError:
    HAVE_SELENIUM = False

pytestmark = [
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER and HAVE_SELENIUM),
        reason="needs Chromium, chromedriver and selenium (bash scripts/setup.sh installs them)",
    ),
    pytest.mark.dot,  # the graphs to click are dot's SVGs
    pytest.mark.slow,  # a browser starts
]

# as root on a machine without a network: no sandbox, nothing in the background
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1000",
)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="mlpgen-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = os.environ.get("MLPGEN_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def open_page(browser, folder: Path) -> None:
    browser.get((folder / "index.html").resolve().as_uri())
    browser.get_log("browser")  # only what this page logs from here on


def errors(browser) -> list[dict]:
    return [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def click_node(browser, graph: str, node_id: str):
    from selenium.webdriver.common.by import By

    browser.find_element(By.CSS_SELECTOR, f'button[data-graph="{graph}"]').click()
    nodes = browser.find_elements(By.CSS_SELECTOR, f"#svg-{graph} g.node")
    (node,) = [n for n in nodes if n.get_attribute("data-node") == node_id]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", node)
    node.click()  # the click lands on its text or outline, inside the node
    return node


def highlighted(browser) -> dict[str, list[str]]:
    """File -> the text of its highlighted lines."""
    from selenium.webdriver.common.by import By

    out = {}
    for pane in browser.find_elements(By.CSS_SELECTOR, ".pane"):
        name = pane.find_element(By.CSS_SELECTOR, "h3").text.split()[0]
        rows = pane.find_elements(By.CSS_SELECTOR, ".ln.hl")
        out[name] = [r.get_attribute("textContent") for r in rows]
    return out


def test_xor_explorer_loads_and_links_nodes_to_lines(browser, compiled, shots):
    from selenium.webdriver.common.by import By

    folder = compiled(ROOT / "specs" / "xor.yaml")
    open_page(browser, folder)
    assert browser.title == "xor: explorer"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#svg-forward g.node")) >= 8

    node = click_node(browser, "forward", "fc2")
    assert "sel" in node.get_attribute("class")
    lines = highlighted(browser)
    assert sorted(lines) == ["numpy_backprop.py", "torch_manual.py", "torch_module.py"]
    assert any(
        'fc2 = act1 @ params["fc2.weight"].T' in t for t in lines["numpy_backprop.py"]
    )
    assert any("fc2 = act1 @ params" in t for t in lines["torch_manual.py"])
    assert any(
        "self.fc2 = nn.Linear(5, 1, bias=False)" in t for t in lines["torch_module.py"]
    )
    assert any("fc2 = self.fc2(act1)" in t for t in lines["torch_module.py"])
    details = browser.find_element(By.ID, "details").text
    assert "fc2 = act1 @ fc2.weightᵀ" in details

    click_node(browser, "backward", "d_fc1")
    lines = highlighted(browser)
    assert any(
        "d_fc1 = d_act1 * (1 - act1) * act1" in t for t in lines["numpy_backprop.py"]
    )
    assert any("d_fc1 =" in t for t in lines["torch_manual.py"])
    assert any("loss.backward()" in t for t in lines["torch_module.py"])
    # the panes scrolled to their highlighted lines
    for pane in browser.find_elements(By.CSS_SELECTOR, ".pane pre"):
        row = pane.find_element(By.CSS_SELECTOR, ".ln.hl")
        top = browser.execute_script(
            "return arguments[0].offsetTop - arguments[1].offsetTop - arguments[1].scrollTop",
            row,
            pane,
        )
        assert 0 <= top < pane.size["height"], top
    assert errors(browser) == []
    browser.save_screenshot(str(shots / "xor.png"))
    assert_readable(shots / "xor.png")


def test_explorer_of_a_12_layer_chain(browser, compiled, shots):
    from selenium.webdriver.common.by import By

    folder = compiled(CHAIN12)
    open_page(browser, folder)
    click_node(browser, "backward", 'grads["fc1.weight"]')
    lines = highlighted(browser)
    assert all(lines.values()), lines
    assert any(
        'grads["fc1.weight"] = d_fc1.T @ x' in t for t in lines["numpy_backprop.py"]
    )
    click_node(browser, "forward", "fc6")
    assert all(highlighted(browser).values())
    details = browser.find_element(By.ID, "details")
    if "value at the first step" in details.text:  # with the first step's numbers
        assert details.find_elements(
            By.CSS_SELECTOR, ".heat div"
        )  # (64, 32): a heat map
    assert errors(browser) == []
    browser.save_screenshot(str(shots / "chain12.png"))
    assert_readable(shots / "chain12.png")


def test_picking_from_the_list_and_deep_links(browser, compiled):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    folder = compiled(ROOT / "specs" / "two_branch.yaml")
    open_page(browser, folder)
    Select(browser.find_element(By.ID, "pick")).select_by_value("right")
    assert browser.find_element(By.CSS_SELECTOR, "#details h2").text.startswith(
        "right: softplus"
    )
    assert all(highlighted(browser).values())
    browser.get((folder / "index.html").resolve().as_uri() + "#d_joined")
    browser.refresh()
    assert browser.find_element(By.ID, "svg-backward").is_displayed()
    assert browser.find_element(By.CSS_SELECTOR, "#details h2").text.startswith(
        "∂L/∂joined"
    )
    assert errors(browser) == []


def assert_readable(path: Path) -> None:
    """A screenshot with something on it: the full window, many colours, and
    the code panes' text (dark pixels) as well as the highlight (yellow)."""
    from PIL import Image

    image = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
    assert image.size[0] >= 1400, image.size
    colours = image.getcolors(maxcolors=1 << 20)
    assert len(colours) > 200
    counts = {c: n for n, c in colours}
    dark = sum(n for c, n in counts.items() if sum(c) < 200)
    yellow = sum(
        n for (r, g, b), n in counts.items() if r > 240 and g > 200 and b < 160
    )
    assert dark > 5000 and yellow > 2000, (dark, yellow)
