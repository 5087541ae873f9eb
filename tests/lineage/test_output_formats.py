"""JSON round-trips into the same records; DOT, SVG and the HTML page draw the graph."""
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree

import pydot
import pytest

from pipeline.lineage import format_json, records

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.mark.parametrize("command", [
    ["runs"], ["model"], ["artifact", "--span", "16"], ["diff", "previous", "latest"],
    ["graph", "--run", "latest"]])
def test_json_round_trips_into_records(lineage, command):
    text = lineage(*command, "--format", "json")
    value = format_json.loads(text)
    assert value, "non-empty result"
    assert format_json.dumps(value) == text.rstrip("\n")
    if command == ["model"]:
        assert isinstance(value, records.ModelTrace)
        assert isinstance(next(iter(value.graph.artifacts)), int)
        assert all(isinstance(s, records.SpanRecord) for s in value.spans)


def graph_keys(lineage_json, *target) -> tuple[set[str], str]:
    graph = lineage_json("graph", *target)["lineage_graph"]
    keys = {f"a{i}" for i in graph["artifacts"]} | {f"e{i}" for i in graph["executions"]}
    return keys, graph["roots"][0]


def test_svg_and_dot_draw_every_node_and_edge(lineage, lineage_json):
    keys, _ = graph_keys(lineage_json)
    svg = ElementTree.fromstring(lineage("graph", "--format", "svg"))
    groups = {g.get("data-key") for g in svg.iter("{http://www.w3.org/2000/svg}g")
              if "node" in (g.get("class") or "")}
    assert groups == keys
    edges = [p for p in svg.iter("{http://www.w3.org/2000/svg}path")
             if p.get("class") == "edge"]
    assert edges and all(p.get("data-from") in keys and p.get("data-to") in keys
                         for p in edges)
    (dot,) = pydot.graph_from_dot_data(lineage("graph", "--format", "dot"))
    # pydot 1.4 also reports "node" defaults and a '"\\n"' after edge lines.
    assert {n.get_name() for n in dot.get_nodes()
            if re.fullmatch(r"[ae]\d+", n.get_name())} == keys
    assert len(dot.get_edges()) == len(edges)


def chromium_dom(page, profile_dir) -> str:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: `make browser` "
                    "(apt-get install -y chromium) installs it")
    result = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_html_page_renders_the_graph_in_chromium(lineage, lineage_json, tmp_path):
    examples = lineage_json("model")["model_trace"]["spans"][-1]["examples"]
    keys, root = graph_keys(lineage_json, "--artifact", examples)
    page = tmp_path / "lineage.html"
    lineage("graph", "--artifact", examples, "--format", "html", "-o", page)
    html = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "self-contained"

    dom = chromium_dom(page, tmp_path / "profile")
    drawn = set(re.findall(r'<g class="node [a-z]+[^"]*" id="node-([ae]\d+)"', dom))
    assert drawn == keys
    # The index and the details panel are built by the page's script: they
    # exist only if it ran without errors.
    listed = re.findall(r'<li data-key="([ae]\d+)" class="index-entry', dom)
    assert sorted(listed) == sorted(keys)
    title = re.search(r'<h3 id="details-title">([^<]*)</h3>', dom)
    assert title and title.group(1).startswith(f"Examples #{root[1:]}")
    assert 'class="node artifact selected"' in dom
    assert os.path.getsize(page) > 1000


def test_model_page_carries_the_text_report(lineage, tmp_path):
    page = tmp_path / "model.html"
    lineage("model", "--format", "html", "-o", page)
    html = page.read_text()
    assert '<details id="summary">' in html and "Pushed model version" in html
    assert 'id="lineage-data"' in html and "<svg" in html
