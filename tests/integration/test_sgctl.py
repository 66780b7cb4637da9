"""sgctl, the command-line client, against the real daemon: health (one-shot
and --watch across SIGTERM), version, mTLS options and exit codes."""
import os
import signal
import subprocess
import time
import unittest

from sgtest import env, pki
from sgtest.daemon import DaemonTestCase, free_port


def sgctl_path():
    return os.path.join(env.BUILD_DIR, 'tools', 'sgctl')


def sgctl(*args, timeout=20):
    return subprocess.run([sgctl_path(), *args], capture_output=True, text=True,
                          timeout=env.scaled(timeout))


class SgctlTest(DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.daemon = cls.start_class_daemon()

    def test_health_serving_exits_zero(self):
        r = sgctl('--addr', self.daemon.address, 'health')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), 'SERVING')

    def test_health_of_a_service(self):
        r = sgctl('--addr', self.daemon.address, 'health', 'sandgate.v1.SandboxService')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), 'SERVING')

    def test_health_unknown_service_is_not_found(self):
        r = sgctl('--addr', self.daemon.address, 'health', 'no.such.Service')
        # Exit codes: 10 + the gRPC code of a failed call (NOT_FOUND = 5).
        self.assertEqual(r.returncode, 15, r.stdout + r.stderr)
        self.assertIn('NOT_FOUND', r.stderr)

    def test_version_shows_client_and_server(self):
        r = sgctl('--addr', self.daemon.address, 'version')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r'client: sgctl \d+\.\d+\.\d+')
        self.assertRegex(r.stdout, r'server: sandgate \d+\.\d+\.\d+')

    def test_unreachable_server_is_unavailable(self):
        r = sgctl('--addr', '127.0.0.1:%d' % free_port(), '--timeout', '2', 'health')
        self.assertEqual(r.returncode, 24, r.stdout + r.stderr)  # 10 + UNAVAILABLE

    def test_token_is_never_printed(self):
        secret = 'tok-%d-do-not-print' % os.getpid()
        r = subprocess.run([sgctl_path(), '--addr', self.daemon.address, 'health'],
                           capture_output=True, text=True, timeout=env.scaled(20),
                           env=dict(os.environ, SGCTL_TOKEN=secret))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(secret, r.stdout + r.stderr)
        self.assertNotIn(secret, self.daemon.stderr_text())


class SgctlWatchTest(DaemonTestCase):
    def test_watch_follows_shutdown(self):
        d = self.start_daemon()
        p = subprocess.Popen([sgctl_path(), '--addr', d.address, 'health', '--watch'],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = p.stdout.readline().strip()
            self.assertEqual(first, 'SERVING')
            d.signal(signal.SIGTERM)
            out, err = p.communicate(timeout=env.scaled(15))
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
        self.assertEqual(out.split(), ['NOT_SERVING'], err)
        self.assertIn('UNAVAILABLE', err)
        self.assertEqual(p.returncode, 24, err)
        self.assertEqual(d.wait(env.scaled(15)), 0, d.tail())


@unittest.skipUnless(pki.openssl_available(), 'the openssl command is needed for the test PKI')
class SgctlMtlsTest(DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pki = pki.PKI(os.path.join(env.WORK_DIR, 'pki-sgctl'))
        cls.addr = '127.0.0.1:%d' % free_port()
        plain = '127.0.0.1:%d' % free_port()
        cls.daemon = cls.start_class_daemon(listeners=[
            {'address': plain},
            {'address': cls.addr, 'tls': {'cert_file': cls.pki.server.cert,
                                          'key_file': cls.pki.server.key,
                                          'client_ca_file': cls.pki.ca.cert}},
        ])

    def test_mtls_with_client_certificate(self):
        r = sgctl('--addr', self.addr, '--server-name', 'localhost',
                  '--cacert', self.pki.ca.cert,
                  '--cert', self.pki.client.cert, '--key', self.pki.client.key, 'health')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), 'SERVING')

    def test_mtls_without_client_certificate_fails(self):
        r = sgctl('--addr', self.addr, '--server-name', 'localhost',
                  '--cacert', self.pki.ca.cert, '--timeout', '3', 'health')
        self.assertEqual(r.returncode, 24, r.stdout + r.stderr)


if __name__ == '__main__':
    unittest.main()
