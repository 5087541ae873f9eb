"""Lineage of the pipeline's runs, models and data, read from ML Metadata.

`python -m pipeline.lineage --help` is the command line; the functions below
are the library: each returns plain records (records.py) that the format_*
modules render as text, JSON, DOT/SVG or a clickable HTML page.
"""

from pipeline.lineage.diff import diff_runs
from pipeline.lineage.errors import LineageError
from pipeline.lineage.queries import (find_pushed_model, list_runs,
                                      resolve_run)
from pipeline.lineage.store import open_store
from pipeline.lineage.trace import artifact_report, trace_pushed_model
from pipeline.lineage.walk import downstream, run_graph, upstream

__all__ = [
    'LineageError', 'artifact_report', 'diff_runs', 'downstream',
    'find_pushed_model', 'list_runs', 'open_store', 'resolve_run', 'run_graph',
    'trace_pushed_model', 'upstream',
]
