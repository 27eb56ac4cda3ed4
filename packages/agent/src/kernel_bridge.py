"""Warren kernel bridge: runs one IPython kernel for the agent.

The agent starts this script with the sandbox's python3 and talks to it with
one JSON object per line: requests on stdin, events on stdout. Anything else
the bridge or jupyter_client prints goes to stderr.

Requests (agent -> bridge):
  {"op": "execute", "id": N, "code": "...", "env": {...}, "cwd": "/workspace",
   "max_output_bytes": 4194304, "max_rich_bytes": 16777216, "warm_up": false}
      Runs code in the kernel. `env` is set in os.environ and `cwd` is made
      the working directory for the run; both are restored afterwards. A
      `warm_up` run is not stored in the history and leaves the execution
      count as it was (the agent's warm-up of its own execute path).
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

import sys


def importable(name):
    """Whether `import name` (a top-level module) would find it: the finders `import` asks, nothing imported.

    A finder that fails counts as finding it, so that the import itself decides (and reports) as before.
    """
    try:
        return any(finder.find_spec(name, None) is not None for finder in sys.meta_path if hasattr(finder, "find_spec"))
    except Exception:  # noqa: BLE001 - left to the import in main()
        return True


# A template without Jupyter (`base`) gets its answer before the imports below, which cost a sandbox twice
# the python start itself (~35 against ~16 ms); the first python run in a fresh sandbox waits for this answer.
if __name__ == "__main__":
    for _module in ("ipykernel", "jupyter_client"):
        if not importable(_module):
            sys.stdout.write(
                '{"event": "unavailable", "reason": "ModuleNotFoundError: No module named \'%s\'"}\n' % _module
            )
            sys.stdout.flush()
            sys.exit(3)

import ast  # noqa: E402 - after the early answer above
import hmac  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

PROTOCOL_OUT = None
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
EXIT_WARNING = re.compile(r"^.*UserWarning: To exit: use 'exit', 'quit', or Ctrl-D\.\n(?:\s+warn\(.*\n)?", re.M)
KERNEL_READY_TIMEOUT_S = 60
SILENT_CALL_TIMEOUT_S = 30
REPLY_AFTER_IDLE_TIMEOUT_S = 5
# How often the bridge's sockets try to reach a kernel that is not listening yet.
RECONNECT_IVL_MS = 10

# The kernel's start (`python -m ipykernel_launcher`) with two packages hidden while ipykernel and IPython load:
# debugpy, which ipykernel imports for its debugger, and jedi, which IPython's completer imports for completions
# (~110-180 and ~95 ms of a kernel's start in a sandbox). Nothing reaches either through the bridge, which sends
# only executions. Both are unhidden before any user code runs, so `import debugpy` and `import jedi` work;
# sys.path and sys.argv end up as `-m` leaves them (the working directory first; the launcher's file).
KERNEL_LAUNCHER = """
import importlib.util, os, sys
if sys.path[0] == "":
    sys.path[0] = os.getcwd()
sys.argv[0] = importlib.util.find_spec("ipykernel_launcher").origin
hidden = ("debugpy", "jedi")
for name in hidden:
    sys.modules[name] = None
import ipykernel.ipkernel
from ipykernel import kernelapp
for name in hidden:
    del sys.modules[name]
kernelapp.launch_new_instance()
"""

# Installed in the kernel once per start: a private module `_warren` that
# applies a run's environment and working directory and caps what print()
# can push through the kernel, so a flood never floods the bridge.
KERNEL_SETUP = r"""
def __warren_setup():
    import inspect, json, os, sys, types
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
        # Idempotent: an interrupt in the middle of it is answered by running it again.
        m.limit = None
        if m.saved is not None:
            env, cwd = m.saved
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
            m.saved = None
        return json.dumps({'dropped': m.dropped})

    m.enter = enter
    m.leave = leave
    sys.modules['_warren'] = m

    # One request per run: the kernel applies the spec the bridge puts in an
    # execute_request's metadata around the run itself, and reports what the
    # caps dropped in the reply, instead of two extra round trips.
    ip = get_ipython()
    kernel = getattr(ip, 'kernel', None)
    original = getattr(kernel, 'do_execute', None)

    def spec_of_request():
        get_parent = getattr(kernel, 'get_parent', None)
        parent = get_parent('shell') if get_parent is not None else getattr(kernel, '_parent_header', None)
        return ((parent or {}).get('metadata') or {}).get('warren')

    def begin():
        spec = spec_of_request()
        if spec is None:
            return None, None
        try:
            enter(json.dumps(spec))
            return spec, None
        except BaseException as exc:  # a KeyboardInterrupt (a timeout) included
            finish()
            return spec, {'setup_error': {'ename': type(exc).__name__, 'evalue': str(exc)}}

    def finish():
        while True:
            try:
                return json.loads(leave())
            except KeyboardInterrupt:
                continue

    def failed(reply):
        return dict(reply, status='error', ename='WarrenSetupError', evalue='', traceback=[],
                    execution_count=None, user_expressions={}, payload=[])

    # ipykernel 6 and later (an async do_execute); the bridge finds out whether it took (check_hook).
    if inspect.iscoroutinefunction(original):
        async def do_execute(*args, **kwargs):
            spec, setup = begin()
            if setup is not None:
                return failed({'warren': setup})
            try:
                reply = await original(*args, **kwargs)
            finally:
                done = finish() if spec is not None else None
            if done is not None:
                reply['warren'] = done
            return reply

        kernel.do_execute = do_execute

    # ipykernel flushes stdout and stderr several times a run (around the
    # displayhook, before the reply), each a round trip to its IO thread; one
    # with nothing buffered has nothing to wait for. The 0.5 ms sleep before
    # each reply works around lost flushes that a waited-for flush rules out.
    def skip_empty_flush(stream):
        flush = stream.flush
        def flush_if_pending():
            if (getattr(stream, '_flush_pending', True) is False and getattr(stream, 'echo', None) is None
                    and getattr(stream, '_buffer', None) is not None and stream._buffer.tell() == 0):
                return None
            return flush()
        stream.flush = flush_if_pending

    if type(sys.stdout).__name__ == 'OutStream' and hasattr(sys.stdout, '_flush_pending'):
        skip_empty_flush(sys.stdout)
        skip_empty_flush(sys.stderr)
    if kernel is not None and hasattr(kernel, '_execute_sleep'):
        kernel._execute_sleep = 0

    # Machinery around every request that only other clients would notice (the bridge is the
    # kernel's one client, and reads neither the control channel nor these messages):
    if kernel is not None:
        # Before each shell message ipykernel waits for a round trip through its control thread,
        # so that control messages sent earlier are handled first; the bridge sends none.
        if hasattr(kernel, '_flush_control_queue'):
            async def no_control_flush():
                return None
            kernel._flush_control_queue = no_control_flush

        # A run's busy status and its code broadcast back (execute_input) are two iopub messages
        # the bridge would drop; the idle status it waits for is still sent.
        publish_status = getattr(kernel, '_publish_status', None)
        publish_input = getattr(kernel, '_publish_execute_input', None)
        if publish_status is not None and publish_input is not None:
            def quiet_status(status, channel, parent=None):
                if status == 'busy' and channel == 'shell' and parent is None and spec_of_request() is not None:
                    return None
                return publish_status(status, channel, parent)

            def quiet_input(code, parent, execution_count):
                if ((parent or {}).get('metadata') or {}).get('warren') is None:
                    return publish_input(code, parent, execution_count)
                return None

            kernel._publish_status = quiet_status
            kernel._publish_execute_input = quiet_input

        # The kernel's logger takes debug records its handlers (warnings and up, to a stderr
        # nobody reads) drop; a few a request, each a LogRecord: make them not.
        log = getattr(kernel, 'log', None)
        levels = [h.level for h in getattr(log, 'handlers', None) or []]
        if levels and log.level < min(levels):
            log.setLevel(min(levels))

    # IPython writes each run's input to its sqlite history in a thread woken for every run;
    # in batches it costs a fraction (a search or %history -g writes out the batch first).
    history = getattr(ip, 'history_manager', None)
    if history is not None and getattr(history, 'db_cache_size', None) == 0:
        history.db_cache_size = 16

    # ipykernel asks inspect.signature whether do_execute and run_cell take a cell_id, twice a run.
    try:
        import ipykernel.ipkernel as ipkernel_module, ipykernel.kernelbase as kernelbase_module
        accepts = kernelbase_module._accepts_cell_id
        known = {}

        def accepts_cell_id(meth):
            func = getattr(meth, '__func__', meth)
            if not inspect.isfunction(func):
                return accepts(meth)
            if func not in known:
                known[func] = accepts(meth)
            return known[func]

        for module in (kernelbase_module, ipkernel_module):
            if getattr(module, '_accepts_cell_id', None) is accepts:
                module._accepts_cell_id = accepts_cell_id
    except Exception:
        pass

    # The first execute_result pays for building the display formatters: pay it now.
    try:
        ip.display_formatter.format(0)
    except Exception:
        pass

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


class Channels:
    """Plain blocking ZeroMQ sockets to the kernel's shell and iopub channels.

    jupyter_client's BlockingKernelClient runs an asyncio loop (through
    nest_asyncio) for every message it receives, which costs more than the
    kernel's own work for a short run; these sockets cost a poll and a recv.
    """

    def __init__(self, km):
        import zmq

        from jupyter_client.session import protocol_version

        self.session = km.session
        self.protocol_version = protocol_version
        self.sent = 0
        info = km.get_connection_info()
        self.context = zmq.Context()

        def url(port):
            ip = info["ip"]
            if info.get("transport", "tcp") == "ipc":
                return "ipc://%s-%s" % (ip, port)
            return "tcp://%s:%s" % (ip, port)

        self.shell = self.context.socket(zmq.DEALER)
        self.shell.linger = 0
        # A kernel still starting has not bound its ports yet: ZeroMQ tries again every RECONNECT_IVL (100 ms
        # by default), which would round every kernel start up to the next try.
        self.shell.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        self.shell.setsockopt(zmq.IDENTITY, self.session.bsession)
        self.shell.connect(url(info["shell_port"]))
        self.iopub = self.context.socket(zmq.SUB)
        self.iopub.linger = 0
        self.iopub.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self.iopub.connect(url(info["iopub_port"]))
        self.poller = zmq.Poller()
        self.poller.register(self.shell, zmq.POLLIN)
        self.poller.register(self.iopub, zmq.POLLIN)

    def request(self, msg_type, content, metadata=None):
        """Sends a shell request; returns its msg_id.

        Session.send would also stamp the header with a date, which the kernel
        parses with dateutil (the bulk of its cost to read a request) and never uses.
        """
        self.sent += 1
        msg_id = "%s_%d" % (self.session.session, self.sent)
        header = {"msg_id": msg_id, "msg_type": msg_type, "username": self.session.username,
                  "session": self.session.session, "version": self.protocol_version}
        parts = [json.dumps(header).encode(), b"{}", json.dumps(metadata or {}).encode(),
                 json.dumps(content).encode()]
        signature = self.session.sign(parts) if self.session.auth is not None else b""
        self.shell.send_multipart([b"<IDS|MSG>", signature] + parts)
        return msg_id

    def poll(self, timeout_s):
        """Waits up to `timeout_s` for messages; returns (shell ready, iopub ready)."""
        ready = dict(self.poller.poll(int(timeout_s * 1000)))
        return self.shell in ready, self.iopub in ready

    def recv(self, socket):
        """One message of a socket that is ready: header, parent_header and content, signature checked.

        Session.recv would also parse every date in the headers (dateutil, the
        bulk of its cost) and keep a replay history we have no use for.
        """
        frames = socket.recv_multipart()
        frames = frames[frames.index(b"<IDS|MSG>") + 1:]
        if self.session.auth is not None and not hmac.compare_digest(frames[0], self.session.sign(frames[1:5])):
            raise ValueError("a kernel message with an invalid signature")
        header = json.loads(frames[1])
        return {"header": header, "msg_type": header.get("msg_type"), "parent_header": json.loads(frames[2]),
                "content": json.loads(frames[4])}

    def close(self):
        self.shell.close(linger=0)
        self.iopub.close(linger=0)
        self.context.term()


class Bridge:
    def __init__(self, connection_file, env, early=None):
        from jupyter_client import KernelManager

        self.env = env
        self.km = KernelManager(kernel_name="python3", kernel_spec_manager=kernel_spec_manager())
        spec = self.km.kernel_spec
        if spec is not None and spec.argv[1:3] == ["-m", "ipykernel_launcher"]:
            spec.argv = [spec.argv[0], "-c", KERNEL_LAUNCHER, *spec.argv[3:]]
        self.km.connection_file = connection_file
        # The first kernel when the bridge launched it itself (EarlyKernel): jupyter_client takes over from the
        # first restart on, with the same ports and key.
        self.early = early
        if early is not None:
            self.km.load_connection_file(connection_file)
            self.km.kernel_id = early.kernel_id
        self.ch = None
        # Whether the kernel applies a run's env/cwd itself (KERNEL_SETUP's hook); otherwise silent calls do.
        self.hooked = False

    def kernel_pid(self):
        if self.early is not None:
            return self.early.process.pid
        provisioner = getattr(self.km, "provisioner", None)
        process = getattr(provisioner, "process", None) or getattr(self.km, "kernel", None)
        return getattr(process, "pid", None)

    def alive(self):
        """Whether the kernel process runs; a Popen poll where there is one (km.is_alive spins an event loop)."""
        if self.early is not None:
            return self.early.process.poll() is None
        provisioner = getattr(self.km, "provisioner", None)
        process = getattr(provisioner, "process", None) or getattr(self.km, "kernel", None)
        if process is not None and hasattr(process, "poll"):
            return process.poll() is None
        return self.km.is_alive()

    def start(self, restarted=False):
        if self.ch is not None:
            self.ch.close()
            self.ch = None
        quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        if restarted and self.early is not None:
            # jupyter_client did not launch the first kernel, so it starts the next one afresh.
            self.early.kill()
            self.early = None
            self.km.start_kernel(env=self.env, **quiet)
        elif restarted:
            self.km.restart_kernel(now=True, env=self.env, **quiet)
        elif self.early is None:
            self.km.start_kernel(env=self.env, **quiet)
        self.ch = Channels(self.km)
        self.wait_for_ready(KERNEL_READY_TIMEOUT_S)
        self.silent_call(None, code=KERNEL_SETUP)
        self.hooked = self.check_hook()
        send({"event": "ready", "kernel_id": self.km.kernel_id, "pid": self.kernel_pid(), "restarted": restarted})

    def wait_for_ready(self, timeout_s):
        """Waits until the kernel answers on shell and its iopub messages reach us (the SUB socket is joined)."""
        deadline = time.monotonic() + timeout_s
        asked = set()  # a kernel still starting answers an earlier request late: any answer will do
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError("kernel died before it was ready")
            asked.add(self.ch.request("kernel_info_request", {}))
            replied = seen = False
            until = min(deadline, time.monotonic() + 1.0)
            while not (replied and seen):
                left = until - time.monotonic()
                if left <= 0:
                    break
                shell, iopub = self.ch.poll(left)
                if iopub:
                    self.ch.recv(self.ch.iopub)  # any iopub message proves the subscription
                    seen = True
                if shell and self.ch.recv(self.ch.shell)["parent_header"].get("msg_id") in asked:
                    replied = True
                    until = min(until, time.monotonic() + 0.2)  # the request's idle status follows closely
            if replied and seen:
                self.drain_iopub()
                return
        raise RuntimeError("kernel did not become ready within %ds" % timeout_s)

    def shell_reply(self, msg_id, timeout_s):
        """The shell reply to `msg_id`, or None after `timeout_s`; iopub messages meanwhile are dropped."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            shell, iopub = self.ch.poll(min(left, 0.5))
            if iopub:
                self.drain_iopub()
            if shell:
                reply = self.ch.recv(self.ch.shell)
                if reply["parent_header"].get("msg_id") == msg_id:
                    return reply
            elif not iopub and not self.alive():
                raise RuntimeError("kernel died")

    def drain_iopub(self):
        while self.ch.poll(0)[1]:
            self.ch.recv(self.ch.iopub)

    def check_hook(self):
        """Runs a silent request through KERNEL_SETUP's hook; whether the kernel applied and reported it."""
        spec = {"env": {}, "cwd": os.getcwd(), "limit": 1}
        msg_id = self.ch.request("execute_request", execute_content("", silent=True), metadata={"warren": spec})
        reply = self.shell_reply(msg_id, SILENT_CALL_TIMEOUT_S)
        return reply is not None and isinstance(reply["content"].get("warren"), dict)

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
        content = execute_content(code, silent=True)
        content["user_expressions"] = expressions
        msg_id = self.ch.request("execute_request", content)
        reply = self.shell_reply(msg_id, SILENT_CALL_TIMEOUT_S)
        if reply is None:
            raise RuntimeError("kernel did not answer within %ds" % SILENT_CALL_TIMEOUT_S)
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

    def run_code(self, req):
        rid = req["id"]
        limit = int(req.get("max_output_bytes", 4 << 20))
        rich_limit = int(req.get("max_rich_bytes", 16 << 20))
        if not self.alive() and not self.restart():
            send({"event": "result", "id": rid, "status": "dead", "reason": "the kernel is not running"})
            return False
        spec = {"env": req.get("env") or {}, "cwd": req.get("cwd") or os.getcwd(), "limit": limit}
        if not self.hooked:
            try:
                self.silent_call("__import__('_warren').enter(%r)" % json.dumps(spec))
            except Exception as exc:  # noqa: BLE001 - reported to the agent
                send(setup_error(rid, "WarrenSetupError", str(exc)))
                return True

        stdout, stderr = Capped(limit), Capped(limit)
        displays, rich_bytes, rich_dropped = [], 0, 0
        result, error, count = None, None, None
        reply = None
        idle_at = None

        metadata = {"warren": spec} if self.hooked else None
        content = execute_content(req["code"], silent=False, store_history=not req.get("warm_up"))
        msg_id = self.ch.request("execute_request", content, metadata=metadata)
        # Done once the kernel is idle again (all iopub output is in) and the reply is in.
        while idle_at is None or reply is None:
            shell, iopub = self.ch.poll(0.25)
            if not shell and not iopub:
                if not self.alive():
                    send({"event": "result", "id": rid, "status": "dead", "stdout": stdout.text(),
                          "stderr": stderr.text(), "stdout_truncated": stdout.truncated,
                          "stderr_truncated": stderr.truncated, "reason": "it exited during the run"})
                    return self.restart()
                if idle_at is not None and time.monotonic() - idle_at > REPLY_AFTER_IDLE_TIMEOUT_S:
                    break  # the kernel sends the reply before going idle; never wait long for a lost one
                continue
            if shell:
                msg = self.ch.recv(self.ch.shell)
                if msg["parent_header"].get("msg_id") == msg_id:
                    reply = msg
            if not iopub:
                continue
            msg = self.ch.recv(self.ch.iopub)
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
                idle_at = time.monotonic()

        status = "ok"
        dropped = {}
        if reply is not None:
            content = reply["content"]
            status = content.get("status", "ok")
            count = content.get("execution_count", count)
            warren = content.get("warren") or {}
            dropped = warren.get("dropped") or {}
            setup = warren.get("setup_error")
            if setup is not None:
                ename, evalue = setup.get("ename", ""), setup.get("evalue", "")
                if ename == "KeyboardInterrupt":  # the interrupt of a timeout, as the agent expects it
                    send(setup_error(rid, ename, evalue))
                else:
                    send(setup_error(rid, "WarrenSetupError", "%s: %s" % (ename, evalue)))
                return True
        if not self.hooked:
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
            if self.ch is not None:
                self.ch.close()
            if self.early is not None:
                self.early.kill()
                os.unlink(self.km.connection_file)
            else:
                self.km.shutdown_kernel(now=True)
        except Exception:  # noqa: BLE001 - exiting anyway
            pass


def execute_content(code, silent, store_history=None):
    if store_history is None:
        store_history = not silent
    return {"code": code, "silent": silent, "store_history": store_history, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": False}


def setup_error(rid, ename, evalue):
    return {"event": "result", "id": rid, "status": "error", "stdout": "", "stderr": "",
            "error": {"ename": ename, "evalue": evalue, "traceback": []}}


def kernel_spec_manager():
    """jupyter_client's KernelSpecManager, finding an installed kernel.json without importing IPython or ipykernel.

    To look up `python3` jupyter_client imports IPython (for ~/.ipython/kernels) and ipykernel.kernelspec
    (which loads ipykernel's kernel, IPython and debugpy, to recognise ipykernel's built-in spec): 300-400 ms of
    the bridge's start in a sandbox before the kernel is launched, for modules only the kernel uses. Here the
    same directories are searched in the same order, the IPython one named as IPython names it; a spec found in
    none of them (ipykernel's built-in one) is left to jupyter_client, imports and all.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from jupyter_client.provisioning import KernelProvisionerFactory

    class BridgeKernelSpecManager(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            resource_dir = installed_kernel_dir(self.kernel_dirs, kernel_name)
            if resource_dir is None:
                return super().get_kernel_spec(kernel_name)
            spec = self.kernel_spec_class.from_resource_dir(resource_dir)
            if not KernelProvisionerFactory.instance(parent=self.parent).is_provisioner_available(spec):
                raise NoSuchKernel(kernel_name)
            return spec

    return BridgeKernelSpecManager(kernel_dirs=kernel_dirs())


def kernel_dirs():
    """Where jupyter_client looks for kernel specs, in order: jupyter_path's, then IPython's (named as IPython does)."""
    from jupyter_core.paths import jupyter_path

    ipython_dir = os.environ.get("IPYTHONDIR") or os.environ.get("IPYTHON_DIR") or "~/.ipython"
    return [*jupyter_path("kernels"), os.path.join(os.path.normpath(os.path.expanduser(ipython_dir)), "kernels")]


def installed_kernel_dir(dirs, kernel_name):
    """The first of `dirs` holding `<kernel_name>/kernel.json`, as that directory; None when none does."""
    for kernel_dir in dirs:
        resource_dir = os.path.join(kernel_dir, kernel_name)
        if os.path.isfile(os.path.join(resource_dir, "kernel.json")):
            return resource_dir
    return None


def kernel_connection_file():
    """This bridge's kernel connection file, in a private directory cleared of the files earlier bridges left."""
    runtime_dir = os.path.join(os.environ.get("TMPDIR", "/tmp"), ".warren-kernel")
    os.makedirs(runtime_dir, mode=0o700, exist_ok=True)
    for name in os.listdir(runtime_dir):
        if name.startswith("kernel-") and name.endswith(".json"):
            try:
                os.unlink(os.path.join(runtime_dir, name))
            except OSError:
                pass
    return os.path.join(runtime_dir, "kernel-%d.json" % os.getpid())


class EarlyKernel:
    """The first kernel, launched by the bridge before it imports jupyter_client (100-150 ms in a sandbox).

    Only for the usual spec, a `python3/kernel.json` whose argv is `<python> -m ipykernel_launcher -f
    {connection_file}`, with no env and jupyter_client's own (local) provisioner; any other is left to
    jupyter_client. Launched as jupyter_client's launcher would: KERNEL_LAUNCHER in place of `-m`, the
    connection file written first (free loopback ports, a random key), a session of its own so the agent can
    signal its process group, stdio on /dev/null, JPY_PARENT_PID set and PYTHONEXECUTABLE dropped.
    """

    def __init__(self, process, kernel_id):
        self.process = process
        self.kernel_id = kernel_id

    @classmethod
    def launch(cls, connection_file, env):
        """The launched kernel, or None when the spec is not the usual one (or cannot be read)."""
        import socket
        import uuid

        try:
            resource_dir = installed_kernel_dir(kernel_dirs(), "python3")
            if resource_dir is None:
                return None
            with open(os.path.join(resource_dir, "kernel.json"), encoding="utf-8") as f:
                spec = json.load(f)
            provisioner = spec.get("metadata", {}).get("kernel_provisioner", {}).get("provisioner_name")
            if (
                spec.get("argv", [])[1:] != ["-m", "ipykernel_launcher", "-f", "{connection_file}"]
                or spec.get("env")
                or provisioner not in (None, "local-provisioner")
            ):
                return None
            python = os.path.expanduser(spec["argv"][0])
        except Exception:  # noqa: BLE001 - anything unusual is left to jupyter_client, which reports it
            return None
        if python in ("python", "python%d" % sys.version_info[0], "python%d.%d" % sys.version_info[:2]):
            python = sys.executable  # as jupyter_client's format_kernel_cmd does
        argv = [python, "-c", KERNEL_LAUNCHER, "-f", connection_file]
        sockets = [socket.socket() for _ in range(5)]
        try:
            for sock in sockets:
                sock.bind(("127.0.0.1", 0))
            ports = [sock.getsockname()[1] for sock in sockets]
        finally:
            for sock in sockets:
                sock.close()
        info = dict(zip(("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"), ports))
        info.update(ip="127.0.0.1", key=uuid.uuid4().hex, transport="tcp", signature_scheme="hmac-sha256",
                    kernel_name="python3")
        fd = os.open(connection_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(info, f)
        env = dict(env, JPY_PARENT_PID=str(os.getpid()))
        env.pop("PYTHONEXECUTABLE", None)
        try:
            process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError:  # jupyter_client tries the same and reports why it failed
            return None
        return cls(process, str(uuid.uuid4()))

    def kill(self):
        """Kills the kernel's process group (as jupyter_client's restart does) and reaps the kernel."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except OSError:
            pass
        self.process.wait()


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
    # debugpy, when user code imports it in the kernel, warns about frozen modules on stderr otherwise.
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    PROTOCOL_OUT = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # stray prints (ours or a library's) go to stderr, never into the protocol
    sys.stdout = sys.stderr
    env = kernel_env()
    early = None
    try:
        connection_file = kernel_connection_file()
        # The kernel's own start is the longest part: under way before the bridge's imports below.
        early = EarlyKernel.launch(connection_file, env)
    except OSError:
        connection_file = None  # tried again below, where a failure is reported after "hello" as it always was
    try:
        import ipykernel
        import jupyter_client
    except Exception as exc:  # noqa: BLE001 - any import failure means no kernel
        if early is not None:
            early.kill()
        send({"event": "unavailable", "reason": "%s: %s" % (type(exc).__name__, exc)})
        return 3
    send({"event": "hello", "ipykernel": ipykernel.__version__, "jupyter_client": jupyter_client.__version__,
          "python": sys.version.split()[0]})
    try:
        bridge = Bridge(connection_file or kernel_connection_file(), env, early)
        bridge.start()
    except Exception as exc:  # noqa: BLE001 - reported to the agent
        if early is not None:
            early.kill()
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
