"""A client of a container engine's Docker-compatible REST API on a unix socket, for tests: what
the KFP stand-in uses to run each step as a container of the built image.

Why the REST API and not the `podman`/`docker` command: the tests run inside the with-stack
chroot (Debian 13), while the engine is installed on the host. `tools/image with-engine` starts
`podman system service` on a socket under /tmp (bind-mounted into the chroot) or points at
dockerd's socket, and exports its path as FMNIST_CONTAINER_SOCKET; the Docker API that dockerd
and podman's compat service both serve is the one spoken here (unversioned paths, which both
route to their current API version). On a cluster the kubelet speaks CRI to its runtime; the
part that matters here is the same: the image's own file system, ENTRYPOINT, ENV and WORKDIR,
and only the volumes the pod declares.
"""
from __future__ import annotations

import dataclasses
import http.client
import json
import os
import socket
import struct
import time
import urllib.parse
from typing import Any

SOCKET_VARIABLE = "FMNIST_CONTAINER_SOCKET"
WAIT_POLL_SECONDS = 0.5
IMAGE_VARIABLE = "FMNIST_IMAGE"
DEFAULT_IMAGE = "fmnist-tfx:latest"   # what `make image` tags (Makefile IMAGE)
# The module `make test` leaves out of a second image (tools/image build --leave-out), and the tag
# it gives that image.
LEFT_OUT_VARIABLE, DEFAULT_LEFT_OUT = "FMNIST_LEFT_OUT", "components/validation_gate.py"


class EngineError(Exception):
    """The engine refused a request or is not reachable; the message says what to do."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


@dataclasses.dataclass
class Exited:
    status: int
    log: str          # stdout and stderr, interleaved as written


def image_under_test() -> str:
    """The image `make test` built for this suite (FMNIST_IMAGE), else `make image`'s tag."""
    return os.environ.get(IMAGE_VARIABLE, DEFAULT_IMAGE)


def left_out_module() -> str:
    return os.environ.get(LEFT_OUT_VARIABLE, DEFAULT_LEFT_OUT)


def left_out_image() -> str:
    """The image built without `left_out_module()` (Makefile: $(IMAGE)-without-<module stem>)."""
    return f"{image_under_test()}-without-{os.path.splitext(os.path.basename(left_out_module()))[0]}"


def demultiplex(raw: bytes) -> str:
    """A non-TTY container's log stream: frames of an 8-byte header (stream, 0, 0, 0, big-endian
    length) and the payload (Docker Engine API, "Attach to a container": stream format)."""
    out, pos = [], 0
    while pos + 8 <= len(raw):
        (size,) = struct.unpack(">I", raw[pos + 4:pos + 8])
        out.append(raw[pos + 8:pos + 8 + size])
        pos += 8 + size
    return b"".join(out).decode(errors="replace")


class ContainerEngine:
    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path

    @classmethod
    def from_environment(cls) -> ContainerEngine:
        path = os.environ.get(SOCKET_VARIABLE)
        if not path or not os.path.exists(path):
            raise EngineError(
                f"no container engine: {SOCKET_VARIABLE} is {path!r}. Run the tests through "
                "`make test`, or `tools/image with-engine tools/with-stack python -m pytest ...` "
                "after `make image`")
        return cls(path)

    def request(self, method: str, path: str, body: Any = None, timeout: float = 120) -> tuple[int, bytes]:
        conn = _UnixConnection(self.socket_path, timeout)
        try:
            payload = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=payload,
                         headers={"Content-Type": "application/json"} if payload is not None else {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def _ok(self, method: str, path: str, body: Any = None, timeout: float = 120) -> Any:
        status, data = self.request(method, path, body, timeout)
        if status >= 300:
            raise EngineError(f"{method} {path}: HTTP {status}: {data.decode(errors='replace')[:2000]}")
        return json.loads(data) if data.strip() else None

    def image(self, name: str) -> dict:
        """The image's inspect record (Config.Entrypoint, Env, WorkingDir, Labels...)."""
        status, data = self.request("GET", f"/images/{urllib.parse.quote(name, safe='')}/json")
        if status == 404:
            raise EngineError(f"image {name} not found: build it first (make image IMAGE={name})")
        if status >= 300:
            raise EngineError(f"inspecting {name}: HTTP {status}: {data.decode(errors='replace')[:2000]}")
        return json.loads(data)

    def _wait(self, container: str, timeout: float) -> int:
        """The container's exit code, once it exited.

        Polled from its state rather than with POST /containers/{id}/wait: podman 4.3's compat wait
        checks the state through the OCI runtime every 250 ms and keeps ~40% of a core busy per
        waiting container (measured here), which two concurrent steps on 2 cores cannot spare.
        """
        deadline = time.monotonic() + timeout
        while True:
            state = self._ok("GET", f"/containers/{container}/json")["State"]
            if state["Status"] in ("exited", "dead", "stopped"):
                return int(state["ExitCode"])
            if time.monotonic() > deadline:
                raise EngineError(f"container {container} still {state['Status']} after {timeout:.0f} s")
            time.sleep(WAIT_POLL_SECONDS)

    def run(self, image: str, *, entrypoint: list[str] | None = None, args: list[str] | None = None,
            binds: dict[str, str] | None = None, name: str = "", timeout: float = 1800,
            env: dict[str, str] | None = None, network: str = "none") -> Exited:
        """Create, start and wait for a container; returns its status and log, then removes it.

        `entrypoint` None keeps the image's ENTRYPOINT; `args` replace its CMD (Kubernetes'
        command/args); `env` is added to the image's ENV, as a pod spec's `env:` is. `network`
        "none" (the default) leaves only loopback: a step needs no network when the object store
        arrives as files and data and serving roots as volumes, and one that tried would fail.
        "host" shares this machine's: what a pod reaches over the cluster's network (a Beam job
        server, object storage) is on 127.0.0.1 here.
        """
        config: dict[str, Any] = {"Image": image, "Cmd": list(args or []),
                                  "Env": [f"{k}={v}" for k, v in (env or {}).items()],
                                  "HostConfig": {"Binds": [f"{src}:{dst}" for src, dst in (binds or {}).items()],
                                                 "NetworkMode": network}}
        if entrypoint is not None:
            config["Entrypoint"] = list(entrypoint)
        query = f"?name={urllib.parse.quote(name)}" if name else ""
        container = self._ok("POST", f"/containers/create{query}", config)["Id"]
        try:
            self._ok("POST", f"/containers/{container}/start")
            status = self._wait(container, timeout)
            code, raw = self.request("GET", f"/containers/{container}/logs?stdout=true&stderr=true")
            log = demultiplex(raw) if code < 300 else f"(logs unavailable: HTTP {code})"
            return Exited(int(status), log)
        finally:
            self.request("DELETE", f"/containers/{container}?force=true&v=true")
