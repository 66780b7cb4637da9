"""EventService end to end through the real binary (noop driver, the real
SQLite store): resume at random points with no gap and no duplicate, also
across a restart; OUT_OF_RANGE past retention; filters on WatchEvents and
ListEvents; bookmarks; per-event authorization, a policy reload applying
to open streams; a stalled consumer ended with RESOURCE_EXHAUSTED while a
healthy one gets everything.

The ground truth is ListEvents without filters (itself checked against
the store's rows): a stream must deliver exactly the matching subset of
it, in order."""
import os
import random
import re
import signal
import threading
import time
import uuid

import grpc
from google.protobuf import json_format

from sgtest import env, protos
from sgtest.authfix import policy, role
from sgtest.daemon import DaemonTestCase
from sgtest.events import EventClient, check_contiguous, is_bookmark, seqs, type_name
from sgtest.sandboxes import events as store_events
from sgtest.sandboxes import sandbox, wait_for

SB = '/sandgate.v1.SandboxService/'
FAST_STORE = {'store': {'sqlite': {'durability': 'normal'}}}
RESUME_RE = re.compile(r'resume with since_seq (\d+)')
OLDEST_RE = re.compile(r'the oldest available is (\d+) \(resume with since_seq (\d+)\)')


def uid(prefix):
    return '%s-%s' % (prefix, uuid.uuid4().hex[:8])


def churn(ch, n, tenant, namespace=None, delete=True, parallel=24, names=None):
    """Create n sandboxes of tenant (placed in namespace by the noop
    driver) and, with delete, delete each at once; returns their ids.
    Calls run concurrently, so the store commits them in groups."""
    p = protos.get()
    create = p.method(ch, SB + 'CreateSandbox')
    remove = p.method(ch, SB + 'DeleteSandbox')
    extra = {}
    if namespace:
        extra['driverConfig'] = {'noop': {'placement': {'namespace': namespace}}}
    ids, pending = [], []

    def drain(limit):
        while len(pending) > limit:
            f = pending.pop(0)
            resp = f.result()
            if hasattr(resp, 'id') and resp.id and resp.id not in ids:
                ids.append(resp.id)
                if delete:
                    pending.append(remove.future(
                        p.request_for(SB + 'DeleteSandbox', id=resp.id),
                        timeout=env.scaled(30)))

    for i in range(n):
        name = names[i] if names else uid('ev')
        req = p.request_for(SB + 'CreateSandbox')
        json_format.ParseDict({'sandbox': sandbox(name, tenant=tenant, **extra),
                               'requestId': 'req-' + name}, req)
        pending.append(create.future(req, timeout=env.scaled(30)))
        drain(parallel)
    drain(0)
    return ids


def settle(ch, tenant, n, phase):
    """Wait until n sandboxes of tenant are in phase (every event of their
    lifecycle so far is written)."""
    p = protos.get()
    lst = p.method(ch, SB + 'ListSandboxes')

    def count():
        total, token = 0, ''
        while True:
            req = p.request_for(SB + 'ListSandboxes')
            json_format.ParseDict({'tenant': tenant, 'phase': 'SANDBOX_PHASE_' + phase,
                                   'pageSize': 1000, 'pageToken': token}, req)
            resp = lst(req, timeout=env.scaled(10))
            total += len(resp.sandboxes)
            token = resp.next_page_token
            if not token:
                return total >= n
    wait_for(count, env.scaled(60), '%d sandboxes of %s %s' % (n, tenant, phase))


def quiet(ec, hold=0.6):
    """Wait until no event was added for hold seconds; returns the newest
    seq."""
    last, since = ec.newest(), time.monotonic()
    deadline = time.monotonic() + env.scaled(60)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = ec.newest()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= hold:
            return last
    raise AssertionError('events kept coming')


class _Base(DaemonTestCase):
    def ec(self, daemon, token=None, **opts):
        if opts:
            ch = protos.insecure_channel(daemon.address, **opts)
            tok = token if token is not None else daemon.admin_token
            if tok:
                ch = protos.with_token(ch, tok)
            self.addCleanup(ch.close)
        else:
            ch = (self.channel(daemon.address, token=token) if token
                  else self.admin_channel(daemon))
        return EventClient(ch)

    def watcher(self, ec, **kw):
        w = ec.watcher(**kw)
        self.addCleanup(w.cancel)
        return w

    def all_events(self, ec, since=0):
        evs, _ = ec.list_all(since_seq=since)
        return evs

    def wait_caught_up(self, w, newest):
        """With bookmarks on, a bookmark at newest or later says every
        matching event up to it was delivered."""
        return w.wait(lambda evs: any(e.seq >= newest for e in evs if is_bookmark(e)),
                      what='a bookmark at %d' % newest)


class WatchTest(_Base):
    """One noop daemon shared by the tests of this class."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.daemon = cls.start_class_daemon(driver='noop', config=FAST_STORE)

    def setUp(self):
        self.ch = self.admin_channel(self.daemon)
        self.events = EventClient(self.ch)

    def test_list_matches_the_store(self):
        tenant = uid('t')
        churn(self.ch, 5, tenant)
        settle(self.ch, tenant, 5, 'DELETED')
        listed = self.all_events(self.events)
        rows = store_events(self.daemon)
        self.assertEqual(seqs(listed), [r['seq'] for r in rows])
        by_seq = {r['seq']: r for r in rows}
        for e in listed:
            r = by_seq[e.seq]
            self.assertEqual((type_name(e), e.sandbox_id, e.tenant, e.owner, e.phase,
                              e.resource_version, e.reason),
                             (r['type_name'], r['sandbox_id'], r['tenant'], r['owner'],
                              r['phase'], r['resource_version'], r['reason']))
            self.assertGreater(e.time.seconds, 1700000000)
        mine = [e for e in listed if e.tenant == tenant]
        self.assertEqual(len({e.sandbox_id for e in mine}), 5)
        kinds = {type_name(e) for e in mine}
        self.assertLessEqual(kinds, {'ACCEPTED', 'ALLOCATION_STARTED', 'RESOURCE_CREATED',
                                     'READY', 'DELETE_REQUESTED', 'DELETED'})
        self.assertLessEqual({'ACCEPTED', 'DELETE_REQUESTED', 'DELETED'}, kinds)

    def test_from_now(self):
        tenant = uid('t')
        churn(self.ch, 2, tenant, delete=False)
        settle(self.ch, tenant, 2, 'READY')
        before = self.events.newest()
        w = self.watcher(self.events, tenant=tenant)
        ids = churn(self.ch, 3, tenant)
        settle(self.ch, tenant, 3, 'DELETED')
        want = [e for e in self.all_events(self.events, before) if e.tenant == tenant]
        got = w.wait(lambda evs: len(evs) >= len(want), what='%d events' % len(want))
        check_contiguous(self, got, want, 'from now')
        self.assertEqual({e.sandbox_id for e in got}, set(ids))
        self.assertTrue(all(e.seq > before for e in got))

    def test_resume_at_random_points(self):
        """Thousands of events; the consumer disconnects at random points
        (during replay and while live) and resumes from the last seq it
        has: the concatenation is every event exactly once."""
        seed = random.randrange(1 << 30)
        rng = random.Random(seed)
        start = self.events.newest()
        tenant = uid('t')
        n = 700
        done = threading.Event()
        errors = []

        def generate():
            try:
                # Its own connection, so the consumer's reconnects and the
                # writes do not share one.
                ch = protos.with_token(protos.insecure_channel(self.daemon.address),
                                       self.daemon.admin_token)
                try:
                    churn(ch, n, tenant)
                    settle(ch, tenant, n, 'DELETED')
                finally:
                    ch.close()
            except Exception as e:  # reported by the main thread
                errors.append(e)
            finally:
                done.set()

        gen = threading.Thread(target=generate, daemon=True)
        gen.start()
        got, last, resumes, target = [], start, 0, None
        while True:
            if target is None and done.is_set():
                self.assertFalse(errors, errors)
                target = quiet(self.events)
            if target is not None and last >= target:
                break
            k = rng.randint(1, 300)
            w = self.events.watcher(since_seq=last)
            try:
                # k events, or: the writes are over (then the loop learns
                # the final seq), or that seq is reached.
                w.wait(lambda evs: len(evs) >= k or (
                    done.is_set() and (target is None or
                                       (evs and evs[-1].seq >= target))),
                       timeout=env.scaled(60), what='%d events' % k)
                if rng.random() < 0.3:
                    time.sleep(rng.random() * 0.05)
            finally:
                w.cancel()
            evs = w.lifecycle()
            got.extend(evs)
            if evs:
                last = evs[-1].seq
            resumes += 1
        gen.join(env.scaled(60))
        want = self.all_events(self.events, start)
        self.assertGreater(len(want), 3 * n, 'the churn made fewer events than expected')
        check_contiguous(self, got, want, 'resumed %d times (seed %d)' % (resumes, seed))
        self.assertGreater(resumes, 5)

    def test_filters(self):
        ta, tb = uid('ta'), uid('tb')
        na, nb = uid('ns'), uid('ns')
        start = quiet(self.events)
        live = {
            'tenant': dict(tenant=ta),
            'namespace': dict(namespace=na),
            'types': dict(types=['READY', 'DELETED']),
            'tenant+namespace': dict(tenant=ta, namespace=na),
            'tenant+types': dict(tenant=tb, types=['ACCEPTED']),
        }
        watchers = {k: self.watcher(self.events, bookmark_interval_seconds=1, **f)
                    for k, f in live.items()}
        churn(self.ch, 4, ta, na)
        churn(self.ch, 3, ta, nb)
        ids_b = churn(self.ch, 3, tb, na)
        settle(self.ch, ta, 7, 'DELETED')
        settle(self.ch, tb, 3, 'DELETED')
        newest = quiet(self.events)
        truth = self.all_events(self.events, start)

        def expect(tenant=None, namespace=None, sandbox_id=None, types=None):
            return [e for e in truth
                    if (not tenant or e.tenant == tenant) and
                    (not namespace or e.namespace == namespace) and
                    (not sandbox_id or e.sandbox_id == sandbox_id) and
                    (not types or type_name(e) in types)]

        cases = dict(live)
        cases['sandbox'] = dict(sandbox_id=ids_b[1])
        cases['sandbox+types'] = dict(sandbox_id=ids_b[1], types=['DELETE_REQUESTED'])
        cases['nothing'] = dict(tenant=ta, namespace=na, sandbox_id=ids_b[0])
        for name, f in cases.items():
            want = expect(**f)
            if name != 'nothing':
                self.assertTrue(want, name)
            # Live, from before the events.
            if name in watchers:
                got = self.wait_caught_up(watchers[name], newest)
                check_contiguous(self, [e for e in got if not is_bookmark(e)], want,
                                 'live ' + name)
            # Replayed from history.
            w = self.watcher(self.events, since_seq=start, bookmark_interval_seconds=1, **f)
            got = self.wait_caught_up(w, newest)
            w.cancel()
            check_contiguous(self, [e for e in got if not is_bookmark(e)], want,
                             'replay ' + name)
            # Listed, in small pages.
            listed, pages = self.events.list_all(page_size=3, since_seq=start, **f)
            check_contiguous(self, listed, want, 'list ' + name)
            self.assertGreaterEqual(pages, (len(want) + 2) // 3, name)

    def test_list_paging(self):
        tenant = uid('t')
        start = self.events.newest()
        churn(self.ch, 6, tenant)
        settle(self.ch, tenant, 6, 'DELETED')
        want = [e for e in self.all_events(self.events, start) if e.tenant == tenant]
        first = self.events.list(since_seq=start, tenant=tenant, page_size=4)
        self.assertEqual(seqs(first.events), seqs(want[:4]))
        self.assertTrue(first.next_page_token)
        second = self.events.list(since_seq=start, tenant=tenant, page_size=4,
                                  page_token=first.next_page_token)
        self.assertEqual(seqs(second.events), seqs(want[4:8]))
        # A token belongs to its filters.
        for other in (dict(tenant=tenant + 'x'), dict(tenant=tenant, types=['READY']),
                      dict(tenant=tenant, since_seq=start + 1)):
            args = dict(since_seq=start, page_size=4, page_token=first.next_page_token)
            args.update(other)
            with self.assertRaises(grpc.RpcError) as cm:
                self.events.list(**args)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn('filters', cm.exception.details())
        with self.assertRaises(grpc.RpcError) as cm:
            self.events.list(page_token='not-a-token')
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        # The last page has no token; page_size is capped.
        listed, _ = self.events.list_all(page_size=5000, since_seq=start, tenant=tenant)
        check_contiguous(self, listed, want, 'one big page')

    def test_bad_requests(self):
        p = protos.get()
        for rpc in ('ListEvents', 'WatchEvents'):
            req = p.request_for('/sandgate.v1.EventService/' + rpc)
            req.types.append(42)
            call = p.method(self.ch, '/sandgate.v1.EventService/' + rpc)
            with self.assertRaises(grpc.RpcError) as cm:
                r = call(req, timeout=env.scaled(5))
                if rpc == 'WatchEvents':
                    list(r)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, rpc)
            bad = p.bad_request(p.status_details(cm.exception))
            self.assertEqual([v.field for v in bad.field_violations], ['types[0]'], rpc)
        with self.assertRaises(grpc.RpcError) as cm:
            self.events.list(page_size=-1)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_position_ahead_of_history(self):
        newest = self.events.newest()
        for call in (lambda: self.events.list(since_seq=newest + 1000),
                     lambda: list(self.events.watch(since_seq=newest + 1000,
                                                    timeout=env.scaled(5)))):
            with self.assertRaises(grpc.RpcError) as cm:
                call()
            self.assertEqual(cm.exception.code(), grpc.StatusCode.OUT_OF_RANGE)
            self.assertIn('ahead of the newest event', cm.exception.details())
        # The newest position itself is fine: nothing yet, then what comes.
        self.assertEqual(len(self.events.list(since_seq=newest).events), 0)

    def test_bookmarks(self):
        quiet_w = self.watcher(self.events, sandbox_id='sb-nothing-matches')
        w = self.watcher(self.events, sandbox_id='sb-nothing-matches',
                         bookmark_interval_seconds=1)
        tenant = uid('t')
        churn(self.ch, 3, tenant)
        settle(self.ch, tenant, 3, 'DELETED')
        newest = quiet(self.events)
        got = self.wait_caught_up(w, newest)
        self.assertTrue(got)
        for e in got:
            self.assertTrue(is_bookmark(e), e)
            # Only seq and time are set.
            self.assertEqual((e.sandbox_id, e.tenant, e.owner, e.phase, e.reason,
                              e.resource_version), ('', '', '', 0, '', 0))
            self.assertGreater(e.time.seconds, 1700000000)
        self.assertEqual(max(e.seq for e in got), newest)
        self.assertEqual(seqs(got), sorted(seqs(got)))
        # A stream that asked for none gets none (and nothing matched).
        self.assertEqual(quiet_w.events, [])


class RestartTest(_Base):
    def test_resume_across_restart(self):
        d = self.start_daemon(driver='noop', config=FAST_STORE)
        ec = self.ec(d)
        tenant = uid('t')
        start = ec.newest()
        w = self.watcher(ec)
        churn(ec.ch, 30, tenant)
        settle(ec.ch, tenant, 30, 'DELETED')
        newest = quiet(ec)
        got = w.wait_seq(newest)
        d.stop()
        code, details = w.wait_end()
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE, details)
        # Keep only a prefix, as if the consumer had processed that much.
        keep = got[:len(got) // 2]
        last = keep[-1].seq
        d.start()
        ec = self.ec(d)
        w2 = self.watcher(ec, since_seq=last)
        churn(ec.ch, 30, tenant)
        settle(ec.ch, tenant, 60, 'DELETED')
        newest = quiet(ec)
        rest = w2.wait_seq(newest)
        check_contiguous(self, keep + rest, self.all_events(ec, start),
                         'across a restart')


class RetentionTest(_Base):
    def test_out_of_range(self):
        d = self.start_daemon(driver='noop', config=dict(
            FAST_STORE, events={'retention': {'max_count': 60},
                                'watch': {'queue_limit': 16}}))
        ec = self.ec(d)
        tenant = uid('t')
        churn(ec.ch, 40, tenant)
        settle(ec.ch, tenant, 40, 'DELETED')
        # Retention runs after commits, at most every second: one more
        # write after a pause lets it catch up.
        time.sleep(1.2)
        churn(ec.ch, 1, tenant)
        settle(ec.ch, tenant, 41, 'DELETED')
        quiet(ec)
        evs = self.all_events(ec)
        oldest = evs[0].seq
        self.assertGreater(oldest, 100, 'retention removed nothing')
        self.assertLessEqual(len(evs), 60 + 30)
        for what, call in (
                ('ListEvents', lambda: ec.list(since_seq=1)),
                ('WatchEvents', lambda: list(ec.watch(since_seq=oldest - 2,
                                                     timeout=env.scaled(5))))):
            with self.assertRaises(grpc.RpcError) as cm:
                call()
            self.assertEqual(cm.exception.code(), grpc.StatusCode.OUT_OF_RANGE, what)
            m = OLDEST_RE.search(cm.exception.details())
            self.assertTrue(m, cm.exception.details())
            self.assertEqual(int(m.group(1)), oldest, what)
            self.assertEqual(int(m.group(2)), oldest - 1, what)
        # Right at the edge is fine, and starts with the oldest event.
        w = self.watcher(ec, since_seq=oldest - 1)
        got = w.wait_seq(evs[-1].seq)
        check_contiguous(self, got, evs, 'from the oldest')
        # since_seq 0 lists from the oldest retained.
        self.assertEqual(ec.list(page_size=1).events[0].seq, oldest)

    def test_replay_overtaken_by_retention(self):
        """A stalled consumer replaying history while retention removes
        what it has not read yet: once it reads again, it gets events with
        no gap, then OUT_OF_RANGE naming the oldest position."""
        d = self.start_daemon(driver='noop', config=dict(
            FAST_STORE, events={'retention': {'max_count': 50},
                                'watch': {'queue_limit': 16}}))
        ec = self.ec(d)
        slow = self.ec(d, **{'grpc.http2.lookahead_bytes': 1024,
                             'grpc.http2.bdp_probe': 0})
        tenant = uid('t')
        churn(ec.ch, 10, tenant)
        settle(ec.ch, tenant, 10, 'DELETED')
        # (since_seq 0 would mean "from now")
        start = self.all_events(ec)[0].seq
        w = self.watcher(slow, since_seq=start, read_limit=2)
        w.wait(lambda evs: len(evs) >= 2)
        for _ in range(3):
            churn(ec.ch, 20, tenant)
            time.sleep(1.1)
        churn(ec.ch, 1, tenant)
        settle(ec.ch, tenant, 71, 'DELETED')
        quiet(ec)
        oldest = self.all_events(ec)[0].seq
        self.assertGreater(oldest, start + 100)
        w.resume_reading()
        code, details = w.wait_end()
        self.assertEqual(code, grpc.StatusCode.OUT_OF_RANGE, details)
        got = w.lifecycle()
        self.assertEqual(seqs(got), list(range(start + 1, start + 1 + len(got))),
                         'what it got before the end is contiguous')
        m = OLDEST_RE.search(details)
        self.assertTrue(m, details)
        self.assertGreaterEqual(int(m.group(1)), oldest)


class SlowConsumerTest(_Base):
    def test_stalled_consumer_ends_others_unaffected(self):
        # Well above what one commit of the churn below carries (a few
        # dozen events), which lands in every live queue at once.
        limit = 128
        d = self.start_daemon(driver='noop', config=dict(
            FAST_STORE, events={'watch': {'queue_limit': limit}}))
        ec = self.ec(d)
        # A client with a small receive window, so that its stall reaches
        # the server soon; a separate connection from the healthy one.
        slow = self.ec(d, **{'grpc.http2.lookahead_bytes': 4096,
                             'grpc.http2.bdp_probe': 0})
        start = ec.newest()
        healthy = self.watcher(self.ec(d))
        stalled = self.watcher(slow, read_limit=3)
        tenant = uid('t')
        churn(ec.ch, 150, tenant, parallel=8)
        settle(ec.ch, tenant, 150, 'DELETED')
        newest = quiet(ec)
        want = self.all_events(ec, start)
        self.assertGreater(len(want), 500)
        got = healthy.wait_seq(newest)
        check_contiguous(self, got, want, 'healthy subscriber')
        self.assertIsNone(healthy.code)
        stalled.resume_reading()
        code, details = stalled.wait_end()
        self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED, details)
        m = RESUME_RE.search(details)
        self.assertTrue(m, details)
        resume = int(m.group(1))
        part = stalled.lifecycle()
        check_contiguous(self, part, want[:len(part)], 'stalled before the end')
        self.assertGreaterEqual(part[-1].seq, resume)
        self.assertGreaterEqual(resume, part[2].seq)
        self.assertLess(resume, newest)
        # Resuming where it says (or from what it has) loses nothing.
        w = self.watcher(ec, since_seq=resume)
        rest = w.wait_seq(newest)
        check_contiguous(self, [e for e in part if e.seq <= resume] + rest, want,
                         'resumed after RESOURCE_EXHAUSTED')


class AuthzTest(_Base):
    TOKENS = {'admin': 'adm-' + uuid.uuid4().hex, 'alice': 'al-' + uuid.uuid4().hex,
              'bob': 'bob-' + uuid.uuid4().hex, 'carol': 'ca-' + uuid.uuid4().hex}

    def policy(self, alice_tenants=('team-a',), alice_events=True):
        roles = {
            'admin': role(['sandboxes.*', 'events.*'], 'any', tenants=['*'], projects=['*'],
                          driver_config={'fields': ['*']}),
            'reader': role(['events.*'] if alice_events else ['sandboxes.get'], 'tenant',
                           tenants=list(alice_tenants), projects=['*']),
            'owner': role(['sandboxes.*', 'events.*'], 'own', tenants=['*'], projects=['*']),
            'blind': role(['sandboxes.get'], 'any', tenants=['*'], projects=['*']),
        }
        bindings = [{'roles': [r], 'subjects': [{'token': who}]}
                    for who, r in (('admin', 'admin'), ('alice', 'reader'),
                                   ('bob', 'owner'), ('carol', 'blind'))]
        return policy(roles=roles, bindings=bindings, static_tokens=list(self.TOKENS.items()))

    def test_per_event_and_reload(self):
        d = self.start_daemon(driver='noop', config=FAST_STORE, policy=self.policy())
        admin = self.ec(d, token=self.TOKENS['admin'])
        alice = self.ec(d, token=self.TOKENS['alice'])
        bob = self.ec(d, token=self.TOKENS['bob'])
        carol = self.ec(d, token=self.TOKENS['carol'])
        with self.assertRaises(grpc.RpcError) as cm:
            list(carol.watch(timeout=env.scaled(5)))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        with self.assertRaises(grpc.RpcError) as cm:
            carol.list()
        self.assertEqual(cm.exception.code(), grpc.StatusCode.PERMISSION_DENIED)

        wa = self.watcher(alice, bookmark_interval_seconds=1)
        wb = self.watcher(bob, bookmark_interval_seconds=1)
        churn(admin.ch, 3, 'team-a')
        churn(admin.ch, 3, 'team-b')
        bob_ids = churn(bob.ch, 2, 'team-c')
        for t, n in (('team-a', 3), ('team-b', 3)):
            settle(admin.ch, t, n, 'DELETED')
        settle(admin.ch, 'team-c', 2, 'DELETED')
        newest = quiet(admin)
        truth = self.all_events(admin)
        got = [e for e in self.wait_caught_up(wa, newest) if not is_bookmark(e)]
        check_contiguous(self, got, [e for e in truth if e.tenant == 'team-a'], 'alice')
        got = [e for e in self.wait_caught_up(wb, newest) if not is_bookmark(e)]
        check_contiguous(self, got, [e for e in truth if e.sandbox_id in bob_ids], 'bob')
        listed, _ = alice.list_all(page_size=4)
        check_contiguous(self, listed, [e for e in truth if e.tenant == 'team-a'],
                         'alice lists')
        replayed = self.watcher(alice, since_seq=1, bookmark_interval_seconds=1)
        got = [e for e in self.wait_caught_up(replayed, newest) if not is_bookmark(e)]
        check_contiguous(self, got, [e for e in truth if e.tenant == 'team-a' and e.seq > 1],
                         'alice replays')

        # Alice now reads team-b: her open stream follows the reload.
        d.reload(self.policy(alice_tenants=('team-b',)))
        wait_for(lambda: any(e.tenant == 'team-b' for e in alice.list().events),
                 env.scaled(20), 'the reloaded policy')
        mark = quiet(admin)
        churn(admin.ch, 2, 'team-a')
        churn(admin.ch, 2, 'team-b')
        settle(admin.ch, 'team-a', 5, 'DELETED')
        settle(admin.ch, 'team-b', 5, 'DELETED')
        newest = quiet(admin)
        after = [e for e in self.all_events(admin, mark)]
        got = [e for e in self.wait_caught_up(wa, newest)
               if not is_bookmark(e) and e.seq > mark]
        check_contiguous(self, got, [e for e in after if e.tenant == 'team-b'],
                         'alice after the reload')

        # Her events permission goes: the open stream ends.
        d.reload(self.policy(alice_events=False))
        code, details = wa.wait_end()
        self.assertEqual(code, grpc.StatusCode.PERMISSION_DENIED, details)
        self.assertIn('events.watch', details)
        self.assertIsNone(wb.code)
