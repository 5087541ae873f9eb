"""Command line of the lineage tool: `python -m pipeline.lineage COMMAND`.

Parses flags, calls one query, hands the record to one formatter. Problems a
user can fix end with a one-line message on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ml_metadata import errors as mlmd_errors

from pipeline.lineage import (diff, format_dot, format_html, format_json,
                              format_text, queries, store, trace, walk)
from pipeline.lineage.errors import LineageError

_PICTURES = ('dot', 'svg', 'html')


def _store_flags() -> argparse.ArgumentParser:
  # SUPPRESS lets the flags go before or after the command name.
  flags = argparse.ArgumentParser(add_help=False)
  where = flags.add_mutually_exclusive_group()
  where.add_argument(
      '--metadata', metavar='STORE', default=argparse.SUPPRESS,
      help='ML Metadata store: a SQLite file, postgresql://user@host:port/dbname, '
      'mysql://user@host:port/dbname or a ConnectionConfig textproto; password '
      'from PGPASSWORD / ~/.pgpass or MYSQL_PWD (default: $TAXI_METADATA, else '
      'the one pipeline/run_local.py writes, outputs/metadata.sqlite or '
      '$TAXI_OUTPUT_DIR/metadata.sqlite); SQLite is always opened read-only')
  where.add_argument(
      '--metadata_path', '--metadata-path', default=argparse.SUPPRESS,
      help='a SQLite ML Metadata file (as --metadata)')
  where.add_argument(
      '--connection_config', '--connection-config', default=argparse.SUPPRESS,
      help='an ml_metadata.ConnectionConfig textproto file (as --metadata)')
  flags.add_argument('-o', '--output', default=argparse.SUPPRESS,
                     help='write to this file instead of stdout')
  return flags


def _parser() -> argparse.ArgumentParser:
  flags = _store_flags()
  parser = argparse.ArgumentParser(
      prog='python -m pipeline.lineage', parents=[flags],
      description='Where did a model come from, and what changed between '
      'runs? Reads the pipeline\'s ML Metadata store, never writes to it.')
  commands = parser.add_subparsers(dest='command', required=True,
                                   metavar='COMMAND')

  def command(name: str, help_text: str, formats: tuple[str, ...]):
    sub = commands.add_parser(name, parents=[flags], help=help_text,
                              description=help_text)
    sub.add_argument('--format', choices=formats, default=formats[0],
                     help=f'output format (default {formats[0]})')
    return sub

  command('runs', 'list pipeline runs: id, start, duration, status, pushed '
          'version', ('text', 'json'))
  model = command('model', 'trace the served model (latest pushed version) '
                  'or --version back to its data', ('text', 'json') + _PICTURES)
  model.add_argument('--version', help='pushed version (serving directory '
                     'name); default: the latest one')
  artifact = command('artifact', 'an artifact with its upstream, downstream '
                     'and the models trained on it', ('text', 'json') + _PICTURES)
  which = artifact.add_mutually_exclusive_group(required=True)
  which.add_argument('artifact_id', nargs='?', type=int, help='artifact id')
  which.add_argument('--span', type=int,
                     help='the Examples artifact(s) ingested for this span')
  artifact.add_argument('--hops', type=int, default=walk.DEFAULT_MAX_HOPS,
                        help='how far to follow lineage (default %(default)s)')
  run_diff = command('diff', 'what differs between two runs: inputs, '
                     'parameters, metrics, outputs', ('text', 'json'))
  run_diff.add_argument('run_a', help='run id or name, "latest", "previous"')
  run_diff.add_argument('run_b', help='run id or name, "latest", "previous"')
  graph = command('graph', 'draw lineage: of the served model by default',
                  ('html', 'svg', 'dot', 'json'))
  target = graph.add_mutually_exclusive_group()
  target.add_argument('--version', help='a pushed model version')
  target.add_argument('--artifact', type=int,
                      help='an artifact: upstream and downstream')
  target.add_argument('--run', help='every step of one run (id or name)')
  return parser


def _picture(graph, fmt: str, title: str, summary: str = '') -> str:
  if fmt == 'dot':
    return format_dot.to_dot(graph)
  if fmt == 'svg':
    return format_dot.to_svg(graph)
  if fmt == 'html':
    return format_html.to_html(graph, title, summary)
  return format_json.dumps(graph)


def _artifact_reports(metadata, args) -> list:
  ids = ([args.artifact_id] if args.artifact_id is not None else
         [a.id for a in queries.examples_of_span(metadata, args.span)])
  return [trace.artifact_report(metadata, i, args.hops) for i in ids]


def _render(metadata, args) -> str:
  fmt = args.format
  if args.command == 'runs':
    runs = queries.require_runs(metadata)
    return format_text.runs(runs) if fmt == 'text' else format_json.dumps(runs)
  if args.command == 'model':
    result = trace.trace_pushed_model(metadata, args.version)
    if fmt in _PICTURES:
      return _picture(result.graph, fmt, f'Pushed model {result.version}',
                      format_text.model_trace(result))
    return (format_text.model_trace(result) if fmt == 'text'
            else format_json.dumps(result))
  if args.command == 'artifact':
    reports = _artifact_reports(metadata, args)
    if fmt == 'text':
      return '\n\n'.join(format_text.artifact_report(r) for r in reports)
    if fmt == 'json':
      return '\n'.join(format_json.dumps(r) for r in reports)
    graph = walk.merge(*[walk.merge(r.upstream, r.downstream) for r in reports])
    return _picture(graph, fmt, f'Artifact {reports[0].artifact.id}')
  if args.command == 'diff':
    result = diff.diff_runs(metadata, queries.resolve_run(metadata, args.run_a),
                            queries.resolve_run(metadata, args.run_b))
    return (format_text.run_diff(result) if fmt == 'text'
            else format_json.dumps(result))
  # graph
  if args.run:
    run = queries.resolve_run(metadata, args.run)
    return _picture(walk.run_graph(metadata, run), fmt, f'Run {run.name}')
  if args.artifact is not None:
    queries.get_artifact(metadata, args.artifact)
    graph = walk.merge(walk.upstream(metadata, args.artifact),
                       walk.downstream(metadata, args.artifact))
    return _picture(graph, fmt, f'Artifact {args.artifact}')
  result = trace.trace_pushed_model(metadata, args.version)
  return _picture(result.graph, fmt, f'Pushed model {result.version}',
                  format_text.model_trace(result))


def main(argv: Any = None) -> int:
  args = _parser().parse_args(argv)
  try:
    metadata = store.open_store(getattr(args, 'metadata_path', None),
                                getattr(args, 'connection_config', None),
                                getattr(args, 'metadata', None))
    text = _render(metadata, args)
  except LineageError as e:
    print(f'lineage: error: {e}', file=sys.stderr)
    return 1
  except mlmd_errors.StatusError as e:
    print(f'lineage: error: the metadata store refused a query: {e}',
          file=sys.stderr)
    return 1
  output = getattr(args, 'output', None)
  if output:
    with open(output, 'w') as f:
      f.write(text + '\n')
  else:
    sys.stdout.write(text + '\n')
  return 0


if __name__ == '__main__':
  sys.exit(main())
