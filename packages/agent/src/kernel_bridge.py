"""Warren kernel bridge: runs one IPython kernel for the agent.

The agent starts this script with the sandbox's python3 and talks to it with
one JSON object per line: requests on stdin, events on stdout. Anything else
the bridge or jupyter_client prints goes to stderr.

Requests (agent -> bridge):
  {"op": "execute", "id": N, "code": "...", "env": {...}, "cwd": "/workspace",
   "max_output_bytes": 4194304, "max_rich_bytes": 16777216}
      Runs code in the kernel. `env` is set in os.environ and `cwd` is made
      the working directory for the run; both are restored afterwards.
  {"op": "shutdown"}
      Stops the kernel and exits (end of stdin does the same).

Events (bridge -> agent):
  {"event": "unavailable", "reason": "..."}      ipykernel/jupyter_client missing; exits 3
  {"event": "hello", "ipykernel": "6.17.0", ...}  imports worked, kernel starting
  {"event": "ready", "kernel_id": "...", "pid": 123, "restarted": false}
                                                  kernel (re)started; `pid` leads its process group
  {"event": "result", "id": N, "status": "ok" | "error" | "aborted" | "dead", ...}
                                                  one per execute request, see run_code()
  {"event": "failed", "reason": "..."}           the kernel could not be (re)started; exits 4

Interrupts do not go through this channel: the agent sends SIGINT to the
kernel's process group itself (the bridge is busy waiting for the run).
"""

import ast
import json
import os
import queue
import re
import subprocess
import sys
import time

PROTOCOL_OUT = None
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
EXIT_WARNING = re.compile(r"^.*UserWarning: To exit: use 'exit', 'quit', or Ctrl-D\.\n(?:\s+warn\(.*\n)?", re.M)
KERNEL_READY_TIMEOUT_S = 60
SILENT_CALL_TIMEOUT_S = 30

# Installed in the kernel once per start: a private module `_warren` that
# applies a run's environment and working directory and caps what print()
# can push through the kernel, so a flood never floods the bridge.
KERNEL_SETUP = r"""
def __warren_setup():
    import json, os, sys, types
    m = types.ModuleType('_warren')
    m.limit = None
    m.used = {'stdout': 0, 'stderr': 0}
    m.dropped = {'stdout': 0, 'stderr': 0}
    m.saved = None

    def cap(stream, name):
        write = stream.write
        def capped_write(s):
            limit = m.limit
            if limit is None or not isinstance(s, str):
                return write(s)
            n = len(s)
            room = limit - m.used[name]
            if room <= 0:
                m.dropped[name] += n
                return n
            if n > room:
                m.used[name] += room
                m.dropped[name] += n - room
                write(s[:room])
                return n
            m.used[name] += n
            return write(s)
        stream.write = capped_write

    cap(sys.stdout, 'stdout')
    cap(sys.stderr, 'stderr')

    def enter(spec):
        spec = json.loads(spec)
        env = spec['env']
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = None
        m.saved = ({k: os.environ.get(k) for k in env}, cwd)
        os.environ.update(env)
        os.chdir(spec['cwd'])
        m.limit = spec['limit']
        m.used = {'stdout': 0, 'stderr': 0}
        m.dropped = {'stdout': 0, 'stderr': 0}
        return 'ok'

    def leave():
        m.limit = None
        if m.saved is not None:
            env, cwd = m.saved
            m.saved = None
            for k, v in env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            if cwd is not None:
                try:
                    os.chdir(cwd)
                except OSError:
                    pass
        return json.dumps({'dropped': m.dropped})

    m.enter = enter
    m.leave = leave
    sys.modules['_warren'] = m

__warren_setup()
del __warren_setup
"""


def send(obj):
    PROTOCOL_OUT.write(json.dumps(obj, ensure_ascii=True) + "\n")
    PROTOCOL_OUT.flush()


class Aborted(Exception):
    """The kernel aborted a request (it was queued behind a failing one)."""


class Capped:
    """Text kept up to a byte limit; the rest is counted and dropped."""

    def __init__(self, limit):
        self.limit = limit
        self.parts = []
        self.kept = 0
        self.seen = 0

    def add(self, text):
        data = text.encode("utf-8", "replace")
        self.seen += len(data)
        room = self.limit - self.kept
        if room <= 0:
            return
        if len(data) > room:
            data = data[:room]
        self.parts.append(data)
        self.kept += len(data)

    @property
    def truncated(self):
        return self.seen > self.kept

    def text(self):
        return b"".join(self.parts).decode("utf-8", "ignore")


class Bridge:
    def __init__(self):
        from jupyter_client import KernelManager

        runtime_dir = os.path.join(os.environ.get("TMPDIR", "/tmp"), ".warren-kernel")
        os.makedirs(runtime_dir, mode=0o700, exist_ok=True)
        for name in os.listdir(runtime_dir):
            if name.startswith("kernel-") and name.endswith(".json"):
                try:
                    os.unlink(os.path.join(runtime_dir, name))
                except OSError:
                    pass
        self.env = kernel_env()
        self.km = KernelManager(kernel_name="python3")
        self.km.connection_file = os.path.join(runtime_dir, "kernel-%d.json" % os.getpid())
        self.kc = None

    def kernel_pid(self):
        provisioner = getattr(self.km, "provisioner", None)
        process = getattr(provisioner, "process", None) or getattr(self.km, "kernel", None)
        return getattr(process, "pid", None)

    def start(self, restarted=False):
        if restarted:
            self.km.restart_kernel(now=True, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        else:
            self.km.start_kernel(env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        if self.kc is not None:
            self.kc.stop_channels()
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=KERNEL_READY_TIMEOUT_S)
        self.silent_call(None, code=KERNEL_SETUP)
        send({"event": "ready", "kernel_id": self.km.kernel_id, "pid": self.kernel_pid(), "restarted": restarted})

    def restart(self):
        try:
            self.start(restarted=True)
            return True
        except Exception as exc:  # noqa: BLE001 - reported to the agent
            send({"event": "failed", "reason": "kernel restart failed: %s: %s" % (type(exc).__name__, exc)})
            return False

    def silent_call(self, expression, code=""):
        """Runs code and/or evaluates an expression without output or history; returns its repr."""
        for _ in range(10):
            try:
                return self._silent_call_once(expression, code)
            except Aborted:
                time.sleep(0.05)  # the kernel still aborts requests queued behind an error
        raise RuntimeError("the kernel kept aborting a bridge request")

    def _silent_call_once(self, expression, code):
        expressions = {} if expression is None else {"w": expression}
        msg_id = self.kc.execute(code, silent=True, store_history=False, user_expressions=expressions)
        deadline = time.monotonic() + SILENT_CALL_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                reply = self.kc.get_shell_msg(timeout=0.5)
            except queue.Empty:
                if not self.km.is_alive():
                    raise RuntimeError("kernel died")
                continue
            if reply["parent_header"].get("msg_id") != msg_id:
                continue
            content = reply["content"]
            if content.get("status") == "aborted":
                raise Aborted()
            if content.get("status") != "ok":
                raise RuntimeError("%s: %s" % (content.get("ename"), content.get("evalue")))
            value = content.get("user_expressions", {}).get("w")
            if value is None:
                return None
            if value.get("status") != "ok":
                raise RuntimeError("%s: %s" % (value.get("ename"), value.get("evalue")))
            return value["data"].get("text/plain")
        raise RuntimeError("kernel did not answer within %ds" % SILENT_CALL_TIMEOUT_S)

    def run_code(self, req):
        rid = req["id"]
        limit = int(req.get("max_output_bytes", 4 << 20))
        rich_limit = int(req.get("max_rich_bytes", 16 << 20))
        if not self.km.is_alive() and not self.restart():
            send({"event": "result", "id": rid, "status": "dead", "reason": "the kernel is not running"})
            return False
        spec = json.dumps({"env": req.get("env") or {}, "cwd": req.get("cwd") or os.getcwd(), "limit": limit})
        try:
            self.silent_call("__import__('_warren').enter(%r)" % spec)
        except Exception as exc:  # noqa: BLE001 - reported to the agent
            send({"event": "result", "id": rid, "status": "error", "stdout": "", "stderr": "",
                  "error": {"ename": "WarrenSetupError", "evalue": str(exc), "traceback": []}})
            return True

        stdout, stderr = Capped(limit), Capped(limit)
        displays, rich_bytes, rich_dropped = [], 0, 0
        result, error, status, count = None, None, "ok", None

        msg_id = self.kc.execute(req["code"], silent=False, store_history=True, allow_stdin=False, stop_on_error=False)
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.25)
            except queue.Empty:
                if not self.km.is_alive():
                    send({"event": "result", "id": rid, "status": "dead", "stdout": stdout.text(),
                          "stderr": stderr.text(), "stdout_truncated": stdout.truncated,
                          "stderr_truncated": stderr.truncated, "reason": "it exited during the run"})
                    return self.restart()
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                (stdout if content.get("name") == "stdout" else stderr).add(content.get("text", ""))
            elif kind in ("display_data", "update_display_data", "execute_result"):
                data = content.get("data", {})
                if kind == "execute_result":
                    result = data.get("text/plain")
                    count = content.get("execution_count")
                size = sum(len(v) if isinstance(v, str) else len(json.dumps(v)) for v in data.values())
                if rich_bytes + size > rich_limit:
                    rich_dropped += 1
                else:
                    rich_bytes += size
                    displays.append({"kind": kind, "data": data, "metadata": content.get("metadata", {})})
            elif kind == "error":
                error = {
                    "ename": content.get("ename", ""),
                    "evalue": content.get("evalue", ""),
                    "traceback": [ANSI.sub("", line) for line in content.get("traceback", [])],
                }
            elif kind == "status" and content.get("execution_state") == "idle":
                break

        try:
            reply = self.kc.get_shell_msg(timeout=5)
            while reply["parent_header"].get("msg_id") != msg_id:
                reply = self.kc.get_shell_msg(timeout=5)
            status = reply["content"].get("status", "ok")
            count = reply["content"].get("execution_count", count)
        except queue.Empty:
            pass

        dropped = {}
        try:
            left = self.silent_call("__import__('_warren').leave()")
            dropped = json.loads(ast.literal_eval(left)).get("dropped", {}) if left else {}
        except Exception:  # noqa: BLE001 - the run's result matters more
            pass

        err_text = stderr.text()
        if error is not None and error["ename"] == "SystemExit":
            err_text = EXIT_WARNING.sub("", err_text)
        send({
            "event": "result",
            "id": rid,
            "status": status,
            "stdout": stdout.text(),
            "stderr": err_text,
            "stdout_truncated": stdout.truncated or dropped.get("stdout", 0) > 0,
            "stderr_truncated": stderr.truncated or dropped.get("stderr", 0) > 0,
            "result": result,
            "displays": displays,
            "displays_dropped": rich_dropped,
            "error": error,
            "execution_count": count,
        })
        return True

    def shutdown(self):
        try:
            if self.kc is not None:
                self.kc.stop_channels()
            self.km.shutdown_kernel(now=True)
        except Exception:  # noqa: BLE001 - exiting anyway
            pass


def kernel_env():
    env = dict(os.environ)
    # Figures shown with plt.show() (or left open at the end of a run) become PNG display data.
    try:
        import importlib.util

        if importlib.util.find_spec("matplotlib_inline") is not None:
            env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    except Exception:  # noqa: BLE001 - keep the template's backend
        pass
    return env


def main():
    global PROTOCOL_OUT
    # debugpy (imported by ipykernel) warns about frozen modules on stderr otherwise.
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    PROTOCOL_OUT = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # stray prints (ours or a library's) go to stderr, never into the protocol
    sys.stdout = sys.stderr
    try:
        import ipykernel
        import jupyter_client
    except Exception as exc:  # noqa: BLE001 - any import failure means no kernel
        send({"event": "unavailable", "reason": "%s: %s" % (type(exc).__name__, exc)})
        return 3
    send({"event": "hello", "ipykernel": ipykernel.__version__, "jupyter_client": jupyter_client.__version__,
          "python": sys.version.split()[0]})
    try:
        bridge = Bridge()
        bridge.start()
    except Exception as exc:  # noqa: BLE001 - reported to the agent
        send({"event": "failed", "reason": "kernel start failed: %s: %s" % (type(exc).__name__, exc)})
        return 4
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            req = json.loads(line)
            if req.get("op") == "execute":
                if not bridge.run_code(req):
                    return 4
            elif req.get("op") == "shutdown":
                break
    finally:
        bridge.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
