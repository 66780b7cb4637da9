"""An EventService client for the integration tests: ListEvents paging,
and a WatchEvents stream read by a background thread so that a test can
wait for what it expects while the stream goes on (or stop reading it on
purpose, to play a slow consumer)."""
import queue
import threading
import time

import grpc
from google.protobuf import json_format

from . import env, protos

SVC = '/sandgate.v1.EventService/'

TYPES = ['UNSPECIFIED', 'ACCEPTED', 'ALLOCATION_STARTED', 'RESOURCE_CREATED',
         'CREDENTIALS_RESOLVED', 'POLICY_ATTACHED', 'READY', 'FAILED',
         'DELETE_REQUESTED', 'DELETED', 'EXPIRED', 'BOOKMARK']
BOOKMARK = 11


def type_name(ev):
    return TYPES[ev.type] if ev.type < len(TYPES) else str(ev.type)


def is_bookmark(ev):
    return ev.type == BOOKMARK


def body(**kw):
    """A request body from snake_case keyword arguments (types as names)."""
    out = {}
    for k, v in kw.items():
        if v is None or v == '' or v == 0 or v == []:
            continue
        if k == 'types':
            v = ['EVENT_TYPE_' + t for t in v]
        parts = k.split('_')
        out[parts[0] + ''.join(p.title() for p in parts[1:])] = (
            str(v) if k == 'since_seq' else v)
    return out


class EventClient:
    def __init__(self, channel):
        self.p = protos.get()
        self.ch = channel

    def _req(self, method, **kw):
        req = self.p.request_for(SVC + method)
        json_format.ParseDict(body(**kw), req)
        return req

    def list(self, timeout=None, **kw):
        """One ListEvents page (the response)."""
        return self.p.method(self.ch, SVC + 'ListEvents')(
            self._req('ListEvents', **kw), timeout=timeout or env.scaled(10))

    def list_all(self, page_size=500, **kw):
        """Every retained event matching kw, following page tokens; also
        the number of pages read."""
        out, token, pages = [], '', 0
        while True:
            resp = self.list(page_size=page_size, page_token=token, **kw)
            pages += 1
            out.extend(resp.events)
            token = resp.next_page_token
            if not token:
                return out, pages

    def newest(self):
        """The seq of the newest retained event (0 when there is none)."""
        evs, _ = self.list_all()
        return evs[-1].seq if evs else 0

    def watch(self, timeout=None, **kw):
        """The raw WatchEvents call (an iterator of events)."""
        return self.p.method(self.ch, SVC + 'WatchEvents')(
            self._req('WatchEvents', **kw), timeout=timeout)

    def watcher(self, **kw):
        """A started Watcher on this channel."""
        return Watcher(self, **kw).start()


class Watcher:
    """A WatchEvents stream read on its own thread into a list.

    start() returns once the server has answered with its headers, which
    it sends when the subscription is in place: an event committed after
    that is not missed. read_limit stops reading after that many messages
    (a consumer that stalls); resume_reading() goes on."""

    def __init__(self, client, read_limit=None, **kw):
        self.client = client
        self.kw = kw
        self.events = []
        self.code = None      # grpc.StatusCode once the stream ended
        self.details = ''
        self._cv = threading.Condition()
        self._read_limit = read_limit
        self._call = None
        self._thread = None

    def start(self, timeout=None):
        self._call = self.client.watch(**self.kw)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        # Headers come when the hub has the subscriber; an error status
        # (OUT_OF_RANGE, ...) comes instead of them.
        deadline = time.monotonic() + (timeout or env.scaled(10))
        done = threading.Event()

        def headers():
            try:
                self._call.initial_metadata()
            finally:
                done.set()
        threading.Thread(target=headers, daemon=True).start()
        if not done.wait(max(0.0, deadline - time.monotonic())):
            raise AssertionError('WatchEvents %r: no headers in time' % (self.kw,))
        return self

    def _run(self):
        try:
            for ev in self._call:
                with self._cv:
                    self.events.append(ev)
                    self._cv.notify_all()
                    while (self._read_limit is not None and
                           len(self.events) >= self._read_limit):
                        self._cv.wait()
            with self._cv:
                self.code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            with self._cv:
                self.code = e.code()
                self.details = e.details() or ''
        with self._cv:
            self._cv.notify_all()

    def resume_reading(self):
        with self._cv:
            self._read_limit = None
            self._cv.notify_all()

    def cancel(self):
        if self._call is not None:
            self._call.cancel()
        self.resume_reading()
        if self._thread is not None:
            self._thread.join(env.scaled(10))

    def wait(self, pred, timeout=None, what='events'):
        """Wait until pred(events) is true or the stream ended; returns a
        copy of the events. Raises AssertionError on timeout."""
        deadline = time.monotonic() + (timeout or env.scaled(20))
        with self._cv:
            while True:
                if pred(self.events):
                    return list(self.events)
                if self.code is not None:
                    raise AssertionError('WatchEvents %r ended (%s %s) before %s; got %d'
                                         % (self.kw, self.code, self.details, what,
                                            len(self.events)))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError('WatchEvents %r: timed out waiting for %s; '
                                         'got %d, last %s' % (
                                             self.kw, what, len(self.events),
                                             self.events[-1].seq if self.events else None))
                self._cv.wait(min(left, 0.5))

    def wait_end(self, timeout=None):
        """Wait for the stream's status; returns (code, details)."""
        deadline = time.monotonic() + (timeout or env.scaled(20))
        with self._cv:
            while self.code is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError('WatchEvents %r did not end' % (self.kw,))
                self._cv.wait(min(left, 0.5))
            return self.code, self.details

    def lifecycle(self):
        """The events received so far, bookmarks left out."""
        with self._cv:
            return [e for e in self.events if not is_bookmark(e)]

    def wait_seq(self, seq, timeout=None):
        """Wait until an event (or bookmark) with seq >= seq arrived."""
        return self.wait(lambda evs: evs and evs[-1].seq >= seq, timeout,
                         'seq %d' % seq)


def seqs(evs):
    return [e.seq for e in evs]


def check_contiguous(test, got, want, what=''):
    """Assert the seqs of got equal those of want exactly (no gap, no
    duplicate), with a short message naming the first difference."""
    g, w = seqs(got), seqs(want)
    if g == w:
        return
    dups = len(g) - len(set(g))
    missing = sorted(set(w) - set(g))
    extra = sorted(set(g) - set(w))
    first = next((i for i, (a, b) in enumerate(zip(g, w)) if a != b), min(len(g), len(w)))
    test.fail('%s: %d events, want %d; %d duplicates, %d missing (first %s), %d extra '
              '(first %s); first difference at index %d'
              % (what, len(g), len(w), dups, len(missing), missing[:5], len(extra),
                 extra[:5], first))
