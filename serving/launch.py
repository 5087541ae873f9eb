"""Starts the best model server available with TF Serving's own flags.

`tensorflow_model_server` on PATH, else the `tensorflow/serving` Docker image
(only when a Docker engine answers), else this project's `python -m serving`.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from typing import Sequence

BINARY = "tensorflow_model_server"
CHOICES = ("auto", BINARY, "docker", "python")

# TF Serving flags whose value is a local file (mounted into the container as is).
FILE_FLAGS = ("model_config_file", "batching_parameters_file", "monitoring_config_file",
              "platform_config_file", "ssl_config_file")
# TF Serving's defaults: gRPC on 8500, REST off unless --rest_api_port is given.
DEFAULT_GRPC_PORT = 8500
# Our server's one extra flag; tensorflow_model_server would refuse it, so it is
# taken out for the binary and turned into the publish address for Docker.
BIND_ADDRESS_FLAG = "bind_address"
DEFAULT_BIND_ADDRESS = "127.0.0.1"


def default_docker_image() -> str:
    """The image tag matching the installed tensorflow-serving-api, so protos agree."""
    try:
        return f"tensorflow/serving:{metadata.version('tensorflow-serving-api')}"
    except metadata.PackageNotFoundError:
        return "tensorflow/serving:latest"


def flag_value(flags: Sequence[str], name: str) -> str | None:
    """The last `--name=value` (or `--name value`) among TF Serving's flags."""
    value = None
    for i, flag in enumerate(flags):
        if flag.startswith(f"--{name}="):
            value = flag.split("=", 1)[1]
        elif flag == f"--{name}" and i + 1 < len(flags) and not flags[i + 1].startswith("--"):
            value = flags[i + 1]
    return value


def config_base_paths(config_file: str) -> list[str]:
    """The base_path of every model in a text ModelServerConfig file."""
    with open(config_file, encoding="utf-8") as handle:
        text = handle.read()
    # A regex keeps `--dry_run` free of TensorFlow's import; base_path is a
    # plain string field, so its quoted value is all there is to read.
    return re.findall(r"base_path\s*:\s*[\"']([^\"']*)[\"']", text)


def _is_local(path: str) -> bool:
    return "://" not in path


def joined_flags(flags: Sequence[str]) -> list[str]:
    """`--name value` as `--name=value`, the one form the rewriting below reads."""
    joined: list[str] = []
    for flag in flags:
        if joined and joined[-1].startswith("--") and "=" not in joined[-1] \
                and not flag.startswith("--"):
            joined[-1] = f"{joined[-1]}={flag}"
        else:
            joined.append(flag)
    return joined


def _rewrite_paths(flags: Sequence[str]) -> list[str]:
    """Makes path flags absolute: the container does not share our directory."""
    path_flags = ("model_base_path",) + FILE_FLAGS
    rewritten = []
    for flag in flags:
        name, sep, value = flag.partition("=")
        if sep and name.lstrip("-") in path_flags and value and _is_local(value):
            flag = f"{name}={os.path.abspath(value)}"
        rewritten.append(flag)
    return rewritten


def without_bind_address(flags: Sequence[str]) -> list[str]:
    return [f for f in flags if f.split("=", 1)[0].lstrip("-") != BIND_ADDRESS_FLAG]


def docker_command(flags: Sequence[str], image: str) -> list[str]:
    """`docker run` with the same ports published and every local path mounted.

    Paths are mounted at their own absolute path so that flags and the model
    config file stay valid inside the container unchanged. Ports are published
    on --bind_address (loopback unless given), as our server would listen.
    """
    flags = joined_flags(flags)
    address = flag_value(flags, BIND_ADDRESS_FLAG) or DEFAULT_BIND_ADDRESS
    flags = _rewrite_paths(without_bind_address(flags))
    mounts: list[str] = []
    base_path = flag_value(flags, "model_base_path")
    if base_path and _is_local(base_path):
        mounts.append(base_path)
    for name in FILE_FLAGS:
        value = flag_value(flags, name)
        if value and _is_local(value):
            mounts.append(value)
            if name == "model_config_file" and os.path.exists(value):
                mounts.extend(os.path.abspath(p) for p in config_base_paths(value)
                              if _is_local(p))
    command = ["docker", "run", "--rm", "--workdir", os.getcwd()]
    grpc_port = int(flag_value(flags, "port") or DEFAULT_GRPC_PORT)
    rest_port = int(flag_value(flags, "rest_api_port") or 0)
    for port in (grpc_port, rest_port):
        if port:
            command += ["-p", f"{address}:{port}:{port}"]
    for path in dict.fromkeys(mounts):  # ordered, without repeats
        command += ["--mount", f"type=bind,source={path},target={path},readonly"]
    # Our flags replace the image's entrypoint script, which would add its own
    # --model_name/--model_base_path from environment variables.
    command += ["--entrypoint", BINARY, image, *flags]
    return command


def binary_command(flags: Sequence[str]) -> list[str]:
    # The binary always listens on all interfaces; it has no --bind_address.
    return [shutil.which(BINARY) or BINARY, *without_bind_address(flags)]


def python_command(flags: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "serving", *flags]


def docker_engine_running() -> tuple[bool, str]:
    """Whether `docker info` reaches an engine, and what it said if not."""
    if shutil.which("docker") is None:
        return False, "docker is not on PATH"
    try:
        result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                                capture_output=True, text=True, timeout=15, check=False)
    except subprocess.TimeoutExpired:
        return False, "`docker info` did not answer within 15s"
    if result.returncode != 0 or not result.stdout.strip():
        said = (result.stderr.strip().splitlines() or ["no engine version"])[-1]
        return False, f"no Docker engine is running ({said})"
    return True, f"Docker engine {result.stdout.strip()} is running"


def logs_requests(flags: Sequence[str]) -> bool:
    """Whether the --model_config_file asks for request logging, which TF Serving's own
    server refuses to start with ("No request-logger-creator provided")."""
    config_file = flag_value(flags, "model_config_file")
    if not config_file or not os.path.exists(config_file):
        return False
    with open(config_file, encoding="utf-8") as handle:
        return re.search(r"\blogging_config\s*[:{]", handle.read()) is not None


def choose_server(requested: str, flags: Sequence[str] = (),
                  docker: bool = True) -> tuple[str, str]:
    """Returns (server, reason); a server asked for by name is taken as is.
    `docker=False` skips the Docker image, for callers that must own the server
    process itself (the pipeline's InfraValidator stops it by its process id)."""
    if requested != "auto":
        return requested, f"--server={requested} was asked for"
    if logs_requests(flags):
        return "python", ("the model config has a logging_config, which only this "
                          "project's Python server writes; using it")
    if shutil.which(BINARY):
        return BINARY, f"{BINARY} is on PATH at {shutil.which(BINARY)}"
    reasons = [f"{BINARY} is not on PATH"]
    if not docker:
        return "python", f"{reasons[0]}; using this project's Python server"
    running, why = docker_engine_running()
    if running:
        return "docker", f"{reasons[0]}; {why}"
    reasons.append(why)
    return "python", "; ".join(reasons) + "; using this project's Python server"


def server_command(server: str, flags: Sequence[str], image: str) -> list[str]:
    if server == BINARY:
        return binary_command(flags)
    if server == "docker":
        return docker_command(flags, image)
    return python_command(flags)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serving.launch", allow_abbrev=False,
        description="Start tensorflow_model_server, its Docker image or this "
        "project's Python server with the same TF Serving flags; flags this "
        "launcher does not know are passed on unchanged.")
    parser.add_argument("--server", choices=CHOICES, default="auto")
    parser.add_argument("--dry_run", action="store_true",
                        help="print the command instead of running it")
    parser.add_argument("--docker_image", default=default_docker_image())
    args, flags = parser.parse_known_args(argv)

    server, reason = choose_server(args.server, flags)
    command = server_command(server, flags, args.docker_image)
    print(f"serving.launch: {server}: {reason}", file=sys.stderr, flush=True)
    if args.dry_run:
        print(shlex.join(command), flush=True)
        return 0
    if server == BINARY and not shutil.which(BINARY):
        print(f"serving.launch: {BINARY} is not on PATH; install it or use "
              "--server=auto", file=sys.stderr)
        return 2
    if server == "docker":
        running, why = docker_engine_running()
        if not running:
            print(f"serving.launch: cannot use Docker: {why}; use --server=auto",
                  file=sys.stderr)
            return 2
    print(f"serving.launch: running {shlex.join(command)}", file=sys.stderr, flush=True)
    # Replacing this process lets signals and the exit code reach the caller
    # straight from the server.
    os.execvp(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
