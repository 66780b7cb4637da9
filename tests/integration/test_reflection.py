"""Server reflection, v1 and v1alpha (grpcurl's and buf curl's view)."""
import unittest

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool

from sgtest.daemon import DaemonTestCase

EXPECTED_SERVICES = {
    'grpc.health.v1.Health',
    'grpc.reflection.v1.ServerReflection',
    'grpc.reflection.v1alpha.ServerReflection',
    'sandgate.v1.SandboxService',
    'sandgate.v1.CredentialService',
    'sandgate.v1.EventService',
}

VERSIONS = ['v1', 'v1alpha']


def load_into_fresh_pool(files):
    """Add serialized FileDescriptorProtos to an empty pool, dependencies
    first. Raises AssertionError naming any import that is missing."""
    protos = {}
    for raw in files:
        fdp = descriptor_pb2.FileDescriptorProto.FromString(raw)
        protos[fdp.name] = fdp
    pool = descriptor_pool.DescriptorPool()
    added = set()
    pending = dict(protos)
    while pending:
        ready = [n for n, f in pending.items() if all(d in added for d in f.dependency)]
        if not ready:
            missing = sorted({d for f in pending.values() for d in f.dependency
                              if d not in protos})
            raise AssertionError('reflection answer lacks imports %s (got %s)'
                                 % (missing, sorted(protos)))
        for n in sorted(ready):
            pool.Add(pending.pop(n))
            added.add(n)
    return pool, protos


class ReflectionTest(DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.daemon = cls.start_class_daemon()

    def setUp(self):
        self.ch = self.channel(self.daemon.address)

    def reflect(self, version, requests, timeout=10):
        """Send requests (dicts of ServerReflectionRequest fields) on one
        ServerReflectionInfo stream; returns the responses."""
        p = self.protos
        pkg = 'grpc.reflection.%s' % version
        call = p.method(self.ch, '/%s.ServerReflection/ServerReflectionInfo' % pkg)
        reqs = [p.msg(pkg + '.ServerReflectionRequest', host='', **r) for r in requests]
        responses = list(call(iter(reqs), timeout=timeout))
        self.assertEqual(len(responses), len(reqs),
                         'one response per request expected, got %s' % responses)
        return responses

    def one(self, version, **req):
        return self.reflect(version, [req])[0]

    def test_list_services(self):
        for v in VERSIONS:
            with self.subTest(version=v):
                r = self.one(v, list_services='')
                self.assertEqual(r.WhichOneof('message_response'), 'list_services_response', r)
                names = [s.name for s in r.list_services_response.service]
                self.assertEqual(len(names), len(set(names)), 'duplicates in %s' % names)
                self.assertEqual(set(names), EXPECTED_SERVICES)

    def check_service_resolves(self, version, symbol, service):
        r = self.one(version, file_containing_symbol=symbol)
        self.assertEqual(r.WhichOneof('message_response'), 'file_descriptor_response',
                         'file_containing_symbol(%s): %s' % (symbol, r))
        files = list(r.file_descriptor_response.file_descriptor_proto)
        pool, _ = load_into_fresh_pool(files)
        got = pool.FindServiceByName(service)
        want = self.protos.pool.FindServiceByName(service)
        self.assertEqual(sorted(m.name for m in got.methods),
                         sorted(m.name for m in want.methods))
        for m in want.methods:
            gm = got.methods_by_name[m.name]
            self.assertEqual(gm.input_type.full_name, m.input_type.full_name)
            self.assertEqual(gm.output_type.full_name, m.output_type.full_name)
            self.assertEqual(gm.client_streaming, m.client_streaming, m.full_name)
            self.assertEqual(gm.server_streaming, m.server_streaming, m.full_name)
            # Every field type of the request and response resolves too.
            for msg in (gm.input_type, gm.output_type):
                for f in msg.fields:
                    if f.message_type is not None:
                        self.assertTrue(f.message_type.full_name)
        return files

    def test_file_containing_symbol_resolves_every_sandgate_service(self):
        for v in VERSIONS:
            for svc in sorted(s for s in EXPECTED_SERVICES if s.startswith('sandgate.')):
                with self.subTest(version=v, service=svc):
                    self.check_service_resolves(v, svc, svc)

    def test_file_containing_symbol_standard_services(self):
        for svc in ['grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection',
                    'grpc.reflection.v1alpha.ServerReflection']:
            with self.subTest(service=svc):
                self.check_service_resolves('v1', svc, svc)

    def test_file_containing_symbol_method_and_message(self):
        svc = self.protos.pool.FindServiceByName('sandgate.v1.SandboxService')
        method = svc.methods[0]
        with self.subTest(symbol=method.full_name):
            self.check_service_resolves('v1', method.full_name, svc.full_name)
        msg = method.input_type.full_name
        with self.subTest(symbol=msg):
            r = self.one('v1', file_containing_symbol=msg)
            self.assertEqual(r.WhichOneof('message_response'), 'file_descriptor_response', r)
            pool, _ = load_into_fresh_pool(r.file_descriptor_response.file_descriptor_proto)
            self.assertEqual(pool.FindMessageTypeByName(msg).full_name, msg)

    def test_file_by_filename(self):
        for v in VERSIONS:
            for name in [self.protos.sandgate_files[0], 'grpc/health/v1/health.proto']:
                with self.subTest(version=v, file=name):
                    r = self.one(v, file_by_filename=name)
                    self.assertEqual(r.WhichOneof('message_response'),
                                     'file_descriptor_response', r)
                    files = list(r.file_descriptor_response.file_descriptor_proto)
                    self.assertTrue(files)
                    first = descriptor_pb2.FileDescriptorProto.FromString(files[0])
                    self.assertEqual(first.name, name)
                    want = self.protos.file_proto(name)
                    self.assertEqual(first.package, want.package)
                    self.assertEqual(sorted(m.name for m in first.message_type),
                                     sorted(m.name for m in want.message_type))
                    load_into_fresh_pool(files)

    def test_unknown_symbol_not_found(self):
        for v in VERSIONS:
            with self.subTest(version=v):
                r = self.one(v, file_containing_symbol='no.such.Symbol')
                self.assertEqual(r.WhichOneof('message_response'), 'error_response', r)
                self.assertEqual(r.error_response.error_code, grpc.StatusCode.NOT_FOUND.value[0])

    def test_unknown_file_not_found(self):
        r = self.one('v1', file_by_filename='no/such/file.proto')
        self.assertEqual(r.WhichOneof('message_response'), 'error_response', r)
        self.assertEqual(r.error_response.error_code, grpc.StatusCode.NOT_FOUND.value[0])

    def test_stream_goes_on_after_an_error(self):
        rs = self.reflect('v1', [{'file_containing_symbol': 'no.such.Symbol'},
                                 {'list_services': ''},
                                 {'file_by_filename': 'grpc/health/v1/health.proto'}])
        kinds = [r.WhichOneof('message_response') for r in rs]
        self.assertEqual(kinds, ['error_response', 'list_services_response',
                                 'file_descriptor_response'])

    def test_response_echoes_request(self):
        r = self.one('v1', list_services='')
        self.assertEqual(r.original_request.WhichOneof('message_request'), 'list_services')

    def test_reflection_on_many_streams(self):
        for _ in range(10):
            r = self.one('v1alpha', list_services='')
            self.assertEqual(len(r.list_services_response.service), len(EXPECTED_SERVICES))


if __name__ == '__main__':
    unittest.main()
