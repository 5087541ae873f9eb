"""Why a pipeline run starts, and which runs are due.

A run starts for a new span of data, on a schedule, on a serving skew alarm,
on demand (a person ran it), or to backfill the training window of a new store. Whether it then trains
a model is the retraining policy's call: `train_when` turns the trigger and
the policy into the condition the DAG's RetrainDecision applies.
"""
import dataclasses
import pathlib
import re

SPAN_FOLDER = re.compile(r"span-(\d+)$")
SUCCESS_MARKER = "_SUCCESS"  # Hadoop's convention: the writer is done
# Names a writer uses while it is still writing (make_spans.py writes .partial).
IN_PROGRESS = re.compile(r"(\.partial|\.tmp|\.inprogress|\._COPYING_)$|^[._]")

# What may trigger a retraining (`--retrain-on`).
POLICIES = ("new-span", "decay", "drift", "schedule", "skew")


@dataclasses.dataclass(frozen=True)
class Trigger:
    kind: str  # "new span", "schedule", "skew", "manual", "backfill"
    span: int  # the span the run ingests
    detail: str = ""  # recorded as the run's trigger_detail, e.g. "skew: fare, ..."
    skew_check: int | None = None  # for "skew": the check whose alarm started it

    def label(self) -> str:
        return f"new span {self.span}" if self.kind == "new span" else self.kind


def span_is_complete(folder: pathlib.Path) -> bool:
    """A span counts once its writer is done: a _SUCCESS marker, or CSV files
    that were renamed into place (no file still being written)."""
    names = [path.name for path in folder.iterdir()]
    if SUCCESS_MARKER in names:
        return True
    return (any(name.endswith(".csv") for name in names)
            and not any(IN_PROGRESS.search(name) for name in names))


def complete_spans(data_dir: pathlib.Path) -> list[int]:
    """Span numbers whose folder is complete, oldest first."""
    if not data_dir.is_dir():
        return []
    return sorted(int(match.group(1)) for path in data_dir.iterdir()
                  if (match := SPAN_FOLDER.match(path.name)) and path.is_dir()
                  and span_is_complete(path))


def new_spans(on_disk: list[int], handled: set[int]) -> list[int]:
    """Spans to run, oldest first: those after the newest handled one. A new
    store starts with the newest span (its window is backfilled)."""
    if not on_disk:
        return []
    if not handled:
        return on_disk[-1:]
    return [span for span in on_disk if span > max(handled)]


def parse_policy(text: str) -> tuple[str, ...]:
    """'decay,drift' -> ('decay', 'drift'); unknown names are an error."""
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in chosen if name not in POLICIES]
    if unknown or not chosen:
        raise ValueError(f"use a comma list of {', '.join(POLICIES)}; got {text!r}")
    return chosen


def train_when(trigger: Trigger, policy: tuple[str, ...]) -> str:
    """The condition under which this run trains a model: 'always', a comma
    list of measured conditions ('decay,drift'), or '' (never)."""
    if trigger.kind in ("schedule", "skew"):
        return "always"  # the schedule the user set; the served data moved away
    # A manual run follows the policy as a new span does, so that a cron job can
    # run `run_local.py --retrain-on decay`, and a manual rerun of a span the
    # watcher handled finds every step cached.
    if "new-span" in policy:
        return "always"
    return ",".join(name for name in ("decay", "drift") if name in policy)


def parse_duration(text: str) -> float:
    """'90s', '15m', '24h', '7d', '1w' or plain seconds -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 15m, 24h, 7d)")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    return float(match.group(1)) * unit
