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

A few commands of every sandbox boot and teardown are done in-process,
answered like the commands: `mount -t overlay overlay -o OPTIONS TARGET` and
`umount -l TARGET` by the system call they would make (exit 32 and mount's
message on failure), and `nft` without options (`nft add element …`) through
libnftables, the library the nft program is a front end to (the arguments
joined by spaces, as nft joins them; exit 1 and nft's message on failure).
Starting /bin/mount costs 2 ms here and /usr/sbin/nft 3.5 ms; the calls,
0.1 and 0.6 ms.
"""

import ctypes
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


libc = ctypes.CDLL(None, use_errno=True)
MNT_DETACH = 2
MOUNT_FAILURE = 32


def in_process(argv):
    """The answer fields of a mount or lazy umount done by system call, or None for any other command."""
    if len(argv) == 7 and argv[:4] == ["mount", "-t", "overlay", "overlay"] and argv[4] == "-o":
        target = argv[6]
        rc = libc.mount(b"overlay", os.fsencode(target), b"overlay", 0, os.fsencode(argv[5]))
    elif len(argv) == 3 and argv[:2] == ["umount", "-l"]:
        target = argv[2]
        rc = libc.umount2(os.fsencode(target), MNT_DETACH)
    else:
        return None
    if rc == 0:
        return {"code": 0, "signal": None, "stdout": "", "stderr": ""}
    reason = os.strerror(ctypes.get_errno())
    return {"code": MOUNT_FAILURE, "signal": None, "stdout": "", "stderr": f"{argv[0]}: {target}: {reason}.\n"}


def load_libnftables():
    try:
        lib = ctypes.CDLL("libnftables.so.1")
    except OSError:
        return None
    vp, cp = ctypes.c_void_p, ctypes.c_char_p
    lib.nft_ctx_new.argtypes, lib.nft_ctx_new.restype = [ctypes.c_uint32], vp
    lib.nft_ctx_free.argtypes, lib.nft_ctx_free.restype = [vp], None
    lib.nft_ctx_buffer_output.argtypes = lib.nft_ctx_buffer_error.argtypes = [vp]
    lib.nft_run_cmd_from_buffer.argtypes, lib.nft_run_cmd_from_buffer.restype = [vp, cp], ctypes.c_int
    lib.nft_ctx_get_output_buffer.argtypes, lib.nft_ctx_get_output_buffer.restype = [vp], cp
    lib.nft_ctx_get_error_buffer.argtypes, lib.nft_ctx_get_error_buffer.restype = [vp], cp
    return lib


libnftables = load_libnftables()
# One nft command at a time: the library keeps global state (its parser's) besides the context.
nft_lock = threading.Lock()


def nft_in_process(argv):
    """The answer fields of an option-less nft command run through libnftables, or None."""
    if libnftables is None or len(argv) < 2 or argv[0] != "nft" or any(a.startswith("-") for a in argv[1:]):
        return None
    lib = libnftables
    with nft_lock:
        ctx = lib.nft_ctx_new(0)
        if not ctx:
            return None
        try:
            lib.nft_ctx_buffer_output(ctx)
            lib.nft_ctx_buffer_error(ctx)
            rc = lib.nft_run_cmd_from_buffer(ctx, " ".join(argv[1:]).encode("utf-8"))
            out = lib.nft_ctx_get_output_buffer(ctx) or b""
            err = lib.nft_ctx_get_error_buffer(ctx) or b""
        finally:
            lib.nft_ctx_free(ctx)
    return {"code": 0 if rc == 0 else 1, "signal": None, "stdout": decode(out), "stderr": decode(err)}


def run(request):
    rid = request["id"]
    argv = request["argv"]
    timeout = request.get("timeout_ms", 60000) / 1000
    log_path = request.get("log_path")
    deadline = None
    try:
        # Inside the try: a failure of the in-process path is answered like any other.
        done = in_process(argv) or nft_in_process(argv)
        if done is not None:
            answer({"id": rid, **done})
            return
        if log_path is not None:
            fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, close_fds=True)
            finally:
                os.close(fd)
            deadline = kill_after(child, timeout)
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
        deadline = kill_after(child, timeout)
        try:
            out, err = child.communicate(None if data is None else data.encode("utf-8"))
        except BrokenPipeError:
            out, err = child.communicate()
        answer({"id": rid, **exit_fields(child.returncode), "stdout": decode(out), "stderr": decode(err)})
    except OSError as e:
        code = errno.errorcode.get(e.errno, "EIO") if e.errno is not None else "EIO"
        answer({"id": rid, "error": code, "message": f"{argv[0]}: {e.strerror or e}"})
    except Exception as e:  # noqa: BLE001 - every request gets an answer
        answer({"id": rid, "error": "EIO", "message": f"{argv[0]}: {e}"})
    finally:
        if deadline is not None:
            deadline.cancel()


def kill_after(child, timeout):
    """SIGTERM to the child once `timeout` seconds have passed, unless cancelled first.

    The waits above block in waitpid and wake the moment the child exits: a wait with a timeout
    in Python polls with sleeps that double from 0.5 ms, which answered a 10 ms command after 16.
    """

    def expire():
        try:
            child.terminate()  # a no-op once the child was reaped
        except OSError:
            pass

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    return timer


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
