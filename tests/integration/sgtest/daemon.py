"""Start and stop the real sandgate daemon for a test.

A Daemon gets its own directory (config, data dir, stdout/stderr files)
under the module's work directory, free loopback ports, and a generated
YAML config. start() waits until grpc.health.v1.Health/Check("") answers
SERVING; stop() sends SIGTERM and waits for the exit code. After the
daemon has exited, its stderr is scanned for sanitizer reports.
"""
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import grpc

from . import env, protos

SANITIZER_RE = re.compile(
    r'ERROR: (Address|Leak|Memory|Thread|UndefinedBehavior)Sanitizer'
    r'|SUMMARY: (Address|Leak|UndefinedBehavior)Sanitizer'
    r'|: runtime error: ')

_counter = itertools.count(1)


def _ephemeral_low():
    try:
        with open('/proc/sys/net/ipv4/ip_local_port_range') as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_used_ports = set()


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago.

    Chosen at random below the kernel's ephemeral range, so no client
    socket of this or a parallel test takes it before the daemon binds."""
    low = max(_ephemeral_low(), 12000)
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10000, low)
        if port in _used_ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(('127.0.0.1', port))
            except OSError:
                continue
        _used_ports.add(port)
        return port
    raise DaemonError('no free port found')


def short_tempdir():
    """A directory with a short path, for unix sockets (108-byte limit)."""
    return tempfile.mkdtemp(prefix='sg')


# A minimal YAML writer (block style), so tests need no YAML module. -------

def _scalar(v):
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))  # a JSON string is a YAML double-quoted string


_PLAIN_KEY = re.compile(r'^[A-Za-z_][A-Za-z0-9_.-]*$')


def _key(k):
    """A mapping key: plain when it is a simple name, else double-quoted (a
    key such as "*" or "a/b: c" would otherwise mean something else)."""
    k = str(k)
    plain = _PLAIN_KEY.match(k) and k.lower() not in ('true', 'false', 'yes', 'no', 'on',
                                                      'off', 'null', 'y', 'n')
    return k if plain else json.dumps(k)


def _empty(v):
    return '{}' if isinstance(v, dict) else '[]'


def to_yaml(value, indent=0):
    """Block-style YAML for dicts, lists and scalars."""
    pad = '  ' * indent
    lines = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append('%s%s:' % (pad, _key(k)))
                lines.append(to_yaml(v, indent + 1))
            elif isinstance(v, (dict, list)):
                lines.append('%s%s: %s' % (pad, _key(k), _empty(v)))
            else:
                lines.append('%s%s: %s' % (pad, _key(k), _scalar(v)))
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                sub = to_yaml(item, indent + 1).split('\n')
                sub[0] = pad + '- ' + sub[0].lstrip()
                lines.extend(sub)
            elif isinstance(item, (dict, list)):
                lines.append('%s- %s' % (pad, _empty(item)))
            else:
                lines.append('%s- %s' % (pad, _scalar(item)))
    else:
        lines.append(pad + _scalar(value))
    return '\n'.join(lines)


def deep_merge(base, over):
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


class DaemonError(AssertionError):
    pass


def bearer_metadata(token):
    """[('authorization', 'Bearer <token>')], or [] for no token."""
    return [('authorization', 'Bearer ' + token)] if token else []


class Daemon:
    """One sandgate process.

    listeners: list of listener dicts for the config ({'address': ...,
    'tls': {...}}); default one plaintext listener on a free port.
    config: dict merged over the default config (server/log sections).
    args: extra command-line arguments. use_config=False runs without
    --config (then pass --listen in args).
    driver: a driver name ("noop", "process"), shorthand for
    config={'driver': {'name': ...}}.
    auth: the config's auth section (dict), e.g. {'reflection': False}.
    policy: a policy file (a dict, written as YAML, or the text itself):
    written to <dir>/policy.yaml, which auth.policy_file then names.
    audit: True to write the audit log to <dir>/audit.log
    (auth.audit.file); read it with audit_records().

    Credentials: without a policy file the daemon writes its admin token
    to DATA_DIR/admin.token (auth.admin_token_file) on first start;
    admin_token holds it once the daemon serves, or None when there is no
    such file (authentication not configured, or a daemon built before
    authentication existed). channel()/metadata() attach it to calls.
    """

    ADMIN_SUBJECT = 'token:admin'
    LOCAL_SUBJECT = 'local:unauthenticated'

    def __init__(self, name=None, listeners=None, config=None, args=(), env_extra=None,
                 use_config=True, ready_target=None, ready_credentials=None,
                 driver=None, auth=None, policy=None, audit=False):
        if not env.SANDGATE:
            raise DaemonError('the sandgate binary was not given (--sandgate or SANDGATE_BIN)')
        self.name = name or 'daemon%d' % next(_counter)
        base = env.WORK_DIR or tempfile.mkdtemp(prefix='sandgate-it-')
        self.dir = os.path.join(base, self.name)
        if os.path.exists(self.dir):
            shutil.rmtree(self.dir)
        os.makedirs(self.dir)
        self.data_dir = os.path.join(self.dir, 'data')
        self.stderr_path = os.path.join(self.dir, 'stderr.log')
        self.stdout_path = os.path.join(self.dir, 'stdout.log')
        self.config_path = os.path.join(self.dir, 'sandgate.yaml')
        if listeners is None:
            listeners = [{'address': '127.0.0.1:%d' % free_port()}]
        self.listeners = listeners
        cfg = {
            'listeners': listeners,
            'server': {'workers': 2, 'drain_timeout_ms': 3000},
            'log': {'level': 'info', 'format': 'json', 'access_log': True},
        }
        if driver:
            cfg['driver'] = {'name': driver}
        self.policy_path = os.path.join(self.dir, 'policy.yaml')
        self.audit_path = os.path.join(self.dir, 'audit.log')
        auth_cfg = dict(auth or {})
        if policy is not None:
            auth_cfg.setdefault('policy_file', self.policy_path)
        if audit:
            auth_cfg['audit'] = deep_merge({'file': self.audit_path}, auth_cfg.get('audit') or {})
        if auth is not None or auth_cfg:
            cfg['auth'] = auth_cfg
        self.config = deep_merge(cfg, config or {})
        self.policy = policy
        self.admin_token = None
        self.use_config = use_config
        self.args = list(args)
        self.env_extra = env_extra or {}
        self.ready_target = ready_target
        self.ready_credentials = ready_credentials
        self.proc = None
        self.returncode = None
        self._stderr = None
        self._stdout = None

    # addresses ----------------------------------------------------------

    @property
    def address(self):
        """The first plaintext listener's address (a grpcio target)."""
        for l in self.listeners:
            if not l.get('tls'):
                return l['address']
        raise DaemonError('no plaintext listener configured')

    def write_config(self):
        with open(self.config_path, 'w') as f:
            f.write('# generated by the integration tests\n')
            f.write(to_yaml(self.config) + '\n')

    def rewrite_config(self, config=None, text=None):
        """Merge config into the current one and rewrite the file (or write
        text verbatim), e.g. before a SIGHUP."""
        if text is not None:
            with open(self.config_path, 'w') as f:
                f.write(text)
            return
        self.config = deep_merge(self.config, config or {})
        self.write_config()

    # authentication -------------------------------------------------------

    @property
    def auth_config(self):
        return self.config.get('auth') or {}

    @property
    def admin_token_path(self):
        p = self.auth_config.get('admin_token_file') or os.path.join(self.data_dir,
                                                                    'admin.token')
        return p if os.path.isabs(p) else os.path.join(self.dir, p)

    def read_admin_token(self):
        """The admin token file's text (stripped), or None if it does not exist."""
        try:
            with open(self.admin_token_path) as f:
                return f.read().strip() or None
        except FileNotFoundError:
            return None

    @property
    def uses_admin_token(self):
        """True when the daemon is configured for the embedded default
        (no policy file, authentication not disabled)."""
        a = self.auth_config
        return not a.get('policy_file') and not a.get('disabled')

    @property
    def admin_subject(self):
        """The subject the admin token's calls act as: token:admin, or
        local:unauthenticated while the daemon has no token (before
        authentication existed, or with auth.disabled)."""
        return self.ADMIN_SUBJECT if self.admin_token else self.LOCAL_SUBJECT

    def metadata(self, token=None):
        """Call metadata carrying token (default: the admin token); [] when
        there is none."""
        token = token if token is not None else self.admin_token
        return bearer_metadata(token)

    def channel(self, token=None, target=None, credentials=None):
        """A channel to the daemon whose calls carry token (default: the
        admin token, when there is one). The caller closes it."""
        target = target or self.address
        ch = (protos.secure_channel(target, credentials) if credentials is not None
              else protos.insecure_channel(target))
        token = token if token is not None else self.admin_token
        return protos.with_token(ch, token) if token else ch

    def write_policy(self, policy):
        """Replace the policy file (a dict or the text) atomically, so a
        reload never reads half a file. Does not signal."""
        self.policy = policy
        text = policy if isinstance(policy, str) else (
            '# generated by the integration tests\n' + to_yaml(policy) + '\n')
        tmp = self.policy_path + '.tmp'
        with open(tmp, 'w') as f:
            f.write(text)
        os.replace(tmp, self.policy_path)

    def reload(self, policy=None):
        """Write policy (if given), then SIGHUP."""
        if policy is not None:
            self.write_policy(policy)
        self.signal(signal.SIGHUP)

    def audit_text(self):
        try:
            with open(self.audit_path, 'rb') as f:
                return f.read().decode('utf-8', errors='replace')
        except FileNotFoundError:
            return ''

    def audit_records(self):
        """The audit log's lines, each parsed as JSON (a line that does not
        parse raises: the log is one JSON object per line)."""
        out = []
        for line in self.audit_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
        return out

    def command(self):
        cmd = [env.SANDGATE]
        if self.use_config:
            cmd += ['--config', self.config_path]
        cmd += ['--data-dir', self.data_dir] + self.args
        return cmd

    # lifecycle ----------------------------------------------------------

    def start(self, wait=True, timeout=None):
        if self.use_config:
            self.write_config()
            if self.policy is not None and not os.path.exists(self.policy_path):
                self.write_policy(self.policy)
        environ = dict(os.environ)
        # Settings of this test process that are not the daemon's business.
        for k in list(environ):
            if k.startswith('SANDGATE_') or k == 'GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS':
                del environ[k]
        environ.update(self.env_extra)
        # A restart is a new process: forget the last one's exit, or the
        # test's cleanup would take this one for exited and leave it running.
        # Its stderr is about to be replaced: a sanitizer report in it must
        # not go unseen (a run killed on purpose may end any way it likes).
        if self.proc is not None and self.sanitizer_report():
            raise DaemonError('sandgate: sanitizer report before a restart\n%s'
                              % self.tail(80))
        self.returncode = None
        self._stderr = open(self.stderr_path, 'wb')
        self._stdout = open(self.stdout_path, 'wb')
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=self._stdout, stderr=self._stderr,
                                     cwd=self.dir, env=environ)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=None):
        timeout = timeout or env.scaled(20)
        target = self.ready_target or self.address
        p = protos.get()
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._closed()
                raise DaemonError('sandgate exited with %s before serving\n%s'
                                  % (self.proc.returncode, self.tail()))
            # A fresh channel per attempt: a channel whose first connection
            # attempt came too early backs off for seconds.
            if self.ready_credentials is not None:
                ch = protos.secure_channel(target, self.ready_credentials)
            else:
                ch = protos.insecure_channel(target)
            try:
                status = p.health_check(ch, '', timeout=1.0)
                if status == 'SERVING':
                    # The token is written before the daemon serves; a
                    # daemon without authentication writes none.
                    self.admin_token = (self.read_admin_token() if self.uses_admin_token
                                        else None)
                    return
                last = 'status ' + status
            except grpc.RpcError as e:
                last = '%s %s' % (e.code(), e.details())
            finally:
                ch.close()
            time.sleep(0.02)
        self.kill()
        raise DaemonError('sandgate did not report SERVING on %s within %.0fs (last: %s)\n%s'
                          % (target, timeout, last, self.tail()))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=None):
        """Wait for exit; returns the exit code, raises DaemonError on timeout."""
        timeout = timeout or env.scaled(20)
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise DaemonError('sandgate did not exit within %.0fs\n%s' % (timeout, self.tail()))
        self._closed()
        return self.returncode

    def stop(self, timeout=None):
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._closed()

    def _closed(self):
        for f in (self._stderr, self._stdout):
            if f is not None and not f.closed:
                f.close()

    # output -------------------------------------------------------------

    def stderr_text(self):
        try:
            with open(self.stderr_path, 'rb') as f:
                return f.read().decode('utf-8', errors='replace')
        except FileNotFoundError:
            return ''

    def stdout_text(self):
        try:
            with open(self.stdout_path, 'rb') as f:
                return f.read().decode('utf-8', errors='replace')
        except FileNotFoundError:
            return ''

    def tail(self, n=40):
        lines = self.stderr_text().splitlines()
        return ('--- last %d lines of %s ---\n' % (min(n, len(lines)), self.stderr_path)
                + '\n'.join(lines[-n:]))

    def log_records(self):
        """Every stderr line that parses as a JSON object."""
        out = []
        for line in self.stderr_text().splitlines():
            line = line.strip()
            if line.startswith('{'):
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    out.append(rec)
        return out

    def sanitizer_report(self):
        m = SANITIZER_RE.search(self.stderr_text())
        return m is not None

    def check_clean_exit(self, expect_rc=0):
        """Raise DaemonError unless the daemon exited with expect_rc and
        printed no sanitizer report."""
        problems = []
        if self.returncode != expect_rc:
            problems.append('exit code %s (expected %s)' % (self.returncode, expect_rc))
        if self.sanitizer_report():
            problems.append('sanitizer report in stderr')
        if problems:
            raise DaemonError('sandgate: %s\n%s' % ('; '.join(problems), self.tail(80)))


class DaemonTestCase(unittest.TestCase):
    """A TestCase whose daemons are stopped after each test and must exit 0
    without sanitizer reports."""

    protos = None

    @classmethod
    def setUpClass(cls):
        cls.protos = protos.get()
        cls._class_daemons = []

    @classmethod
    def tearDownClass(cls):
        errors = []
        for d in cls._class_daemons:
            try:
                _finish(d)
            except DaemonError as e:
                errors.append(str(e))
        if errors:
            raise DaemonError('\n'.join(errors))

    @classmethod
    def start_class_daemon(cls, **kw):
        """A daemon shared by the tests of the class."""
        d = Daemon(name=kw.pop('name', cls.__name__), **kw)
        cls._class_daemons.append(d)
        d.start()
        return d

    def start_daemon(self, wait=True, **kw):
        """A daemon for this test only; checked for a clean exit afterwards."""
        d = Daemon(name=kw.pop('name', self._testMethodName), **kw)
        self.addCleanup(_finish, d)
        d.start(wait=wait)
        return d

    def channel(self, target, credentials=None, token=None):
        """A channel closed after the test; its calls carry token as a
        bearer credential when one is given (anonymous otherwise)."""
        ch = (protos.secure_channel(target, credentials) if credentials is not None
              else protos.insecure_channel(target))
        if token:
            ch = protos.with_token(ch, token)
        self.addCleanup(ch.close)
        return ch

    def admin_channel(self, daemon, target=None, credentials=None):
        """A channel to daemon whose calls carry its admin token (none while
        the daemon has no token), closed after the test."""
        return self.channel(target or daemon.address, credentials, token=daemon.admin_token)

    def assertRpcCode(self, code, fn, *args, msg=None, **kw):
        """Call fn and assert it raises grpc.RpcError with code; returns it."""
        try:
            fn(*args, **kw)
        except grpc.RpcError as e:
            self.assertEqual(e.code(), code, '%sgot %s: %s' % (
                (msg + ': ') if msg else '', e.code(), e.details()))
            return e
        self.fail('%sexpected %s, the call succeeded' % ((msg + ': ') if msg else '', code))


def _finish(d):
    if d.proc is None:
        return
    if d.returncode is None:
        if d.running():
            d.stop()
        else:
            d.wait()
    d.check_clean_exit()
