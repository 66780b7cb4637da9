"""Fault injection rules and the request log, both driven from the admin API.

A rule is {"match": {...}, "action": {...}}; every field of match that is
present must hold (see tests/k8s/README.md for the fields). Rules are tried
in the order they were added; the first one that matches and has firings
left applies. Thread-safe: one lock guards rules and log.
"""
import re
import threading
import time
from .util import jcopy

MATCH_KEYS = {'verb', 'method', 'path', 'resource', 'subresource', 'namespace', 'name',
              'watch', 'count', 'skip', 'user'}
ACTION_KEYS = {'status', 'reason', 'message', 'retry_after', 'delay_ms',
               'drop_watch_after_events', 'send_410', 'close_connection', 'after'}


class FaultError(ValueError):
    pass


class Rule:
    def __init__(self, rid, spec):
        if not isinstance(spec, dict):
            raise FaultError('a fault rule is an object {"match": {...}, "action": {...}}')
        m = spec.get('match') or {}
        a = spec.get('action') or {}
        if set(m) - MATCH_KEYS:
            raise FaultError('unknown match keys: %s' % sorted(set(m) - MATCH_KEYS))
        if set(a) - ACTION_KEYS:
            raise FaultError('unknown action keys: %s' % sorted(set(a) - ACTION_KEYS))
        if not a:
            raise FaultError('a fault rule needs an action')
        self.id = rid
        self.match = m
        self.action = a
        self.path_re = re.compile(m['path']) if m.get('path') else None
        self.count = m.get('count')      # firings allowed; None: unlimited
        self.skip = m.get('skip', 0)     # matching requests let through first
        self.seen = 0
        self.fired = 0

    def matches(self, req):
        m = self.match
        for k in ('verb', 'resource', 'subresource', 'namespace', 'name', 'user'):
            if k in m and m[k] != req.get(k):
                return False
        if 'method' in m and m['method'].upper() != req.get('method'):
            return False
        if 'watch' in m and bool(m['watch']) != bool(req.get('watch')):
            return False
        if self.path_re and not self.path_re.search(req.get('path', '')):
            return False
        return True

    def to_json(self):
        return {'id': self.id, 'match': self.match, 'action': self.action,
                'seen': self.seen, 'fired': self.fired}


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []
        self.next_id = 1

    def add(self, spec):
        with self.lock:
            r = Rule(self.next_id, spec)
            self.next_id += 1
            self.rules.append(r)
            return r.id

    def remove(self, rid):
        with self.lock:
            before = len(self.rules)
            self.rules = [r for r in self.rules if r.id != rid]
            return len(self.rules) != before

    def clear(self):
        with self.lock:
            self.rules = []

    def list(self):
        with self.lock:
            return [r.to_json() for r in self.rules]

    def pick(self, req):
        """The action of the first rule that fires for req, with its id."""
        with self.lock:
            for r in self.rules:
                if not r.matches(req):
                    continue
                if r.count is not None and r.fired >= r.count:
                    continue
                r.seen += 1
                if r.seen <= r.skip:
                    continue
                r.fired += 1
                a = dict(r.action)
                a['id'] = r.id
                return a
        return None


class RequestLog:
    """Every request the Kubernetes port answered, oldest first, with a
    sequence number so a test can ask for what came after a point."""

    def __init__(self, limit=100000):
        self.lock = threading.Lock()
        self.entries = []
        self.next_seq = 1
        self.limit = limit

    def add(self, entry):
        with self.lock:
            entry['seq'] = self.next_seq
            entry['time'] = time.time()
            self.next_seq += 1
            self.entries.append(entry)
            if len(self.entries) > self.limit:
                del self.entries[:len(self.entries) - self.limit]
            return entry

    def update(self, entry, **kw):
        with self.lock:
            entry.update(kw)

    def since(self, seq=0):
        with self.lock:
            return [jcopy(e) for e in self.entries if e['seq'] > seq], self.next_seq - 1

    def clear(self):
        with self.lock:
            self.entries = []
