"""A small SandboxService client for the integration tests, plus readers of
the gateway's own files (the SQLite store, the process driver's state).

Messages are built from dicts with json_format, so tests read like the
JSON a platform would send.
"""
import os
import sqlite3
import time

import grpc
from google.protobuf import json_format

from . import env, protos

SVC = '/sandgate.v1.SandboxService/'

PHASES = ['UNSPECIFIED', 'ACCEPTED', 'PROVISIONING', 'READY', 'FAILED',
          'DELETING', 'DELETED']
EVENT_TYPES = ['UNSPECIFIED', 'ACCEPTED', 'ALLOCATION_STARTED',
               'RESOURCE_CREATED', 'CREDENTIALS_RESOLVED', 'POLICY_ATTACHED',
               'READY', 'FAILED', 'DELETE_REQUESTED', 'DELETED', 'EXPIRED']


def phase_name(sb):
    return PHASES[sb.status.phase]


class Client:
    def __init__(self, channel):
        self.p = protos.get()
        self.ch = channel

    def _call(self, method, body, timeout=None):
        req = self.p.request_for(SVC + method)
        json_format.ParseDict(body, req)
        return self.p.method(self.ch, SVC + method)(req, timeout=timeout or env.scaled(10))

    def create(self, sandbox, request_id='', timeout=None):
        body = {'sandbox': sandbox}
        if request_id:
            body['requestId'] = request_id
        return self._call('CreateSandbox', body, timeout)

    def get(self, sid, timeout=None):
        return self._call('GetSandbox', {'id': sid}, timeout)

    def list(self, timeout=None, **filters):
        return self._call('ListSandboxes', filters, timeout)

    def list_all(self, page_size=100, **filters):
        """Every sandbox matching filters, following page tokens."""
        out, token = [], ''
        while True:
            resp = self.list(pageSize=page_size, pageToken=token, **filters)
            out.extend(resp.sandboxes)
            token = resp.next_page_token
            if not token:
                return out

    def delete(self, sid, expected_rv=0, timeout=None):
        body = {'id': sid}
        if expected_rv:
            body['expectedResourceVersion'] = str(expected_rv)
        return self._call('DeleteSandbox', body, timeout)

    def wait_phase(self, sid, phases, timeout=None):
        """Poll until the sandbox is in one of phases; returns it."""
        if isinstance(phases, str):
            phases = (phases,)
        deadline = time.monotonic() + (timeout or env.scaled(30))
        sb = None
        while time.monotonic() < deadline:
            sb = self.get(sid)
            if phase_name(sb) in phases:
                return sb
            time.sleep(0.05)
        raise AssertionError('sandbox %s still %s (want %s): %s'
                             % (sid, phase_name(sb) if sb else '?', phases,
                                sb.status.message if sb else ''))


def sandbox(name, command=None, **extra):
    """A CreateSandbox body for the process driver."""
    body = {'name': name, 'spec': {'command': command or ['sleep', '1000']}}
    for k, v in extra.items():
        if k in ('ttlSeconds', 'env', 'driverConfig', 'workingDir', 'image', 'policy',
                 'credentials'):
            body['spec'][k] = v
        else:
            body[k] = v
    return body


def db_path(daemon):
    return os.path.join(daemon.data_dir, 'sandgate.db')


def events(daemon, sandbox_id=None):
    """Event rows from the store, in sequence order, as dicts."""
    con = sqlite3.connect('file:%s?mode=ro' % db_path(daemon), uri=True, timeout=10)
    con.row_factory = sqlite3.Row
    try:
        q = 'SELECT * FROM events'
        args = ()
        if sandbox_id:
            q += ' WHERE sandbox_id = ?'
            args = (sandbox_id,)
        rows = [dict(r) for r in con.execute(q + ' ORDER BY seq', args)]
    finally:
        con.close()
    for r in rows:
        r['type_name'] = EVENT_TYPES[r['type']]
    return rows


def process_dir(daemon, sandbox_id):
    """The process driver's directory for one sandbox."""
    return os.path.join(daemon.data_dir, 'drivers', 'process', sandbox_id)


def wait_for(fn, timeout=None, what='condition'):
    deadline = time.monotonic() + (timeout or env.scaled(20))
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError('timed out waiting for ' + what)


def bwrap_available():
    """True if bubblewrap can make the namespaces the process driver uses,
    as the user sandboxes run as (nobody, when the tests run as root)."""
    import subprocess
    prefix = []
    if os.geteuid() == 0:
        prefix = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']
    try:
        r = subprocess.run(prefix + ['bwrap', '--unshare-all', '--ro-bind', '/', '/',
                                     '--proc', '/proc', '--dev', '/dev', 'true'],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=20)
        return r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def code_of(fn, *a, **kw):
    """The grpc.StatusCode fn raised, or None."""
    try:
        fn(*a, **kw)
    except grpc.RpcError as e:
        return e.code()
    return None
