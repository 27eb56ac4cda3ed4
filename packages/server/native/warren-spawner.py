#!/usr/bin/env python3
"""Runs host commands for the Warren server (packages/server/src/internal/exec.ts).

Forking the server (a Node.js process of 150+ MiB) costs several milliseconds
per command and blocks its event loop for all of them; this small process
starts commands with vfork (Python's subprocess does), off the server's loop.

One JSON request per line on stdin, one JSON answer per line on stdout, in
completion order, matched by "id":
  {"id": 1, "argv": ["ip", "-batch", "-"], "input": "...", "timeout_ms": 60000}
  {"id": 2, "argv": ["crun", "create", ...], "log_path": "/x/crun.log", "timeout_ms": 60000}
  -> {"id": 1, "code": 0, "signal": null, "stdout": "...", "stderr": "..."}
  -> {"id": 2, "error": "ENOENT", "message": "..."}   (the command could not start)
With "log_path", stdout and stderr are appended to that file and the answer
comes when the command exits (processes it leaves holding the file do not
delay it); otherwise the answer comes when its output closes. A command past
its "timeout_ms" gets SIGTERM. Each request runs on its own thread. The
process exits when stdin closes, leaving running commands alone.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import threading

write_lock = threading.Lock()
MAX_OUTPUT_BYTES = 16 * 1024 * 1024


def answer(message):
    line = json.dumps(message, separators=(",", ":")) + "\n"
    with write_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def decode(data):
    if len(data) > MAX_OUTPUT_BYTES:
        data = data[-MAX_OUTPUT_BYTES:]
    return data.decode("utf-8", "replace")


def exit_fields(returncode):
    if returncode < 0:
        return {"code": None, "signal": signal.Signals(-returncode).name}
    return {"code": returncode, "signal": None}


def run(request):
    rid = request["id"]
    argv = request["argv"]
    timeout = request.get("timeout_ms", 60000) / 1000
    log_path = request.get("log_path")
    try:
        if log_path is not None:
            fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, close_fds=True)
            finally:
                os.close(fd)
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.terminate()
                child.wait()
            answer({"id": rid, **exit_fields(child.returncode), "stdout": "", "stderr": ""})
            return
        data = request.get("input")
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL if data is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
        )
        try:
            out, err = child.communicate(None if data is None else data.encode("utf-8"), timeout)
        except subprocess.TimeoutExpired:
            child.terminate()
            out, err = child.communicate()
        except BrokenPipeError:
            out, err = child.communicate()
        answer({"id": rid, **exit_fields(child.returncode), "stdout": decode(out), "stderr": decode(err)})
    except OSError as e:
        code = errno.errorcode.get(e.errno, "EIO") if e.errno is not None else "EIO"
        answer({"id": rid, "error": code, "message": f"{argv[0]}: {e.strerror or e}"})
    except Exception as e:  # noqa: BLE001 - every request gets an answer
        answer({"id": rid, "error": "EIO", "message": f"{argv[0]}: {e}"})


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        threading.Thread(target=run, args=(request,), daemon=True).start()
    # stdin closed: the server is gone; commands still running finish on their own.
    os._exit(0)


if __name__ == "__main__":
    main()
