"""The sandgate.v1 services, unknown methods, message limits, access log."""
import json
import time
import unittest

import grpc

from sgtest import env
from sgtest.daemon import DaemonTestCase

MAX_RECV = 64 * 1024
MAX_METADATA = 16 * 1024

# Every sandgate.v1 RPC answers UNIMPLEMENTED until its handler lands; an
# RPC that gets implemented moves out of this set (by full name) and into
# its own tests.
IMPLEMENTED = {
    'sandgate.v1.SandboxService.CreateSandbox',
    'sandgate.v1.SandboxService.GetSandbox',
    'sandgate.v1.SandboxService.ListSandboxes',
    'sandgate.v1.SandboxService.DeleteSandbox',
    'sandgate.v1.CredentialService.CreateCredential',
    'sandgate.v1.CredentialService.GetCredential',
    'sandgate.v1.CredentialService.ListCredentials',
    'sandgate.v1.CredentialService.DeleteCredential',
    'sandgate.v1.CredentialService.CheckCredential',
    'sandgate.v1.EventService.WatchEvents',
    'sandgate.v1.EventService.ListEvents',
}


def call_any(protos, channel, method, timeout):
    """Call a method of any kind with one empty request; returns the
    responses (list) or raises grpc.RpcError."""
    path = '/%s/%s' % (method.containing_service.full_name, method.name)
    call = protos.method(channel, path)
    req = protos.cls(method.input_type.full_name)()
    if method.client_streaming:
        resp = call(iter([req]), timeout=timeout)
    else:
        resp = call(req, timeout=timeout)
    return list(resp) if method.server_streaming else [resp]


class ServicesTest(DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.daemon = cls.start_class_daemon(
            config={'server': {'max_receive_message_bytes': MAX_RECV,
                               'max_metadata_bytes': MAX_METADATA}})

    def setUp(self):
        # The admin token (when the daemon has one) gets every call past
        # authentication; test_authz covers the callers that lack it.
        self.ch = self.admin_channel(self.daemon)

    def test_every_sandgate_rpc_unimplemented(self):
        methods = [m for s in self.protos.sandgate_services() for m in s.methods]
        self.assertGreaterEqual(len(methods), 13, [m.full_name for m in methods])
        kinds = set()
        for m in methods:
            if m.full_name in IMPLEMENTED:
                continue
            kinds.add((m.client_streaming, m.server_streaming))
            with self.subTest(method=m.full_name):
                e = self.assertRpcCode(grpc.StatusCode.UNIMPLEMENTED, call_any, self.protos,
                                       self.ch, m, env.scaled(5))
                # Details, when sent, must agree with the status.
                st = self.protos.status_details(e)
                if st is not None:
                    self.assertEqual(st.code, grpc.StatusCode.UNIMPLEMENTED.value[0], st)
        # server stream and bidi were both exercised (every unary RPC is
        # implemented)
        self.assertTrue({(False, True), (True, True)} <= kinds, kinds)

    def test_unknown_methods_unimplemented_promptly(self):
        for path in ['/sandgate.v1.SandboxService/NoSuchMethod', '/no.such.Service/Method',
                     '/grpc.health.v1.Health/Nope', '/x']:
            with self.subTest(path=path):
                call = self.ch.unary_unary(path)
                t0 = time.monotonic()
                self.assertRpcCode(grpc.StatusCode.UNIMPLEMENTED, call, b'', timeout=10)
                took = time.monotonic() - t0
                self.assertLess(took, env.scaled(2), '%s took %.2fs' % (path, took))

    def test_unknown_method_with_streaming_client(self):
        call = self.ch.stream_stream('/no.such.Service/Stream')
        t0 = time.monotonic()
        with self.assertRaises(grpc.RpcError) as cm:
            list(call(iter([b'a', b'b']), timeout=10))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        self.assertLess(time.monotonic() - t0, env.scaled(2))

    def test_oversize_message_rejected(self):
        p = self.protos
        big = 'x' * (MAX_RECV + 4096)
        self.assertRpcCode(grpc.StatusCode.RESOURCE_EXHAUSTED, p.health_check, self.ch, big)
        # Just under the limit reaches the handler, which knows no such service.
        self.assertRpcCode(grpc.StatusCode.NOT_FOUND, p.health_check, self.ch,
                           'y' * (MAX_RECV - 1024))
        # The server is fine afterwards, on the same channel.
        self.assertEqual(p.health_check(self.ch, ''), 'SERVING')

    def test_oversize_on_a_stream(self):
        p = self.protos
        path = '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo'
        req = p.msg('grpc.reflection.v1.ServerReflectionRequest',
                    file_by_filename='z' * (MAX_RECV + 10))
        with self.assertRaises(grpc.RpcError) as cm:
            list(p.method(self.ch, path)(iter([req]), timeout=10))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)

    def test_metadata_limit(self):
        p = self.protos
        # Above gRPC's built-in 8 KiB, below the configured limit: accepted.
        self.assertEqual(p.health_check(self.ch, '', metadata=[('x-big', 'a' * 12000)]),
                         'SERVING')
        # Above the configured limit: refused.
        with self.assertRaises(grpc.RpcError) as cm:
            p.health_check(self.ch, '', metadata=[('x-big', 'a' * (MAX_METADATA + 4096))])
        self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED,
                         cm.exception.details())
        # gRPC may close that connection; the server goes on for new ones.
        self.assertEqual(p.health_check(self.channel(self.daemon.address), ''), 'SERVING')

    @unittest.skip('needs a slow method; every sandgate.v1 RPC answers at once for now')
    def test_default_deadline(self):
        pass

    def test_garbage_payload_rejected(self):
        # Bytes that are not a valid HealthCheckRequest (a truncated length).
        # The daemon must answer with an error (INVALID_ARGUMENT, or INTERNAL
        # as several gRPC implementations do) and stay healthy.
        call = self.ch.unary_unary('/grpc.health.v1.Health/Check')
        with self.assertRaises(grpc.RpcError) as cm:
            call(b'\x0a\xff\xff\xff', timeout=10)
        self.assertIn(cm.exception.code(), (grpc.StatusCode.INVALID_ARGUMENT,
                                            grpc.StatusCode.INTERNAL), cm.exception.details())
        self.assertEqual(self.protos.health_check(self.ch, ''), 'SERVING')


class AccessLogTest(DaemonTestCase):
    """One JSON line per call, category server.access."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.daemon = cls.start_class_daemon(config={'log': {'access_log': True,
                                                            'format': 'json'}})

    def access_records(self, method):
        out = []
        for r in self.daemon.log_records():
            if r.get('cat') == 'server.access' and str(r.get('method', '')).lstrip('/') == \
                    method.lstrip('/'):
                out.append(r)
        return out

    def wait_records(self, method, n, timeout=5):
        deadline = time.monotonic() + env.scaled(timeout)
        recs = self.access_records(method)
        while len(recs) < n and time.monotonic() < deadline:
            time.sleep(0.05)
            recs = self.access_records(method)
        time.sleep(0.2)  # and no more than n
        return self.access_records(method)

    def test_one_line_per_call(self):
        ch = self.admin_channel(self.daemon)
        p = self.protos
        # Still unimplemented: it answers UNIMPLEMENTED past authentication.
        method = '/sandgate.v1.SandboxService/StreamSandboxLogs'
        call = p.method(ch, method)
        for _ in range(3):
            with self.assertRaises(grpc.RpcError):
                list(call(p.request_for(method), timeout=10))
        recs = self.wait_records(method, 3)
        self.assertEqual(len(recs), 3, 'access lines for %s: %s\n%s'
                         % (method, recs, self.daemon.tail()))
        for r in recs:
            self.assertEqual(status_code(r.get('status')), 12, r)
            self.assert_common(r)

    def test_ok_call_logged(self):
        ch = self.channel(self.daemon.address)
        before = len(self.access_records('/grpc.health.v1.Health/Check'))
        self.assertEqual(self.protos.health_check(ch, 'sandgate.v1.EventService'), 'SERVING')
        recs = self.wait_records('/grpc.health.v1.Health/Check', before + 1)
        self.assertGreaterEqual(len(recs), before + 1, self.daemon.tail())
        r = recs[-1]
        self.assertEqual(status_code(r.get('status')), 0, r)
        self.assert_common(r)

    def test_stream_call_logged(self):
        ch = self.channel(self.daemon.address)
        method = '/grpc.health.v1.Health/Watch'
        stream = self.protos.health_watch(ch, '', timeout=10)
        next(stream)
        stream.cancel()
        recs = self.wait_records(method, 1)
        self.assertEqual(len(recs), 1, self.daemon.tail())
        self.assert_common(recs[0])
        self.assertEqual(status_code(recs[0].get('status')), 1, recs[0])  # CANCELLED

    def test_stream_past_deadline_logged_as_deadline_exceeded(self):
        ch = self.channel(self.daemon.address)
        method = '/grpc.health.v1.Health/Watch'
        before = len(self.access_records(method))
        stream = self.protos.health_watch(ch, 'sandgate.v1.SandboxService', timeout=0.5)
        with self.assertRaises(grpc.RpcError) as cm:
            for _ in stream:
                pass
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        recs = self.wait_records(method, before + 1)
        self.assertEqual(len(recs), before + 1, self.daemon.tail())
        self.assertEqual(status_code(recs[-1].get('status')), 4, recs[-1])

    def test_unknown_method_logged(self):
        ch = self.channel(self.daemon.address)
        method = '/no.such.Service/LoggedMethod'
        with self.assertRaises(grpc.RpcError):
            ch.unary_unary(method)(b'', timeout=10)
        recs = self.wait_records(method, 1)
        self.assertEqual(len(recs), 1, self.daemon.tail())
        self.assertEqual(status_code(recs[0].get('status')), 12, recs[0])

    def test_every_stderr_line_is_json(self):
        ch = self.channel(self.daemon.address)
        self.protos.health_check(ch, '')
        for line in self.daemon.stderr_text().splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                self.fail('stderr line is not JSON: %r' % line)
            for k in ('ts', 'level', 'cat', 'msg'):
                self.assertIn(k, rec, line)

    def assert_common(self, r):
        for k in ('ts', 'level', 'cat', 'msg', 'method', 'peer', 'status', 'duration_ms'):
            self.assertIn(k, r, r)
        self.assertIn('127.0.0.1', str(r['peer']), r)
        d = r['duration_ms']
        if isinstance(d, str):
            d = float(d)
        self.assertIsInstance(d, (int, float), r)
        self.assertGreaterEqual(d, 0, r)
        self.assertLess(d, 60000, r)


CODES = {c.name: c.value[0] for c in grpc.StatusCode}


def status_code(v):
    """A status as logged (name, number, or numeric string) as a number."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    s = str(v).strip()
    if s.isdigit():
        return int(s)
    return CODES.get(s.upper().replace(' ', '_'))


if __name__ == '__main__':
    unittest.main()
