"""`release status`: the stable and canary versions, since when and why (from
ML Metadata), the pending version and the rollback target."""
import datetime

from metadata import releases
from pipeline.release.actions import Release, no_release_yet, pending_version, rollback_target
from pipeline.release.serving_config import CANARY, STABLE


def when(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def describe(release: Release) -> str:
    _, served = release.read()
    if served.stable is None:
        return no_release_yet(release)
    history = release.history()
    out = [f"{release.model_name} in {release.path}"]
    for label, version in ((STABLE, served.stable), (CANARY, served.canary)):
        since = releases.label_since(history, label)
        if since is not None and getattr(since, f"{label}_version") == str(version):
            why = f"since {when(since.time)}, {since.action}: {since.reason}"
        else:
            why = "(not recorded in ML Metadata: the file was edited by hand?)"
        out.append(f"  {label:<8} version {version}  {why}")
    pending = pending_version(release, served)
    if pending is not None:
        out.append(f"  pending  version {pending}  waits for the server to load it")
    target = rollback_target(release, served)
    out.append(f"  loaded   versions {', '.join(map(str, served.loaded))}")
    out.append("  rollback target  " + (f"version {target}" if target else "none"))
    return "\n".join(out)
