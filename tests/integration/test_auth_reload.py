"""Policy reload (SIGHUP) under load.

Four threads call the daemon without pause: one call the flipping
permission decides (ListSandboxes by 'flipper', allowed by policy A, denied
by B), one it decides the other way (CreateSandbox by 'flipper'), and two
whose answer no policy here changes. Meanwhile the policy file is replaced
and SIGHUP sent, several times, with broken files in between.

Each call is timed on the client. For a reload, the switch happens inside
a window that opens when the signal is sent and closes when a probe first
sees the new policy (for a broken file: when the daemon has logged the
error). A call that ended before the window must have the old policy's
answer, one that started after it the new one's, one that overlaps it
either. Every call must complete, with one of those answers."""
import os
import re
import threading
import time
import unittest
import uuid

from sgtest import env, rpcs
from sgtest import jwt as sgjwt
from sgtest.authfix import bind_subjects, keydir, policy, role
from sgtest.daemon import DaemonTestCase
from sgtest.sandboxes import sandbox

ISS = 'https://reload.test'
OK, PD, NF = 'OK', 'PERMISSION_DENIED', 'NOT_FOUND'

# What each kind of call answers under policy A and under policy B.
EXPECT = {
    'flip-list': {'A': OK, 'B': PD},
    'flip-create': {'A': PD, 'B': OK},
    'nobody-list': {'A': PD, 'B': PD},
    'steady-get': {'A': OK, 'B': OK},
}

BROKEN = {
    # YAML that does not parse.
    'syntax': 'roles:\n  flip: [unterminated\nbindings: []\n',
    # A binding naming a role that does not exist (see policy_text()).
    'unknown-role': None,
    # A key the policy does not know.
    'unknown-key': None,
}


class ReloadUnderLoadTest(DaemonTestCase):
    def policies(self, issuer):
        flip_a = role(['sandboxes.list', 'sandboxes.get'], 'any', tenants=['*'], projects=['*'])
        flip_b = role(['sandboxes.create', 'sandboxes.get'], 'own', tenants=['*'],
                      projects=['*'])
        steady = role(['sandboxes.*'], 'any', tenants=['*'], projects=['*'])
        bindings = bind_subjects(ISS, {'flipper': 'flip', 'steady': 'steady'})
        a = policy([issuer], {'flip': flip_a, 'steady': steady}, bindings)
        b = policy([issuer], {'flip': flip_b, 'steady': steady}, bindings)
        unknown_role = policy([issuer], {'flip': flip_b, 'steady': steady},
                              bindings + [{'roles': ['no-such-role'],
                                           'subjects': [{'issuer': ISS, 'subject': 'x'}]}])
        unknown_key = policy([issuer], {'flip': dict(flip_b, bogus_scope=['x']),
                                        'steady': steady}, bindings)
        return {'A': a, 'B': b, 'unknown-role': unknown_role, 'unknown-key': unknown_key,
                'syntax': BROKEN['syntax']}

    def test_sighup_under_load(self):
        base = os.path.join(env.WORK_DIR, 'reload-keys')
        issuer = sgjwt.Issuer(ISS, [sgjwt.Key.rsa('r-1')], algorithms=['RS256'])
        issuer.write_jwks(os.path.join(keydir(base), 'jwks.json'))
        pol = self.policies(issuer)
        d = self.start_daemon(driver='noop', policy=pol['A'])
        tokens = {s: issuer.token(s, lifetime=3600) for s in ('flipper', 'steady', 'nobody')}
        steady_ch = self.channel(d.address, token=tokens['steady'])
        target = rpcs.invoke(steady_ch, 'CreateSandbox', {'sandbox': sandbox('reload-target')})
        self.assertEqual(target.code, OK, '%r\n%s' % (target, d.tail()))
        target_id = target.response.id

        calls = {
            'flip-list': ('flipper', 'ListSandboxes', lambda: {'pageSize': 1}),
            'flip-create': ('flipper', 'CreateSandbox',
                            lambda: {'sandbox': sandbox('f-' + uuid.uuid4().hex[:10])}),
            'nobody-list': ('nobody', 'ListSandboxes', lambda: {'pageSize': 1}),
            'steady-get': ('steady', 'GetSandbox', lambda: {'id': target_id}),
        }
        records = []            # (kind, t0, t1, code, details)
        started = {k: 0 for k in calls}
        lock = threading.Lock()
        stop = threading.Event()
        crashed = []

        def worker(kind):
            who, rpc, body = calls[kind]
            ch = self.channel(d.address, token=tokens[who])
            try:
                while not stop.is_set():
                    with lock:
                        started[kind] += 1
                    t0 = time.monotonic()
                    out = rpcs.invoke(ch, rpc, body(), timeout=env.scaled(15))
                    t1 = time.monotonic()
                    with lock:
                        records.append((kind, t0, t1, out.code, out.details))
            except Exception as e:  # noqa: BLE001 - reported below
                crashed.append('%s: %r' % (kind, e))

        threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in calls]
        for t in threads:
            t.start()

        probe_ch = self.channel(d.address, token=tokens['flipper'])

        def probe():
            return rpcs.invoke(probe_ch, 'ListSandboxes', {'pageSize': 1}).code

        # (name written, policy in force after it)
        steps = [('B', 'B'), ('A', 'A'), ('syntax', 'A'), ('B', 'B'), ('unknown-role', 'B'),
                 ('A', 'A'), ('unknown-key', 'A'), ('B', 'B')]
        current = 'A'
        phases = []             # (window start, window end, old, new)
        self.wait_for_load(records, lock, 0, 40)
        try:
            for name, after in steps:
                n_before = len(records)
                log_before = len(d.stderr_text())
                d.write_policy(pol[name])
                t_sig = time.monotonic()
                d.reload()
                if name in ('A', 'B'):
                    want = EXPECT['flip-list'][name]
                    deadline = time.monotonic() + env.scaled(10)
                    while probe() != want:
                        self.assertLess(time.monotonic(), deadline,
                                        'policy %s not in force 10 s after SIGHUP\n%s'
                                        % (name, d.tail()))
                        time.sleep(0.005)
                    t_end = time.monotonic()
                else:
                    t_end = self.wait_reload_error(d, log_before, name)
                    self.assertEqual(probe(), EXPECT['flip-list'][current],
                                     'a broken policy (%s) changed the answers' % name)
                phases.append((t_sig, t_end, current, after))
                current = after
                # Let the load run under the new state for a while.
                self.wait_for_load(records, lock, n_before, 60, min_seconds=0.3)
                self.assertTrue(d.running(), d.tail())
        finally:
            stop.set()
            for t in threads:
                t.join(env.scaled(30))
        self.assertFalse([t for t in threads if t.is_alive()], 'a worker hung')
        self.assertEqual(crashed, [])
        self.assertEqual(sum(started.values()), len(records), 'calls that never completed')

        problems = []
        overlapping = [0] * len(phases)  # calls in flight across each reload
        for kind, t0, t1, code, details in records:
            allowed = set()
            state = 'A'
            for i, (w0, w1, old, new) in enumerate(phases):
                if t1 < w0:
                    break
                if t0 > w1:
                    state = new
                    continue
                allowed |= {EXPECT[kind][old], EXPECT[kind][new]}
                overlapping[i] += 1
                state = new
                break
            else:
                allowed.add(EXPECT[kind][state])
            if not allowed:
                allowed.add(EXPECT[kind][state])
            if code not in allowed:
                problems.append('%s at %+.3fs..%+.3fs: %s %r (allowed %s)'
                                % (kind, t0 - phases[0][0], t1 - phases[0][0], code,
                                   details[:120], sorted(allowed)))
        if problems:
            self.fail('%d of %d calls had an answer neither policy gives (first 20):\n%s'
                      % (len(problems), len(records), '\n'.join(problems[:20])))
        # The reloads happened under load: calls were in flight across each.
        self.assertTrue(all(overlapping), 'calls in flight across each reload: %s'
                        % overlapping)
        # Every kind of call ran throughout.
        for kind in calls:
            n = sum(1 for r in records if r[0] == kind)
            self.assertGreaterEqual(n, 2 * len(steps), '%s: only %d calls' % (kind, n))

    def wait_for_load(self, records, lock, since, n, min_seconds=0.0):
        t0 = time.monotonic()
        deadline = t0 + env.scaled(20)
        while time.monotonic() < deadline:
            with lock:
                if len(records) - since >= n and time.monotonic() - t0 >= min_seconds:
                    return
            time.sleep(0.01)
        self.fail('the workers made fewer than %d calls in 20 s' % n)

    def wait_reload_error(self, d, log_offset, name):
        """Wait for the daemon to log that the policy did not load; returns
        the time it appeared. The message must name the file and a line."""
        deadline = time.monotonic() + env.scaled(10)
        pat = re.compile(re.escape(os.path.basename(d.policy_path)) + r':\d+')
        while time.monotonic() < deadline:
            new = d.stderr_text()[log_offset:]
            if pat.search(new):
                if name == 'unknown-role':
                    self.assertIn('no-such-role', new)
                if name == 'unknown-key':
                    self.assertIn('bogus_scope', new)
                return time.monotonic()
            time.sleep(0.01)
        self.fail('no log line naming %s:LINE after a SIGHUP with a broken (%s) policy:\n%s'
                  % (os.path.basename(d.policy_path), name, d.tail()))


if __name__ == '__main__':
    unittest.main()
