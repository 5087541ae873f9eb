"""Beam arguments a user adds on the command line (`run_local.py --beam-arg`),
checked with Beam's own option parser before any run starts, so that a typo
fails in a second, not after the backfill, in the first Beam component.
"""
import contextlib
import io
import logging
import warnings


def problem_with(args: list[str]) -> str | None:
    """What Beam's PipelineOptions cannot accept in `args`, or None if it can.

    Beam ignores (with a warning) a flag it does not know, and a runner would
    then run without it: here an unknown flag is an error. A flag Beam knows
    with a value it refuses (a wrong choice, not a number) is one too.
    """
    with warnings.catch_warnings():  # Google's client libraries on Python 3.10
        warnings.simplefilter("ignore", FutureWarning)
        from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(args)
    beam_log = logging.getLogger("apache_beam.options.pipeline_options")
    level, beam_log.level = beam_log.level, logging.ERROR  # no "Discarding ..." warning
    usage = io.StringIO()
    try:
        with contextlib.redirect_stderr(usage):
            known = options.get_all_options()
        unknown = sorted(set(options.get_all_options(retain_unknown_options=True)) - set(known))
    except SystemExit:  # argparse's error: usage, then "prog: error: <what>"
        lines = usage.getvalue().strip().splitlines() or ["invalid value"]
        return lines[-1].split("error: ", 1)[-1]
    finally:
        beam_log.level = level
    if unknown:
        return ("Beam knows no option " + ", ".join(f"--{name}" for name in unknown)
                + " (the names are Beam's, with underscores: `python -m "
                "apache_beam.examples.wordcount --help` lists them)")
    return None
