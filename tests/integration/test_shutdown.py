"""Signals. SIGTERM: health goes NOT_SERVING, open streams end with
UNAVAILABLE, unary calls in flight complete or fail cleanly, exit 0.
SIGHUP: log settings are reloaded; a bad file keeps the old settings."""
import signal
import threading
import time
import unittest

import grpc

from sgtest import env
from sgtest.daemon import DaemonTestCase

DRAIN_MS = 2000


class ShutdownTest(DaemonTestCase):
    def start(self):
        return self.start_daemon(config={'server': {'drain_timeout_ms': DRAIN_MS}})

    def test_watch_sees_not_serving_then_unavailable(self):
        d = self.start()
        ch = self.channel(d.address)
        names = ['', 'sandgate.v1.SandboxService']
        streams = [self.protos.health_watch(ch, n, timeout=env.scaled(30)) for n in names]
        for name, s in zip(names, streams):
            first = next(s)
            self.assertEqual(self.protos.health_status_name(first.status), 'SERVING',
                             'first Watch(%r) message' % name)
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        for name, s in zip(names, streams):
            seen = []
            with self.assertRaises(grpc.RpcError,
                                   msg='Watch(%r) must end with an error status' % name) as cm:
                for m in s:
                    seen.append(self.protos.health_status_name(m.status))
            self.assertIn('NOT_SERVING', seen,
                          'Watch(%r) got %s before it ended with %s %r\n%s'
                          % (name, seen, cm.exception.code(), cm.exception.details(), d.tail()))
            self.assertEqual(seen[-1], 'NOT_SERVING', 'Watch(%r) messages %s' % (name, seen))
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE,
                             'Watch(%r) ended with %s %r' % (name, cm.exception.code(),
                                                             cm.exception.details()))
        ended = time.monotonic() - t0
        self.assertLess(ended, env.scaled(DRAIN_MS / 1000.0 + 5),
                        'streams took %.1fs to end after SIGTERM' % ended)
        rc = d.wait(env.scaled(DRAIN_MS / 1000.0 + 15))
        self.assertEqual(rc, 0, d.tail())

    def test_new_calls_after_sigterm_fail_unavailable_or_see_not_serving(self):
        d = self.start()
        ch = self.channel(d.address)
        stream = self.protos.health_watch(ch, '', timeout=env.scaled(30))
        next(stream)  # the connection is up
        d.signal(signal.SIGTERM)
        # Once the daemon has told watchers, Check must not claim SERVING.
        for m in stream:
            if self.protos.health_status_name(m.status) == 'NOT_SERVING':
                break
        try:
            status = self.protos.health_check(ch, '', timeout=5)
            self.assertEqual(status, 'NOT_SERVING')
        except grpc.RpcError as e:
            self.assertEqual(e.code(), grpc.StatusCode.UNAVAILABLE, e.details())
        stream.cancel()
        self.assertEqual(d.wait(env.scaled(DRAIN_MS / 1000.0 + 15)), 0, d.tail())

    def test_sigterm_with_unary_calls_in_flight(self):
        d = self.start()
        p = self.protos
        n_threads = 12
        channels = [self.channel(d.address) for _ in range(4)]
        stop = threading.Event()
        lock = threading.Lock()
        outcomes = []        # (start, end, code name, status or details)
        sigterm_at = [None]  # monotonic time SIGTERM was sent

        def worker(i):
            ch = channels[i % len(channels)]
            call = p.method(ch, '/grpc.health.v1.Health/Check')
            req = p.msg('grpc.health.v1.HealthCheckRequest', service='')
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    resp = call(req, timeout=env.scaled(10))
                    rec = (t0, time.monotonic(), 'OK', p.health_status_name(resp.status))
                except grpc.RpcError as e:
                    rec = (t0, time.monotonic(), e.code().name, e.details())
                with lock:
                    outcomes.append(rec)
                if rec[2] != 'OK' and sigterm_at[0] is not None:
                    return  # the server is going away; this worker is done

        threads = [threading.Thread(target=worker, args=(i,), daemon=True)
                   for i in range(n_threads)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + env.scaled(20)
        while time.monotonic() < deadline:
            with lock:
                if sum(1 for o in outcomes if o[2] == 'OK') >= 300:
                    break
            time.sleep(0.01)
        with lock:
            sigterm_at[0] = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.wait(env.scaled(DRAIN_MS / 1000.0 + 15))
        # Let the workers see the closed server, then stop them.
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(env.scaled(15))
            self.assertFalse(t.is_alive(), 'a client call hung after shutdown')
        self.assertEqual(rc, 0, d.tail())

        t_sig = sigterm_at[0]
        before = [o for o in outcomes if o[1] < t_sig]
        self.assertGreaterEqual(sum(1 for o in before if o[2] == 'OK'), 300,
                                'calls before SIGTERM did not succeed: %s' % before[-5:])
        before_fail = [o for o in before if o[2] != 'OK']
        if before_fail:
            self.fail('calls failed before SIGTERM: %s' % before_fail[:10])

        def show(os_):
            return [('%+.3fs' % (o[0] - t_sig), '%.3fs' % (o[1] - o[0]), o[2], o[3])
                    for o in os_[:10]]
        across = [o for o in outcomes if o[1] >= t_sig]
        self.assertTrue(across, 'no call was in flight across SIGTERM')
        bad = [o for o in across if o[2] not in ('OK', 'UNAVAILABLE')]
        if bad:
            self.fail('calls across SIGTERM that neither completed nor failed '
                      'UNAVAILABLE (start rel. to SIGTERM, duration, code, detail; first 10 '
                      'of %d): %s' % (len(bad), show(bad)))
        bad_status = [o for o in across if o[2] == 'OK'
                      and o[3] not in ('SERVING', 'NOT_SERVING')]
        if bad_status:
            self.fail('OK calls with an odd status: %s' % show(bad_status))
        slow = [o for o in outcomes if o[1] - o[0] > env.scaled(DRAIN_MS / 1000.0 + 3)]
        if slow:
            self.fail('calls that took longer than the drain timeout: %s' % show(slow))

    def test_sigint_also_stops_cleanly(self):
        d = self.start()
        d.signal(signal.SIGINT)
        self.assertEqual(d.wait(env.scaled(DRAIN_MS / 1000.0 + 15)), 0, d.tail())

    def test_idle_shutdown_is_prompt(self):
        d = self.start_daemon(config={'server': {'drain_timeout_ms': 8000}})
        ch = self.channel(d.address)
        self.assertEqual(self.protos.health_check(ch, ''), 'SERVING')
        ch.close()
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.wait(env.scaled(20))
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, d.tail())
        # With nothing in flight there is nothing to drain.
        self.assertLess(took, env.scaled(2), 'shutdown took %.1fs' % took)

    def test_idle_open_connection_does_not_delay_exit(self):
        # A client that keeps its channel open but has no call in flight
        # must not hold the daemon up until the drain timeout.
        d = self.start_daemon(config={'server': {'drain_timeout_ms': 8000}})
        ch = self.channel(d.address)
        self.assertEqual(self.protos.health_check(ch, ''), 'SERVING')
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.wait(env.scaled(20))
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, d.tail())
        self.assertLess(took, env.scaled(3), 'shutdown took %.1fs with an idle client '
                        'connection open' % took)


class ReloadTest(DaemonTestCase):
    def access_lines(self, d, method):
        return [r for r in d.log_records() if r.get('cat') == 'server.access'
                and str(r.get('method', '')).lstrip('/') == method.lstrip('/')]

    def calls(self, d, method, n=3):
        ch = self.channel(d.address)
        call = ch.unary_unary(method)
        for _ in range(n):
            with self.assertRaises(grpc.RpcError):
                call(b'', timeout=10)

    def wait_lines(self, d, method, n, timeout=5):
        deadline = time.monotonic() + env.scaled(timeout)
        while len(self.access_lines(d, method)) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        return self.access_lines(d, method)

    def test_sighup_reloads_access_log_setting(self):
        d = self.start_daemon(config={'log': {'access_log': True}})
        self.calls(d, '/no.such.Service/Before')
        self.assertEqual(len(self.wait_lines(d, '/no.such.Service/Before', 3)), 3, d.tail())

        d.rewrite_config({'log': {'access_log': False}})
        d.signal(signal.SIGHUP)
        time.sleep(env.scaled(1.0))
        self.calls(d, '/no.such.Service/Off')
        time.sleep(env.scaled(0.5))
        self.assertEqual(self.access_lines(d, '/no.such.Service/Off'), [],
                         'access log still on after SIGHUP\n' + d.tail())

        d.rewrite_config({'log': {'access_log': True}})
        d.signal(signal.SIGHUP)
        time.sleep(env.scaled(1.0))
        self.calls(d, '/no.such.Service/On')
        self.assertEqual(len(self.wait_lines(d, '/no.such.Service/On', 3)), 3,
                         'access log not back on after SIGHUP\n' + d.tail())
        self.assertEqual(self.protos.health_check(self.channel(d.address), ''), 'SERVING')

    def test_sighup_with_broken_config_keeps_running(self):
        d = self.start_daemon(config={'log': {'access_log': True}})
        d.rewrite_config(text='log:\n  access_log: [unterminated\n')
        d.signal(signal.SIGHUP)
        time.sleep(env.scaled(1.0))
        self.assertTrue(d.running(), d.tail())
        self.assertEqual(self.protos.health_check(self.channel(d.address), ''), 'SERVING')
        # The old settings stay: the access log is still on.
        self.calls(d, '/no.such.Service/StillLogged', 1)
        self.assertEqual(len(self.wait_lines(d, '/no.such.Service/StillLogged', 1)), 1,
                         d.tail())

    def test_repeated_sighup(self):
        d = self.start_daemon()
        ch = self.channel(d.address)
        for _ in range(10):
            d.signal(signal.SIGHUP)
            self.assertEqual(self.protos.health_check(ch, ''), 'SERVING')
        self.assertTrue(d.running(), d.tail())


if __name__ == '__main__':
    unittest.main()
