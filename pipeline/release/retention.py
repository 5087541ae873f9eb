"""Which version folders the serving folder keeps: the labelled ones, the ones
the serving config loads, and the newest N; the rest are deleted.

A folder is renamed to a hidden name first (a server polling the folder ignores
names that are not integers), then removed, so no server sees half a version.
"""
import pathlib
import shutil

from pipeline.release.serving_config import ServedVersions


def versions_on_disk(serving_dir: pathlib.Path) -> list[int]:
    if not serving_dir.is_dir():
        return []
    return sorted(int(p.name) for p in serving_dir.iterdir() if p.name.isdigit() and p.is_dir())


def versions_to_delete(on_disk: list[int], served: ServedVersions, versions_kept: int) -> list[int]:
    keep = set(served.loaded) | served.labelled | set(sorted(on_disk)[-versions_kept:]
                                                      if versions_kept > 0 else [])
    return [v for v in sorted(on_disk) if v not in keep]


def delete_versions(serving_dir: pathlib.Path, served: ServedVersions,
                    versions_kept: int) -> list[int]:
    """Deletes the folders versions_to_delete names; returns their versions."""
    deleted = []
    for version in versions_to_delete(versions_on_disk(serving_dir), served, versions_kept):
        hidden = serving_dir / f".deleting-{version}"
        (serving_dir / str(version)).rename(hidden)
        shutil.rmtree(hidden, ignore_errors=True)
        deleted.append(version)
    return deleted
