"""A Docker volume plugin for the tests, written with nothing but Python's
standard library: HTTP/1.0 on a unix socket, volumes as folders.

    python3 volume_plugin.py SOCKET STORAGE LOG [--hang-mount] [--fail-list]
        [--hang-list] [--fail-unmount] [--mountpoint PATH]
        [--hang-create-before] [--hang-create-after] [--hang-remove]

Every call is appended to LOG as one JSON line {"call": ..., "body": ...}
before it is answered. --hang-mount never answers Mount (a hung plugin);
--fail-list answers List with an Err, --hang-list never answers it;
--mountpoint answers every Mount with PATH (a hostile plugin);
--fail-unmount refuses every Unmount (and then lets Remove through);
--hang-create-before/-after never answer Create, before or after making
the volume; --hang-remove never answers Remove (nor removes anything).
"""

from __future__ import annotations

import json
import os
import shutil
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler

SOCKET, STORAGE, LOG = sys.argv[1:4]
HANG_MOUNT = "--hang-mount" in sys.argv
FAIL_LIST = "--fail-list" in sys.argv
HANG_LIST = "--hang-list" in sys.argv
FAIL_UNMOUNT = "--fail-unmount" in sys.argv
HANG_CREATE_BEFORE = "--hang-create-before" in sys.argv
HANG_CREATE_AFTER = "--hang-create-after" in sys.argv
HANG_REMOVE = "--hang-remove" in sys.argv
FORCED_MOUNTPOINT = (sys.argv[sys.argv.index("--mountpoint") + 1]
                     if "--mountpoint" in sys.argv else None)
LOCK = threading.Lock()
MOUNTS: dict[str, set[str]] = {}


def log(call: str, body: dict) -> None:
    with LOCK, open(LOG, "a") as f:
        f.write(json.dumps({"call": call, "body": body}) + "\n")


def volume_dir(name: str) -> str:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad name {name!r}")
    return os.path.join(STORAGE, name)


def answer(call: str, body: dict) -> dict:
    name = body.get("Name", "")
    if call == "Plugin.Activate":
        return {"Implements": ["VolumeDriver"]}
    if call == "VolumeDriver.Capabilities":
        return {"Capabilities": {"Scope": "local"}}
    if call == "VolumeDriver.Create":
        if HANG_CREATE_BEFORE:
            time.sleep(3600)
        os.makedirs(volume_dir(name), exist_ok=True)
        if HANG_CREATE_AFTER:
            time.sleep(3600)
        return {"Err": ""}
    if call == "VolumeDriver.Remove" and HANG_REMOVE:
        time.sleep(3600)
    if call == "VolumeDriver.Remove":
        if MOUNTS.get(name) and not FAIL_UNMOUNT:
            return {"Err": f"{name} is mounted"}
        shutil.rmtree(volume_dir(name))
        return {"Err": ""}
    if call in ("VolumeDriver.Path", "VolumeDriver.Mount", "VolumeDriver.Unmount",
                "VolumeDriver.Get"):
        if not os.path.isdir(volume_dir(name)):
            return {"Err": f"no such volume {name}"}
    if call == "VolumeDriver.Path":
        return {"Mountpoint": volume_dir(name) if MOUNTS.get(name) else "", "Err": ""}
    if call == "VolumeDriver.Mount":
        if HANG_MOUNT:
            time.sleep(3600)
        MOUNTS.setdefault(name, set()).add(body["ID"])
        return {"Mountpoint": FORCED_MOUNTPOINT or volume_dir(name), "Err": ""}
    if call == "VolumeDriver.Unmount":
        if FAIL_UNMOUNT:
            return {"Err": "device is busy"}
        MOUNTS.get(name, set()).discard(body["ID"])
        return {"Err": ""}
    if call == "VolumeDriver.Get":
        return {"Volume": {"Name": name, "Mountpoint": volume_dir(name),
                           "Status": {"mounts": len(MOUNTS.get(name, ()))}}, "Err": ""}
    if call == "VolumeDriver.List":
        if FAIL_LIST:
            return {"Err": "the list is broken today"}
        if HANG_LIST:
            time.sleep(3600)
        return {"Volumes": [{"Name": n, "Mountpoint": volume_dir(n)}
                            for n in sorted(os.listdir(STORAGE))], "Err": ""}
    return {"Err": f"unknown call {call}"}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw or b"{}")
        call = self.path.lstrip("/")
        log(call, body)
        try:
            reply = answer(call, body)
        except Exception as e:  # the plugin's own failure, reported as Err
            reply = {"Err": f"{type(e).__name__}: {e}"}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.docker.plugins.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        request, _ = super().get_request()
        return request, ("plugin", 0)  # BaseHTTPRequestHandler wants a pair


if __name__ == "__main__":
    os.makedirs(STORAGE, exist_ok=True)
    if os.path.exists(SOCKET):
        os.unlink(SOCKET)
    with Server(SOCKET, Handler) as server:
        server.serve_forever()
