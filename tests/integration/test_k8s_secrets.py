"""The kubernetes-secret credential source, resolved through the
kubernetes driver's own client: the real binary, CredentialService Create
and Check, and Secrets in the Kubernetes API stand-in (tests/k8s/).

A Check reads the Secret with the driver's credentials and reports whether
the key resolves, never the material; the material appears in no log line,
audit line, response or database file.
"""
import base64
import glob
import json
import os
import ssl
import unittest
import urllib.request
import uuid

from sgtest import rpcs
from sgtest.daemon import DaemonTestCase
from test_k8s_driver import HAVE_STANDIN, StandIn, driver_config

NS = 'sbx-default'
TENANT = 'team-a'


def cred(name, ref):
    return {'credential': {'name': name, 'tenant': TENANT,
                           'source': {'kind': 'kubernetes-secret', 'ref': ref}}}


@unittest.skipUnless(HAVE_STANDIN, 'the Kubernetes API stand-in (tests/k8s/standin.py) is not there')
class K8sSecretSourceTest(DaemonTestCase):
    def setUp(self):
        self.api = StandIn()
        self.addCleanup(self.api.stop)
        self.api.namespace(NS)
        self.value = 'sv-' + uuid.uuid4().hex
        self.post_secret('git', {'token': self.value, 'other': 'x-' + uuid.uuid4().hex})

    def post_secret(self, name, data):
        body = {'apiVersion': 'v1', 'kind': 'Secret', 'metadata': {'name': name},
                'data': {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
        req = urllib.request.Request(
            self.api.info['url'] + '/api/v1/namespaces/%s/secrets' % NS, method='POST',
            data=json.dumps(body).encode(),
            headers={'Content-Type': 'application/json',
                     'Authorization': 'Bearer ' + self.api.info['token']})
        ctx = ssl.create_default_context(cafile=self.api.info['ca_file'])
        urllib.request.urlopen(req, timeout=10, context=ctx).read()

    def check(self, ch, name):
        out = rpcs.invoke(ch, 'CheckCredential', {'name': name, 'tenant': TENANT})
        self.assertEqual(out.code, 'OK', out)
        return out.response

    def test_check_resolves_through_the_driver_and_leaks_nothing(self):
        d = self.start_daemon(config=driver_config(self.api.kubeconfig))
        ch = self.admin_channel(d)
        responses = []
        for name, ref in (('git', {'namespace': NS, 'name': 'git', 'key': 'token'}),
                          ('nokey', {'namespace': NS, 'name': 'git', 'key': 'missing'}),
                          ('nosecret', {'namespace': NS, 'name': 'absent', 'key': 'token'})):
            out = rpcs.invoke(ch, 'CreateCredential', cred(name, ref))
            self.assertEqual(out.code, 'OK', out)
            responses.append(out.response.SerializeToString())
        ok = self.check(ch, 'git')
        self.assertTrue(ok.ok, ok.message)
        nokey = self.check(ch, 'nokey')
        self.assertFalse(nokey.ok)
        self.assertIn("Secret %s/git has no key 'missing'" % NS, nokey.message)
        absent = self.check(ch, 'nosecret')
        self.assertFalse(absent.ok)
        self.assertIn('Secret %s/absent not found' % NS, absent.message)
        responses += [r.SerializeToString() for r in (ok, nokey, absent)]
        # The driver read it, with its own credentials.
        gets = [r for r in self.api.requests() if r.get('resource') == 'secrets'
                and r.get('method') == 'GET' and r.get('name') == 'git']
        self.assertEqual(len(gets), 2)
        listed = rpcs.invoke(ch, 'ListCredentials', {'tenant': TENANT})
        self.assertEqual(listed.code, 'OK', listed)
        responses.append(listed.response.SerializeToString())
        d.stop()
        # Nowhere: responses, logs, audit, the database and its WAL.
        needle = self.value.encode()
        for raw in responses:
            self.assertNotIn(needle, raw)
        self.assertNotIn(self.value, d.stderr_text() + d.stdout_text())
        self.assertNotIn(self.value, d.audit_text() or '')
        for path in glob.glob(os.path.join(d.data_dir, '*')):
            if os.path.isfile(path):
                with open(path, 'rb') as f:
                    self.assertNotIn(needle, f.read(), path)

    def test_without_the_driver_references_validate_but_do_not_resolve(self):
        d = self.start_daemon()
        ch = self.admin_channel(d)
        out = rpcs.invoke(ch, 'CreateCredential',
                          cred('git', {'namespace': NS, 'name': 'git', 'key': 'token'}))
        self.assertEqual(out.code, 'OK', out)
        bad = rpcs.invoke(ch, 'CreateCredential',
                          cred('bad', {'namespace': 'Bad_NS', 'name': 'git', 'key': 'token'}))
        self.assertEqual(bad.code, 'INVALID_ARGUMENT', bad)
        self.assertIn('ref.namespace', bad.details)
        got = self.check(ch, 'git')
        self.assertFalse(got.ok)
        self.assertIn('resolving needs the kubernetes driver', got.message)


if __name__ == '__main__':
    unittest.main()
