"""sgctl, the command-line client, against the real daemon: health (one-shot
and --watch across SIGTERM), version, mTLS options and exit codes; and where
its bearer token comes from (--token, --token-file, --data-dir,
SGCTL_TOKEN, the default data directory), checked against a small server
that records what it was sent."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
from concurrent import futures

import grpc

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


def default_data_dir():
    """The build's default data directory (meson option default_data_dir),
    which sgctl looks in for the admin token."""
    try:
        with open(os.path.join(env.BUILD_DIR, 'config.h')) as f:
            m = re.search(r'^#define SG_DEFAULT_DATA_DIR "([^"]*)"', f.read(), re.M)
            return m.group(1) if m else 'sandgate-data'
    except OSError:
        return 'sandgate-data'


DEFAULT_TOKEN_PATH = os.path.join(default_data_dir(), 'admin.token')


class RecordingHealth:
    """A Health/Check server that answers SERVING and records the
    authorization metadata of every call (None when absent)."""

    def __init__(self):
        self.seen = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        handler = grpc.method_handlers_generic_handler('grpc.health.v1.Health', {
            # Raw bytes both ways: the reply is HealthCheckResponse{status:
            # SERVING}, field 1 = 1.
            'Check': grpc.unary_unary_rpc_method_handler(self._check),
        })
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port('127.0.0.1:0')
        self.server.start()

    def _check(self, request, context):
        md = dict(context.invocation_metadata())
        self.seen.append(md.get('authorization'))
        return b'\x08\x01'

    @property
    def address(self):
        return '127.0.0.1:%d' % self.port

    def stop(self):
        self.server.stop(None)


class SgctlTokenTest(unittest.TestCase):
    SECRET = 'sgadm_Secret-%d_do.not.print~' % os.getpid()

    @classmethod
    def setUpClass(cls):
        cls.fake = RecordingHealth()

    @classmethod
    def tearDownClass(cls):
        cls.fake.stop()

    def setUp(self):
        if os.path.isabs(DEFAULT_TOKEN_PATH):
            self.skipTest('built with an absolute default_data_dir')
        self.dir = tempfile.mkdtemp(prefix='sgctl-token-')
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.fake.seen.clear()

    def write(self, rel, data):
        path = os.path.join(self.dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as f:
            f.write(data)
        os.chmod(path, 0o600)
        return path

    def run_sgctl(self, *args, env_token=None):
        environ = dict(os.environ)
        environ.pop('SGCTL_TOKEN', None)
        if env_token is not None:
            environ['SGCTL_TOKEN'] = env_token
        return subprocess.run([sgctl_path(), '--addr', self.fake.address, *args,
                               'health'], capture_output=True, text=True,
                              cwd=self.dir, env=environ, timeout=env.scaled(20))

    def assertSent(self, r, token):
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), 'SERVING')
        self.assertEqual(self.fake.seen, ['Bearer ' + token] if token else [None])

    def assertRefused(self, r, code, *needles):
        self.assertEqual(r.returncode, code, r.stdout + r.stderr)
        self.assertEqual(self.fake.seen, [], 'no call may be made')
        for n in needles:
            self.assertIn(n, r.stderr)
        self.assertNotIn(self.SECRET, r.stdout + r.stderr)

    def test_token_file_one_trailing_newline_dropped(self):
        for data in (b'%s', b'%s\n', b'%s\r\n'):
            with self.subTest(data=data):
                self.fake.seen.clear()
                path = self.write('tok', data.replace(b'%s', self.SECRET.encode()))
                self.assertSent(self.run_sgctl('--token-file', path), self.SECRET)
                self.fake.seen.clear()
                self.assertSent(self.run_sgctl('--token-file=' + path), self.SECRET)

    def test_default_data_dir_in_the_current_directory(self):
        self.write(DEFAULT_TOKEN_PATH, self.SECRET.encode() + b'\n')
        self.assertSent(self.run_sgctl(), self.SECRET)

    def test_no_token_anywhere_sends_none(self):
        self.assertSent(self.run_sgctl(), None)

    def test_data_dir_option(self):
        self.write('elsewhere/admin.token', self.SECRET.encode() + b'\n')
        # A default file in the current directory is not what was asked for.
        self.write(DEFAULT_TOKEN_PATH, b'default-token\n')
        self.assertSent(self.run_sgctl('--data-dir', os.path.join(self.dir, 'elsewhere')),
                        self.SECRET)

    def test_precedence(self):
        self.write(DEFAULT_TOKEN_PATH, b'from-default\n')
        path = self.write('tok', b'from-file\n')
        # SGCTL_TOKEN beats the default file ...
        self.assertSent(self.run_sgctl(env_token='from-env'), 'from-env')
        # ... and the options beat SGCTL_TOKEN.
        self.fake.seen.clear()
        self.assertSent(self.run_sgctl('--token-file', path, env_token='from-env'),
                        'from-file')
        self.fake.seen.clear()
        self.assertSent(self.run_sgctl('--token', 'from-flag', env_token='from-env'),
                        'from-flag')

    def test_two_sources_is_a_usage_error(self):
        path = self.write('tok', b'x\n')
        for args in (('--token', 'a', '--token-file', path),
                     ('--token-file', path, '--data-dir', self.dir),
                     ('--token', 'a', '--data-dir', self.dir)):
            with self.subTest(args=args):
                self.assertRefused(self.run_sgctl(*args), 2, 'only one of')

    def test_bad_token_files_are_refused_without_printing_them(self):
        s = self.SECRET.encode()
        cases = [
            (b'', 'is empty'),
            (b'\n', 'is empty'),
            (s + b' ' + s + b'\n', 'at byte %d' % len(s)),
            (s + b'\n\n', 'at byte %d' % len(s)),
            (s + b'\nsecond line\n', 'at byte %d' % len(s)),
            (b' ' + s, 'at byte 0'),
            (s + b'\t', 'at byte %d' % len(s)),
            (s + b'\x01', 'at byte %d' % len(s)),
            (s + '\u00e9'.encode(), 'at byte %d' % len(s)),
            (b'x' * 9000, 'larger than'),
        ]
        for data, needle in cases:
            with self.subTest(data=data[:40]):
                self.fake.seen.clear()
                path = self.write('tok', data)
                self.assertRefused(self.run_sgctl('--token-file', path), 3,
                                   "token file '%s'" % path, needle)

    def test_bad_default_file_is_not_ignored(self):
        self.write(DEFAULT_TOKEN_PATH, self.SECRET.encode() + b' trailing\n')
        self.assertRefused(self.run_sgctl(), 3, DEFAULT_TOKEN_PATH, 'cannot be in a token')

    def test_missing_files(self):
        missing = os.path.join(self.dir, 'nope')
        self.assertRefused(self.run_sgctl('--token-file', missing), 3,
                           "cannot open token file '%s'" % missing)
        self.assertRefused(self.run_sgctl('--data-dir', missing), 3,
                           os.path.join(missing, 'admin.token'))
        self.assertRefused(self.run_sgctl('--token-file', self.dir), 3, 'not a regular file')
        self.assertRefused(self.run_sgctl('--token-file='), 2, 'empty path')


class SgctlDaemonTokenTest(DaemonTestCase):
    """The file the gateway writes is one sgctl reads as it is."""

    def test_reads_the_gateways_admin_token_file(self):
        d = self.start_daemon()
        if not d.admin_token:
            self.skipTest('this gateway writes no admin token')
        fake = RecordingHealth()
        self.addCleanup(fake.stop)
        environ = {k: v for k, v in os.environ.items() if k != 'SGCTL_TOKEN'}
        for args in (('--data-dir', d.data_dir), ('--token-file', d.admin_token_path)):
            with self.subTest(args=args):
                fake.seen.clear()
                r = subprocess.run([sgctl_path(), '--addr', fake.address, *args, 'health'],
                                   capture_output=True, text=True, env=environ,
                                   timeout=env.scaled(20))
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(fake.seen, ['Bearer ' + d.admin_token])
                self.assertNotIn(d.admin_token, r.stdout + r.stderr)
        # And the gateway itself answers sgctl with the default location
        # (the health service needs no token, so this checks the file is
        # accepted and nothing is printed).
        work = tempfile.mkdtemp(prefix='sgctl-cwd-')
        self.addCleanup(shutil.rmtree, work, True)
        if os.path.isabs(DEFAULT_TOKEN_PATH):
            return
        os.makedirs(os.path.dirname(os.path.join(work, DEFAULT_TOKEN_PATH)))
        shutil.copy(d.admin_token_path, os.path.join(work, DEFAULT_TOKEN_PATH))
        r = subprocess.run([sgctl_path(), '--addr', d.address, 'health'],
                           capture_output=True, text=True, env=environ, cwd=work,
                           timeout=env.scaled(20))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), 'SERVING')
        self.assertNotIn(d.admin_token, r.stdout + r.stderr + d.stderr_text())


if __name__ == '__main__':
    unittest.main()
