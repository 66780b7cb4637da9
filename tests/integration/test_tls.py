"""TLS and mutual TLS listeners, with a per-run test PKI.

Two daemons, so one failing to start does not hide the other's results:
plaintext + TLS (server authentication only), and plaintext + mTLS (a
client certificate signed by the test CA is required).
"""
import os
import unittest

import grpc

from sgtest import env, pki
from sgtest.daemon import DaemonTestCase, free_port


_PKI = None


def shared_pki():
    """The PKI shared by the module's tests (made on first use)."""
    global _PKI
    if _PKI is None:
        _PKI = pki.PKI(os.path.join(env.WORK_DIR, 'pki'))
    return _PKI


@unittest.skipUnless(pki.openssl_available(), 'the openssl command is needed for the test PKI')
class _TlsBase(DaemonTestCase):
    mutual = False

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pki = shared_pki()
        cls.plain = '127.0.0.1:%d' % free_port()
        port = '127.0.0.1:%d' % free_port()
        tls = {'cert_file': cls.pki.server.cert, 'key_file': cls.pki.server.key}
        if cls.mutual:
            tls['client_ca_file'] = cls.pki.ca.cert
            cls.mtls = port
        else:
            cls.tls = port
        cls.daemon = cls.start_class_daemon(listeners=[
            {'address': cls.plain},
            {'address': port, 'tls': tls},
        ])

    def check(self, target, creds=None, timeout=5):
        ch = self.channel(target, creds)
        return self.protos.health_check(ch, '', timeout=timeout)


class TlsTest(_TlsBase):
    # TLS, server authentication only

    def test_tls_server_auth(self):
        self.assertEqual(self.check(self.tls, self.pki.channel_credentials()), 'SERVING')

    def test_tls_with_client_cert_is_fine_too(self):
        creds = self.pki.channel_credentials(client=self.pki.client)
        self.assertEqual(self.check(self.tls, creds), 'SERVING')

    def test_plaintext_client_on_tls_port_fails(self):
        self.assertRpcCode(grpc.StatusCode.UNAVAILABLE, self.check, self.tls)

    def test_tls_client_on_plaintext_port_fails(self):
        self.assertRpcCode(grpc.StatusCode.UNAVAILABLE, self.check, self.plain,
                           self.pki.channel_credentials())

    def test_client_not_trusting_server_fails(self):
        creds = self.pki.channel_credentials(root=self.pki.rogue_ca)
        self.assertRpcCode(grpc.StatusCode.UNAVAILABLE, self.check, self.tls, creds)


class MtlsTest(_TlsBase):
    mutual = True

    def test_mtls_good_client_cert(self):
        creds = self.pki.channel_credentials(client=self.pki.client)
        self.assertEqual(self.check(self.mtls, creds), 'SERVING')

    def test_mtls_sandgate_service_reachable(self):
        creds = self.pki.channel_credentials(client=self.pki.client)
        ch = self.channel(self.mtls, creds)
        self.assertEqual(self.protos.health_check(ch, 'sandgate.v1.SandboxService'), 'SERVING')

    def test_mtls_without_client_cert_refused(self):
        self.assertRpcCode(grpc.StatusCode.UNAVAILABLE, self.check, self.mtls,
                           self.pki.channel_credentials())

    def test_mtls_rogue_client_cert_refused(self):
        creds = self.pki.channel_credentials(client=self.pki.rogue_client)
        self.assertRpcCode(grpc.StatusCode.UNAVAILABLE, self.check, self.mtls, creds)

    def test_plaintext_client_on_mtls_port_fails(self):
        self.assertRpcCode(grpc.StatusCode.UNAVAILABLE, self.check, self.mtls)

    def test_refused_handshakes_leave_server_healthy(self):
        bad = self.pki.channel_credentials(client=self.pki.rogue_client)
        for _ in range(5):
            self.assertRpcCode(grpc.StatusCode.UNAVAILABLE, self.check, self.mtls, bad)
        good = self.pki.channel_credentials(client=self.pki.client)
        self.assertEqual(self.check(self.mtls, good), 'SERVING')
        self.assertEqual(self.check(self.plain), 'SERVING')


if __name__ == '__main__':
    unittest.main()
