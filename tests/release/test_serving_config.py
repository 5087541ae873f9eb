"""The release step keeps what a user wrote in the serving config (request
logging, other models) and, in a file it did not create, labels the first
version only in a second write, as a server already following it requires."""
import portpicker

from pipeline.release import actions, serving_config
from pipeline.release.serving_config import ServedVersions
from tests.release.conftest import MODEL

USER_CONFIG = """model_config_list {
  config { name: "taxi_tips" base_path: "%(base)s" model_platform: "tensorflow"
    logging_config { sampling_config { sampling_rate: 0.5 }
      log_collector_config { type: "tfrecord" filename_prefix: "%(logs)s" } } }
  config { name: "other" base_path: "/models/other" model_platform: "tensorflow" }
}
"""


def test_a_users_config_is_kept_and_its_first_version_labelled_in_a_second_write(
        setup, tmp_path):
    setup.config_path.parent.mkdir(parents=True)
    setup.config_path.write_text(USER_CONFIG % {"base": setup.serving_dir,
                                                "logs": tmp_path / "request_logs"})
    nobody = f"http://127.0.0.1:{portpicker.pick_unused_port()}/monitoring/prometheus/metrics"
    release = setup.release(nobody)

    actions.add_version(release, setup.old, "pushed")
    config = serving_config.read(setup.config_path)
    assert serving_config.served_versions(config, MODEL) == ServedVersions((setup.old,), None, None)
    actions.label_pending(release, "pushed")
    config = serving_config.read(setup.config_path)
    assert serving_config.served_versions(config, MODEL) == ServedVersions(
        (setup.old,), setup.old, setup.old)

    taxi, other = config.model_config_list.config
    assert taxi.logging_config.sampling_config.sampling_rate == 0.5
    assert taxi.logging_config.log_collector_config.filename_prefix == str(
        tmp_path / "request_logs")
    assert (other.name, other.base_path) == ("other", "/models/other")
    assert not other.version_labels
    # Written by rename: no temporary file is left beside it.
    assert sorted(p.name for p in setup.config_path.parent.iterdir()
                  if p.name != "release.lock") == ["models.config"]
