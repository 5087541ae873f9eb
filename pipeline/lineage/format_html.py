"""A self-contained HTML page to click through a lineage graph in a browser.

One file, no network: the SVG from format_dot, the graph as embedded JSON and
a little inline script that shows a node's details and highlights everything
upstream and downstream of it.
"""

from __future__ import annotations

import html
import json

from pipeline.lineage import format_dot
from pipeline.lineage.convert import artifact_label
from pipeline.lineage.records import LineageGraph

_STYLE = """
body { margin: 0; font-family: sans-serif; color: #111827; display: flex;
       height: 100vh; }
#side { width: 340px; border-right: 1px solid #e5e7eb; display: flex;
        flex-direction: column; }
#side h1 { font-size: 15px; margin: 12px; }
#filter { margin: 0 12px 8px; padding: 4px; }
#legend { margin: 0 12px 8px; font-size: 11px; color: #4b5563; }
#node-index { list-style: none; margin: 0; padding: 0 12px; overflow: auto;
              flex: 1; font-size: 12px; }
#node-index li { padding: 3px 4px; cursor: pointer; border-radius: 3px; }
#node-index li:hover, #node-index li.selected { background: #e0e7ff; }
#details { border-top: 1px solid #e5e7eb; padding: 8px 12px; height: 45%;
           overflow: auto; font-size: 12px; }
#details table { border-collapse: collapse; }
#details td { vertical-align: top; padding: 1px 6px 1px 0;
              word-break: break-all; }
#details a { color: #1d4ed8; cursor: pointer; }
#canvas { flex: 1; overflow: auto; }
#summary { margin: 8px 12px; font-size: 12px; }
#summary pre { background: #f9fafb; padding: 8px; }
g.node { cursor: pointer; }
.dim { opacity: 0.25; }
g.node.selected rect { stroke: #4f46e5; stroke-width: 4; }
path.edge.lit { stroke: #4f46e5; }
"""

_SCRIPT = """
(function () {
  const data = JSON.parse(document.getElementById('lineage-data').textContent);
  const nodes = data.nodes;
  const up = {}, down = {};
  Object.keys(nodes).forEach(k => { up[k] = []; down[k] = []; });
  data.edges.forEach(e => { down[e.from].push(e); up[e.to].push(e); });

  function reach(start, links, field) {
    const seen = new Set([start]), todo = [start];
    while (todo.length) {
      links[todo.pop()].forEach(e => {
        if (!seen.has(e[field])) { seen.add(e[field]); todo.push(e[field]); }
      });
    }
    return seen;
  }
  function esc(s) {
    return String(s).replace(/[&<>"]/g, c => ({'&': '&amp;', '<': '&lt;',
      '>': '&gt;', '"': '&quot;'}[c]));
  }
  function link(key) {
    return '<a data-key="' + key + '">' + esc(nodes[key].label) + '</a>';
  }
  function select(key, scroll) {
    const related = new Set([...reach(key, up, 'from'),
                             ...reach(key, down, 'to')]);
    document.querySelectorAll('g.node').forEach(g => {
      g.classList.toggle('dim', !related.has(g.dataset.key));
      g.classList.toggle('selected', g.dataset.key === key);
    });
    document.querySelectorAll('path.edge').forEach(p => {
      const lit = related.has(p.dataset.from) && related.has(p.dataset.to);
      p.classList.toggle('dim', !lit);
      p.classList.toggle('lit', lit);
    });
    document.querySelectorAll('#node-index li').forEach(li =>
      li.classList.toggle('selected', li.dataset.key === key));
    const node = nodes[key];
    let rows = '';
    Object.entries(node.fields).forEach(([k, v]) => {
      rows += '<tr><td><b>' + esc(k) + '</b></td><td>' +
        esc(typeof v === 'string' ? v : JSON.stringify(v)) + '</td></tr>';
    });
    const ins = up[key].map(e => esc(e.key) + ': ' + link(e.from));
    const outs = down[key].map(e => esc(e.key) + ': ' + link(e.to));
    document.getElementById('details').innerHTML =
      '<h3 id="details-title">' + esc(node.label) + '</h3><table>' + rows +
      '</table><p><b>from</b><br>' + (ins.join('<br>') || '-') +
      '</p><p><b>to</b><br>' + (outs.join('<br>') || '-') + '</p>';
    const g = document.getElementById('node-' + key);
    if (scroll && g && g.scrollIntoView) g.scrollIntoView({block: 'nearest',
                                                 inline: 'nearest'});
  }
  const list = document.getElementById('node-index');
  Object.keys(nodes).forEach(key => {
    const li = document.createElement('li');
    li.dataset.key = key;
    li.className = 'index-entry ' + nodes[key].kind;
    li.textContent = nodes[key].label;
    list.appendChild(li);
  });
  document.addEventListener('click', ev => {
    const target = ev.target.closest('[data-key]');
    if (target) select(target.dataset.key, true);
  });
  document.getElementById('filter').addEventListener('input', ev => {
    const text = ev.target.value.toLowerCase();
    list.querySelectorAll('li').forEach(li => {
      li.style.display = li.textContent.toLowerCase().includes(text) ? '' :
        'none';
    });
  });
  if (data.roots.length && nodes[data.roots[0]]) select(data.roots[0], false);
})();
"""


def _summary_block(summary: str) -> str:
  if not summary:
    return ''
  return ('<details id="summary"><summary>Report</summary><pre>'
          f'{html.escape(summary)}</pre></details>')


def _page_data(graph: LineageGraph) -> dict:
  nodes = {}
  for artifact in graph.artifacts.values():
    fields = {'type': artifact.type, 'uri': artifact.uri,
              'state': artifact.state, 'producer': artifact.producer_node}
    fields.update(artifact.properties)
    nodes[f'a{artifact.id}'] = {'label': artifact_label(artifact),
                                'kind': 'artifact', 'fields': fields}
  for execution in graph.executions.values():
    fields = {'node': execution.node, 'type': execution.type,
              'state': execution.state, 'run': execution.run,
              'duration_s': execution.duration_s,
              'cache_source': execution.cache_source}
    fields.update(execution.properties)
    nodes[f'e{execution.id}'] = {
        'label': f'{execution.node} #{execution.id} ({execution.state.lower()})',
        'kind': 'execution', 'fields': fields}
  placed = format_dot.layout(graph)
  return {'roots': graph.roots, 'nodes': nodes,
          'edges': [{'from': s, 'to': t, 'key': k} for s, t, k in placed.edges]}


def to_html(graph: LineageGraph, title: str, summary: str = '') -> str:
  """The page; `summary` (e.g. the text report) shows above the graph."""
  data = json.dumps(_page_data(graph), default=str)
  # "</" inside a script element would end it early.
  data = data.replace('</', '<\\/')
  svg = format_dot.to_svg(graph)
  return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>{_STYLE}</style></head>
<body>
<div id="side">
  <h1>{html.escape(title)}</h1>
  <p id="legend">Data flows left to right. Square boxes are executions
  (green ran, grey dashed came from the cache, red failed); rounded boxes are
  artifacts. Click one to see where it came from and went.</p>
  <input id="filter" type="search" placeholder="filter nodes">
  <ul id="node-index"></ul>
  <div id="details">Click a node.</div>
</div>
<div id="canvas">{_summary_block(summary)}{svg}</div>
<script type="application/json" id="lineage-data">{data}</script>
<script>{_SCRIPT}</script>
</body></html>
"""

