"""grpc.health.v1.Health over a plaintext listener."""
import unittest

import grpc

from sgtest.daemon import DaemonTestCase

SANDGATE_SERVICES = ['sandgate.v1.SandboxService', 'sandgate.v1.CredentialService',
                     'sandgate.v1.EventService']


class HealthTest(DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.daemon = cls.start_class_daemon()

    def setUp(self):
        self.ch = self.channel(self.daemon.address)

    def test_check_overall_serving(self):
        self.assertEqual(self.protos.health_check(self.ch, ''), 'SERVING')

    def test_check_sandgate_services_serving(self):
        for svc in SANDGATE_SERVICES:
            with self.subTest(service=svc):
                self.assertEqual(self.protos.health_check(self.ch, svc), 'SERVING')

    def test_check_standard_services_serving(self):
        for svc in ['grpc.health.v1.Health']:
            with self.subTest(service=svc):
                try:
                    status = self.protos.health_check(self.ch, svc)
                except grpc.RpcError as e:
                    self.fail('Check(%r): %s %s' % (svc, e.code(), e.details()))
                self.assertEqual(status, 'SERVING')

    def test_check_unknown_service_not_found(self):
        self.assertRpcCode(grpc.StatusCode.NOT_FOUND, self.protos.health_check, self.ch,
                           'no.such.Service')
        # A name that differs from a real one only in case is unknown too.
        self.assertRpcCode(grpc.StatusCode.NOT_FOUND, self.protos.health_check, self.ch,
                           'sandgate.v1.sandboxservice')

    def test_watch_first_message_serving(self):
        stream = self.protos.health_watch(self.ch, '', timeout=10)
        try:
            first = next(stream)
            self.assertEqual(self.protos.health_status_name(first.status), 'SERVING')
        finally:
            stream.cancel()

    def test_watch_sandgate_service_serving(self):
        stream = self.protos.health_watch(self.ch, 'sandgate.v1.SandboxService', timeout=10)
        try:
            first = next(stream)
            self.assertEqual(self.protos.health_status_name(first.status), 'SERVING')
        finally:
            stream.cancel()

    def test_watch_unknown_service_reports_service_unknown(self):
        # The health protocol: Watch on an unknown name does not fail; it
        # sends SERVICE_UNKNOWN and keeps the stream open.
        stream = self.protos.health_watch(self.ch, 'no.such.Service', timeout=10)
        try:
            first = next(stream)
            self.assertEqual(self.protos.health_status_name(first.status), 'SERVICE_UNKNOWN')
        finally:
            stream.cancel()

    def test_watch_stream_stays_open(self):
        # After the first message, the stream waits for changes: a short
        # deadline must end it with DEADLINE_EXCEEDED, not OK or an error.
        stream = self.protos.health_watch(self.ch, '', timeout=1.5)
        first = next(stream)
        self.assertEqual(self.protos.health_status_name(first.status), 'SERVING')
        with self.assertRaises(grpc.RpcError) as cm:
            for extra in stream:
                self.fail('unexpected second message %s' % extra)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)

    def test_cancelled_watch_streams_do_not_disturb_server(self):
        for _ in range(20):
            stream = self.protos.health_watch(self.ch, '', timeout=10)
            next(stream)
            stream.cancel()
        self.assertEqual(self.protos.health_check(self.ch, ''), 'SERVING')


if __name__ == '__main__':
    unittest.main()
