"""Pictures of a lineage graph: Graphviz DOT text, and SVG laid out here.

The SVG needs no Graphviz binary: a small layered layout (longest-path layers,
left to right, barycenter ordering) is enough for pipeline-sized graphs, and
its node ids are what the HTML page hooks its clicks onto.
"""

from __future__ import annotations

import dataclasses
import html
from typing import Optional

from pipeline.lineage.convert import artifact_label
from pipeline.lineage.records import LineageGraph

NODE_WIDTH, NODE_HEIGHT = 210, 46
LAYER_GAP, ROW_GAP, MARGIN = 70, 18, 20

# Fill colours by artifact type family, so data, models and checks stand out.
_ARTIFACT_COLOURS = {
    'Examples': '#dbeafe', 'ExampleStatistics': '#ede9fe', 'Schema': '#ede9fe',
    'ExampleAnomalies': '#fce7f3', 'TransformGraph': '#e0f2fe',
    'Model': '#ffedd5', 'ModelRun': '#fef3c7', 'ModelEvaluation': '#fef9c3',
    'ModelBlessing': '#fef9c3', 'PushedModel': '#dcfce7',
}
_STATE_COLOURS = {'COMPLETE': '#15803d', 'CACHED': '#6b7280',
                  'FAILED': '#b91c1c', 'RUNNING': '#1d4ed8'}


@dataclasses.dataclass
class PlacedNode:
  key: str  # "a<id>" or "e<id>"
  title: str
  subtitle: str
  kind: str  # "artifact" or "execution"
  x: float
  y: float
  fill: str
  stroke: str
  dashed: bool


@dataclasses.dataclass
class Layout:
  nodes: dict[str, PlacedNode]
  edges: list[tuple[str, str, str]]  # (from key, to key, event key)
  width: float
  height: float


def _describe(graph: LineageGraph, key: str) -> tuple[str, str, str, str, bool]:
  """Title, subtitle, fill, stroke and dashed-ness of one node."""
  if key.startswith('a'):
    artifact = graph.artifacts[int(key[1:])]
    label = artifact_label(artifact)
    title, _, rest = label.partition(', ')
    return (title, rest or (f'by {artifact.producer_node}'
                            if artifact.producer_node else artifact.state.lower()),
            _ARTIFACT_COLOURS.get(artifact.type, '#f3f4f6'), '#6b7280', False)
  execution = graph.executions[int(key[1:])]
  subtitle = execution.state.lower()
  if execution.cached and execution.cache_source:
    subtitle = f'cached from #{execution.cache_source}'
  elif not execution.cached:
    subtitle += f', {execution.duration_s:.1f}s'
  return (f'{execution.node} #{execution.id}', subtitle, '#ffffff',
          _STATE_COLOURS.get(execution.state, '#374151'), execution.cached)


def _directed_edges(graph: LineageGraph) -> list[tuple[str, str, str]]:
  edges, seen = [], set()
  for edge in graph.edges:
    pair = ((f'a{edge.artifact}', f'e{edge.execution}') if edge.kind == 'input'
            else (f'e{edge.execution}', f'a{edge.artifact}'))
    if pair not in seen and edge.artifact in graph.artifacts and (
        edge.execution in graph.executions):
      seen.add(pair)
      edges.append((pair[0], pair[1], edge.key))
  return edges


def layout(graph: LineageGraph) -> Layout:
  keys = ([f'e{i}' for i in sorted(graph.executions)] +
          [f'a{i}' for i in sorted(graph.artifacts)])
  edges = _directed_edges(graph)
  parents = {k: [] for k in keys}
  children = {k: [] for k in keys}
  for source, target, _ in edges:
    parents[target].append(source)
    children[source].append(target)
  # Longest path from a source decides the column; bounded in case of cycles.
  layer = {k: 0 for k in keys}
  for _ in range(len(keys)):
    changed = False
    for source, target, _ in edges:
      if layer[target] < layer[source] + 1:
        layer[target] = layer[source] + 1
        changed = True
    if not changed:
      break
  columns: dict[int, list[str]] = {}
  for key in sorted(keys, key=lambda k: (k[0], int(k[1:]))):
    columns.setdefault(layer[key], []).append(key)
  # Barycenter sweeps: order each column by the mean position of neighbours.
  for sweep in range(4):
    order = sorted(columns) if sweep % 2 == 0 else sorted(columns, reverse=True)
    for column in order:
      neighbours = parents if sweep % 2 == 0 else children
      position = {k: i for c in columns.values() for i, k in enumerate(c)}

      def centre(key, neighbours=neighbours, position=position):
        near = [position[n] for n in neighbours[key] if n in position]
        return sum(near) / len(near) if near else position[key]

      columns[column].sort(key=centre)
  tallest = max((len(c) for c in columns.values()), default=1)
  height = 2 * MARGIN + tallest * NODE_HEIGHT + (tallest - 1) * ROW_GAP
  nodes = {}
  for column, members in columns.items():
    used = len(members) * NODE_HEIGHT + (len(members) - 1) * ROW_GAP
    top = (height - used) / 2
    for row, key in enumerate(members):
      title, subtitle, fill, stroke, dashed = _describe(graph, key)
      nodes[key] = PlacedNode(
          key=key, title=title, subtitle=subtitle,
          kind='artifact' if key.startswith('a') else 'execution',
          x=MARGIN + column * (NODE_WIDTH + LAYER_GAP),
          y=top + row * (NODE_HEIGHT + ROW_GAP),
          fill=fill, stroke=stroke, dashed=dashed)
  width = 2 * MARGIN + len(columns) * NODE_WIDTH + max(
      len(columns) - 1, 0) * LAYER_GAP
  return Layout(nodes=nodes, edges=edges, width=width, height=height)


def _clip(text: str, limit: int = 30) -> str:
  return text if len(text) <= limit else text[:limit - 1] + '…'


def to_svg(graph: LineageGraph, placed: Optional[Layout] = None) -> str:
  placed = placed or layout(graph)
  esc = html.escape
  roots = set(graph.roots)
  out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" '
         f'width="{placed.width:.0f}" height="{placed.height:.0f}" '
         f'viewBox="0 0 {placed.width:.0f} {placed.height:.0f}" '
         'font-family="sans-serif" font-size="12">',
         '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
         'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
         '<path d="M0,0 L10,5 L0,10 z" fill="#9ca3af"/></marker></defs>']
  for source, target, key in placed.edges:
    a, b = placed.nodes[source], placed.nodes[target]
    x1, y1 = a.x + NODE_WIDTH, a.y + NODE_HEIGHT / 2
    x2, y2 = b.x, b.y + NODE_HEIGHT / 2
    bend = max((x2 - x1) / 2, 30)
    out.append(f'<path class="edge" data-from="{source}" data-to="{target}" '
               f'd="M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} '
               f'{x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}" fill="none" '
               f'stroke="#9ca3af" stroke-width="1.3" marker-end="url(#arrow)">'
               f'<title>{esc(key)}</title></path>')
  for node in placed.nodes.values():
    radius = 14 if node.kind == 'artifact' else 3
    dash = ' stroke-dasharray="5,3"' if node.dashed else ''
    width = 3 if node.key in roots else 1.5
    out.append(
        f'<g class="node {node.kind}" id="node-{node.key}" '
        f'data-key="{node.key}" transform="translate({node.x:.1f},{node.y:.1f})">'
        f'<title>{esc(node.title)}: {esc(node.subtitle)}</title>'
        f'<rect width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="{radius}" '
        f'fill="{node.fill}" stroke="{node.stroke}" stroke-width="{width}"{dash}/>'
        f'<text x="{NODE_WIDTH / 2}" y="19" text-anchor="middle" '
        f'font-weight="bold">{esc(_clip(node.title))}</text>'
        f'<text x="{NODE_WIDTH / 2}" y="35" text-anchor="middle" '
        f'fill="#374151">{esc(_clip(node.subtitle, 34))}</text></g>')
  out.append('</svg>')
  return '\n'.join(out)


def _dot_quote(text: str) -> str:
  return '"' + text.replace('\\', '\\\\').replace('"', '\\"') + '"'


def to_dot(graph: LineageGraph) -> str:
  out = ['digraph lineage {', '  rankdir=LR;',
         '  node [fontname="sans-serif", fontsize=10];']
  for key in [f'e{i}' for i in sorted(graph.executions)] + [
      f'a{i}' for i in sorted(graph.artifacts)]:
    title, subtitle, fill, stroke, dashed = _describe(graph, key)
    shape = 'box' if key.startswith('e') else 'box, style="rounded,filled"'
    style = ', style=dashed' if dashed else ''
    fill_attr = f', fillcolor={_dot_quote(fill)}' if key.startswith('a') else ''
    # DOT's own line break escape; a raw newline confuses some parsers.
    label = _dot_quote(title)[:-1] + r'\n' + _dot_quote(subtitle)[1:]
    out.append(f'  {key} [label={label}, '
               f'shape={shape}{fill_attr}, color={_dot_quote(stroke)}{style}];')
  for source, target, key in _directed_edges(graph):
    out.append(f'  {source} -> {target} [label={_dot_quote(key)}, '
               'fontsize=8];')
  out.append('}')
  return '\n'.join(out)
