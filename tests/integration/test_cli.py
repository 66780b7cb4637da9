"""The command line: --check-config, --version, --help, --listen."""
import os
import re
import shutil
import subprocess
import unittest

import grpc

from sgtest import env
from sgtest.daemon import SANITIZER_RE, DaemonTestCase, free_port, short_tempdir


def run(*args, timeout=None, cwd=None):
    """Run sandgate to completion; returns (exit code, stdout, stderr)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith('SANDGATE_')}
    res = subprocess.run([env.SANDGATE] + list(args), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                         env=environ, timeout=timeout or env.scaled(20))
    out = res.stdout.decode('utf-8', errors='replace')
    err = res.stderr.decode('utf-8', errors='replace')
    if SANITIZER_RE.search(err):
        raise AssertionError('sanitizer report from sandgate %s:\n%s' % (' '.join(args), err))
    return res.returncode, out, err


def write(path, text):
    with open(path, 'w') as f:
        f.write(text)
    return path


class CheckConfigTest(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.join(env.WORK_DIR, 'check-config', self._testMethodName)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)

    def check(self, path):
        rc, out, err = run('--check-config', path)
        return rc, out + err

    def test_good_file_passes(self):
        path = write(os.path.join(self.dir, 'good.yaml'),
                     'listeners:\n'
                     '  - address: "127.0.0.1:%d"\n'
                     'server:\n'
                     '  workers: 2\n'
                     '  max_receive_message_bytes: 65536\n'
                     '  drain_timeout_ms: 1000\n'
                     'log:\n'
                     '  level: info\n'
                     '  format: json\n' % free_port())
        rc, text = self.check(path)
        self.assertEqual(rc, 0, text)

    def test_unknown_key_names_file_line_key(self):
        path = write(os.path.join(self.dir, 'unknown-key.yaml'),
                     'listeners:\n'
                     '  - address: "127.0.0.1:%d"\n'
                     'server:\n'
                     '  workers: 2\n'
                     '  bogus_knob: 7\n' % free_port())
        rc, text = self.check(path)
        self.assertNotEqual(rc, 0, text)
        self.assertIn('unknown-key.yaml', text)
        self.assertRegex(text, r'unknown-key\.yaml:5\b', 'the line number 5 is missing:\n' + text)
        self.assertIn('bogus_knob', text)

    def test_policy_file_is_checked_too(self):
        policy = write(os.path.join(self.dir, 'policy.yaml'),
                       'roles:\n'
                       '  reader:\n'
                       '    operations: [{permissions: [sandboxes.get], on: any}]\n'
                       'bindings:\n'
                       '  - roles: [reader]\n'
                       '    subjects: [{token: dev}]\n')
        conf = write(os.path.join(self.dir, 'with-policy.yaml'),
                     'auth:\n  policy_file: %s\n' % policy)
        rc, text = self.check(conf)
        self.assertEqual(rc, 0, text)
        self.assertIn('policy is valid (sha256:', text)
        # A role the bindings name but the file does not define.
        write(policy, 'bindings:\n  - roles: [nobody]\n    subjects: [{token: dev}]\n')
        rc, text = self.check(conf)
        self.assertNotEqual(rc, 0, text)
        self.assertRegex(text, r'policy\.yaml:\d+', text)
        self.assertIn('nobody', text)

    def test_unknown_top_level_key(self):
        path = write(os.path.join(self.dir, 'top.yaml'),
                     '# comment\n'
                     'listners:\n'
                     '  - address: "127.0.0.1:1"\n')
        rc, text = self.check(path)
        self.assertNotEqual(rc, 0, text)
        self.assertRegex(text, r'top\.yaml:2\b', text)
        self.assertIn('listners', text)

    def test_bad_value_names_key(self):
        path = write(os.path.join(self.dir, 'bad-value.yaml'),
                     'listeners:\n'
                     '  - address: "127.0.0.1:%d"\n'
                     'server:\n'
                     '  workers: many\n' % free_port())
        rc, text = self.check(path)
        self.assertNotEqual(rc, 0, text)
        self.assertRegex(text, r'bad-value\.yaml:4\b', text)
        self.assertIn('workers', text)

    def test_yaml_syntax_error(self):
        path = write(os.path.join(self.dir, 'syntax.yaml'),
                     'server:\n  workers: [1, 2\n')
        rc, text = self.check(path)
        self.assertNotEqual(rc, 0, text)
        self.assertIn('syntax.yaml', text)

    def test_missing_file(self):
        rc, text = self.check(os.path.join(self.dir, 'does-not-exist.yaml'))
        self.assertNotEqual(rc, 0, text)
        self.assertIn('does-not-exist.yaml', text)

    def test_missing_tls_file(self):
        path = write(os.path.join(self.dir, 'tls.yaml'),
                     'listeners:\n'
                     '  - address: "127.0.0.1:%d"\n'
                     '    tls:\n'
                     '      cert_file: "%s"\n'
                     '      key_file: "%s"\n'
                     % (free_port(), os.path.join(self.dir, 'no-cert.pem'),
                        os.path.join(self.dir, 'no-key.pem')))
        rc, text = self.check(path)
        self.assertNotEqual(rc, 0, text)
        self.assertIn('no-cert.pem', text)

    def test_shipped_sample_passes(self):
        sample = os.path.join(env.SOURCE_ROOT, 'docs', 'sandgate.yaml')
        self.assertTrue(os.path.exists(sample), 'docs/sandgate.yaml is missing')
        # Relative paths in the sample (TLS files, if any) resolve from the root.
        rc, out, err = run('--check-config', sample, cwd=env.SOURCE_ROOT)
        self.assertEqual(rc, 0, out + err)


class FlagsTest(DaemonTestCase):
    def test_version(self):
        rc, out, err = run('--version')
        self.assertEqual(rc, 0, out + err)
        with open(os.path.join(env.SOURCE_ROOT, 'meson.build')) as f:
            m = re.search(r"version\s*:\s*'([^']+)'", f.read())
        self.assertIn(m.group(1), out + err)

    def test_help(self):
        rc, out, err = run('--help')
        self.assertEqual(rc, 0, out + err)
        for flag in ('--config', '--listen', '--data-dir', '--check-config', '--version'):
            self.assertIn(flag, out + err)

    def test_unknown_flag_fails(self):
        rc, out, err = run('--no-such-flag')
        self.assertNotEqual(rc, 0, out + err)

    def test_listen_unix_socket(self):
        d = short_tempdir()
        self.addCleanup(shutil.rmtree, d, True)
        target = 'unix:' + os.path.join(d, 'sg.sock')
        daemon = self.start_daemon(use_config=False, args=['--listen', target],
                                   ready_target=target)
        ch = self.channel(target)
        self.assertEqual(self.protos.health_check(ch, ''), 'SERVING')
        self.assertEqual(self.protos.health_check(ch, 'sandgate.v1.SandboxService'), 'SERVING')
        self.assertEqual(daemon.stop(), 0, daemon.tail())

    def test_listen_replaces_configured_listeners(self):
        configured = '127.0.0.1:%d' % free_port()
        flagged = '127.0.0.1:%d' % free_port()
        daemon = self.start_daemon(listeners=[{'address': configured}],
                                   args=['--listen', flagged], ready_target=flagged)
        self.assertEqual(self.protos.health_check(self.channel(flagged), ''), 'SERVING')
        with self.assertRaises(grpc.RpcError) as cm:
            self.protos.health_check(self.channel(configured), '', timeout=2)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(daemon.stop(), 0, daemon.tail())

    def test_listen_repeated(self):
        a = '127.0.0.1:%d' % free_port()
        d = short_tempdir()
        self.addCleanup(shutil.rmtree, d, True)
        b = 'unix:' + os.path.join(d, 'b.sock')
        self.start_daemon(use_config=False, args=['--listen', a, '--listen', b], ready_target=a)
        for t in (a, b):
            self.assertEqual(self.protos.health_check(self.channel(t), ''), 'SERVING', t)


    def test_environment_listen(self):
        target = '127.0.0.1:%d' % free_port()
        daemon = self.start_daemon(use_config=False, env_extra={'SANDGATE_LISTEN': target},
                                   ready_target=target)
        self.assertEqual(self.protos.health_check(self.channel(target), ''), 'SERVING')
        self.assertEqual(daemon.stop(), 0, daemon.tail())

    def test_unknown_environment_variable_fails(self):
        environ = {k: v for k, v in os.environ.items() if not k.startswith('SANDGATE_')}
        environ['SANDGATE_NO_SUCH_SETTING'] = '1'
        d = short_tempdir()
        self.addCleanup(shutil.rmtree, d, True)
        res = subprocess.run([env.SANDGATE, '--listen', 'unix:' + os.path.join(d, 's.sock'),
                              '--data-dir', os.path.join(d, 'data')],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, env=environ, timeout=env.scaled(20))
        text = res.stdout.decode(errors='replace')
        self.assertNotEqual(res.returncode, 0, text)
        self.assertIn('SANDGATE_NO_SUCH_SETTING', text)


if __name__ == '__main__':
    unittest.main()
