"""Start and stop the Kubernetes API stand-in from unittest tests, talk to
its Kubernetes port over HTTPS and to its admin API.

    with StandIn(state_dir, namespaces=['default', 'team-a'],
                 ready_delay_ms=200) as k:
        code, body, headers = k.request('GET', '/api/v1/namespaces')
        k.add_fault({'match': {'verb': 'create', 'resource': 'sandboxes',
                               'count': 1}, 'action': {'status': 500}})
        for ev in k.watch('/apis/agents.x-k8s.io/v1beta1/namespaces/default/'
                          'sandboxes', resourceVersion='0'):
            ...
        k.requests(verb='create')

Standard library only; the stand-in runs under the same interpreter.
"""
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
STANDIN = os.path.join(HERE, 'standin.py')

SANDBOXES = '/apis/agents.x-k8s.io/v1beta1/namespaces/%s/sandboxes'
PODS = '/api/v1/namespaces/%s/pods'
EVENTS = '/api/v1/namespaces/%s/events'


class StandInError(RuntimeError):
    pass


class StandIn:
    def __init__(self, state_dir, namespaces=('default',), ready_delay_ms=None, token=None,
                 port=0, admin_port=0, extra_args=(), start_timeout=30.0):
        self.state_dir = os.path.abspath(state_dir)
        self.namespaces = list(namespaces)
        self.ready_delay_ms = ready_delay_ms
        self.token_arg = token
        self.port = port
        self.admin_port = admin_port
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.proc = None
        self.info = None

    # --- lifecycle ----------------------------------------------------------

    def start(self):
        os.makedirs(self.state_dir, exist_ok=True)
        state = os.path.join(self.state_dir, 'standin.json')
        if os.path.exists(state):
            os.unlink(state)
        args = [sys.executable, STANDIN, '--state-dir', self.state_dir,
                '--port', str(self.port), '--admin-port', str(self.admin_port),
                '--namespaces', ','.join(self.namespaces)]
        if self.ready_delay_ms is not None:
            args += ['--ready-delay-ms', str(self.ready_delay_ms)]
        if self.token_arg:
            args += ['--token', self.token_arg]
        args += self.extra_args
        self.log_path = os.path.join(self.state_dir, 'standin.log')
        self.log = open(self.log_path, 'ab')
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StandInError('stand-in exited with %d; see %s'
                                   % (self.proc.returncode, self.log_path))
            if os.path.exists(state):
                with open(state) as f:
                    self.info = json.load(f)
                break
            time.sleep(0.02)
        else:
            self.stop()
            raise StandInError('stand-in did not start; see %s' % self.log_path)
        self.url = self.info['url']
        self.ca_file = self.info['ca_file']
        self.token = self.info['token']
        self.admin_url = self.info['admin_url']
        self.kubeconfig = self.info['kubeconfig']
        u = urllib.parse.urlsplit(self.url)
        self.host, self.port_number = u.hostname, u.port
        self.ssl = ssl.create_default_context(cafile=self.ca_file)
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.log.close()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- the Kubernetes port --------------------------------------------------

    def connection(self, timeout=30):
        return http.client.HTTPSConnection(self.host, self.port_number, context=self.ssl,
                                           timeout=timeout)

    def request(self, method, path, body=None, params=None, token=True, content_type=None,
                headers=None, conn=None):
        """(status, decoded body or text, headers). token: True for the
        stand-in's token, a string for another, None for no header."""
        if params:
            path += ('&' if '?' in path else '?') + urllib.parse.urlencode(params)
        h = {'Accept': 'application/json'}
        if token is True:
            h['Authorization'] = 'Bearer ' + self.token
        elif token:
            h['Authorization'] = 'Bearer ' + token
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h['Content-Type'] = content_type or 'application/json'
        h.update(headers or {})
        own = conn is None
        conn = conn or self.connection()
        try:
            conn.request(method, path, body=data, headers=h)
            resp = conn.getresponse()
            raw = resp.read()
            ctype = resp.getheader('Content-Type', '')
            out = json.loads(raw) if raw and ctype.startswith('application/json') else \
                raw.decode(errors='replace')
            return resp.status, out, resp.headers
        finally:
            if own:
                conn.close()

    def watch(self, path, timeout=30, **params):
        """A Watch over path?watch=1&params (iterate for events)."""
        return Watch(self, path, params, timeout)

    # --- the admin API --------------------------------------------------------

    def admin(self, method, path, body=None):
        u = urllib.parse.urlsplit(self.admin_url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data,
                         headers={'Content-Type': 'application/json'} if data else {})
            resp = conn.getresponse()
            out = json.loads(resp.read() or b'{}')
            if resp.status >= 400:
                raise StandInError('admin %s %s: %d %s' % (method, path, resp.status, out))
            return out
        finally:
            conn.close()

    def add_fault(self, rule):
        return self.admin('POST', '/faults', rule)['ids'][0]

    def clear_faults(self):
        self.admin('DELETE', '/faults')

    def faults(self):
        return self.admin('GET', '/faults')['faults']

    def requests(self, since=0, **match):
        """Recorded requests after sequence number since, filtered by equal
        fields (verb=, resource=, namespace=, name=, method=...)."""
        out = self.admin('GET', '/requests?since=%d' % since)['requests']
        return [r for r in out if all(r.get(k) == v for k, v in match.items())]

    def last_seq(self):
        return self.admin('GET', '/requests?since=%d' % (2 ** 62))['last']

    def clear_requests(self):
        self.admin('DELETE', '/requests')

    def config(self, **changes):
        return self.admin('POST', '/config', changes)

    def reset(self):
        self.admin('POST', '/reset')

    def seed(self, *objects):
        return self.admin('POST', '/objects', {'objects': list(objects)})['objects']

    def objects(self, resource=None, namespace=None):
        q = {k: v for k, v in (('resource', resource), ('namespace', namespace)) if v}
        return self.admin('GET', '/objects?' + urllib.parse.urlencode(q))['objects']

    def compact(self, resource_version=None):
        body = {} if resource_version is None else {'resourceVersion': resource_version}
        return self.admin('POST', '/compact', body)['compacted']

    def close_watches(self):
        return self.admin('POST', '/watches/close')['closed']

    def state(self):
        return self.admin('GET', '/state')

    def add_token(self, token, user, rules=None):
        self.admin('POST', '/tokens', {'token': token, 'user': user, 'rules': rules})

    def remove_token(self, token):
        self.admin('POST', '/tokens', {'token': token, 'remove': True})

    def wait_for(self, predicate, timeout=10.0, interval=0.02, what='condition'):
        deadline = time.monotonic() + timeout
        while True:
            v = predicate()
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError('timed out waiting for %s' % what)
            time.sleep(interval)


class Watch:
    """A streaming watch: iterate for (type, object) events; ends when the
    server ends the stream; .dropped tells whether it ended without the
    terminating chunk (a dropped connection)."""

    def __init__(self, standin, path, params, timeout):
        q = dict(params)
        q.setdefault('watch', '1')
        self.conn = standin.connection(timeout=timeout)
        self.conn.request('GET', path + '?' + urllib.parse.urlencode(q),
                          headers={'Authorization': 'Bearer ' + standin.token,
                                   'Accept': 'application/json'})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = self.resp.headers
        self.dropped = False
        self.ended = False
        if self.status != 200:
            self.body = json.loads(self.resp.read() or b'null')
            self.ended = True

    def __iter__(self):
        return self

    def __next__(self):
        if self.ended:
            raise StopIteration
        try:
            line = self.resp.readline()
        except http.client.IncompleteRead:
            line = b''
            self.dropped = True
        except (ConnectionError, OSError, ssl.SSLError):
            line = b''
            self.dropped = True
        if not line:
            self.ended = True
            # After the terminating chunk http.client sets chunk_left to
            # None; a connection closed between chunks leaves it at 0.
            if self.resp.chunk_left is not None:
                self.dropped = True
            raise StopIteration
        ev = json.loads(line)
        return ev['type'], ev['object']

    def next_event(self):
        return next(self, None)

    def close(self):
        self.conn.close()
