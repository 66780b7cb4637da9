"""The gateway keeps credential material out of core files and away from
other processes of its user: it makes itself non-dumpable at start. The
kernel shows that on /proc/<pid>: a non-dumpable process's files there
belong to root, whoever it runs as. Run as an unprivileged user, the
gateway's /proc entries must be root's while a plain process of the same
user keeps its own. Sanitizer builds stay dumpable (LeakSanitizer needs
ptrace), so the test skips them.
"""
import json
import os
import shutil
import subprocess
import time
import unittest

from sgtest import env
from sgtest.daemon import free_port

NOBODY = 65534


def sanitized(binary):
    out = subprocess.run(['ldd', binary], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True).stdout
    return 'libasan' in out or 'libubsan' in out


def as_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


@unittest.skipUnless(os.geteuid() == 0, 'needs root to start the gateway as another user')
class NonDumpableTest(unittest.TestCase):
    def setUp(self):
        if sanitized(env.SANDGATE):
            self.skipTest('a sanitizer build stays dumpable')
        self.dir = os.path.join(env.WORK_DIR, 'hardening-%d' % os.getpid())
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(os.path.join(self.dir, 'data'))
        conf = os.path.join(self.dir, 'sandgate.yaml')
        with open(conf, 'w') as f:
            json.dump({'listeners': [{'address': '127.0.0.1:%d' % free_port()}],
                       'driver': {'name': 'noop'}}, f)
        for root, dirs, files in os.walk(self.dir):
            for n in dirs + files + ['.']:
                os.chown(os.path.join(root, n), NOBODY, NOBODY)
        # The build tree's parents may not be searchable by nobody: run
        # from a copy of the binary in the test's own directory.
        self.binary = os.path.join(self.dir, 'sandgate')
        shutil.copy(env.SANDGATE, self.binary)
        os.chmod(self.dir, 0o755)
        self.log = open(os.path.join(self.dir, 'stderr.log'), 'wb')
        self.proc = subprocess.Popen(
            [self.binary, '--config', conf, '--data-dir', os.path.join(self.dir, 'data')],
            stdout=self.log, stderr=self.log, preexec_fn=as_nobody)
        self.addCleanup(self.stop)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.log.close()

    def test_gateway_is_not_dumpable(self):
        token = os.path.join(self.dir, 'data', 'admin.token')
        deadline = time.monotonic() + env.scaled(20)
        while not os.path.exists(token):
            self.assertIsNone(self.proc.poll(), open(self.log.name).read())
            self.assertLess(time.monotonic(), deadline, 'the gateway did not start')
            time.sleep(0.05)
        self.assertEqual(os.stat('/proc/%d' % self.proc.pid).st_uid, NOBODY)
        self.assertEqual(os.stat('/proc/%d/environ' % self.proc.pid).st_uid, 0)
        self.assertEqual(os.stat('/proc/%d/mem' % self.proc.pid).st_uid, 0)
        # The control: a dumpable process of the same user owns its files.
        plain = subprocess.Popen(['sleep', '30'], preexec_fn=as_nobody)
        try:
            self.assertEqual(os.stat('/proc/%d/environ' % plain.pid).st_uid, NOBODY)
        finally:
            plain.kill()
            plain.wait()


if __name__ == '__main__':
    unittest.main()
