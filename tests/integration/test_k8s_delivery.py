"""Credential delivery to kubernetes sandboxes, through the real binary and
the Kubernetes API stand-in (tests/k8s/).

A Sandbox with bindings gets a Secret "<Sandbox name>-credentials" made
before it (so that its pod never starts without one), owned by it once it
exists (so that the garbage collector takes the Secret with it), and
referenced by the pod template: secretKeyRef for an env binding, a subPath
mount of a secret volume for a file. The gateway deletes the Secret itself
on DeleteSandbox. A SandboxClaim cannot carry bindings (its env takes only
literal values). A known value appears in no log line, audit line,
response, event or database byte.
"""
import base64
import glob
import json
import os
import ssl
import time
import unittest
import urllib.request
import uuid

import grpc

from sgtest import env, rpcs
from sgtest.daemon import DaemonTestCase
from sgtest.sandboxes import Client, events, phase_name, wait_for
from test_k8s_driver import GATEWAY_ID, HAVE_STANDIN, StandIn, driver_config, writes

NS = 'sbx-default'
TENANT = 'team-a'
ENV_PREFIX = 'SGTK8SDELIVER_'
FILE_TARGET = '/run/secrets/git'


def uname(prefix):
    return '%s-%s' % (prefix, uuid.uuid4().hex[:8])


def b64(b):
    return base64.b64encode(b).decode()


@unittest.skipUnless(HAVE_STANDIN, 'the Kubernetes API stand-in (tests/k8s/standin.py) is not there')
class K8sDeliveryTest(DaemonTestCase):
    def setUp(self):
        self.api = StandIn(ready_delay_ms=100)
        self.addCleanup(self.api.stop)
        self.api.namespace(NS)
        self.env_secret = 'envsecret-' + uuid.uuid4().hex
        # Material is bytes: a NUL and a newline travel in base64.
        self.file_secret = b'filesecret-%s\x00\n\xff-end' % uuid.uuid4().hex.encode()
        self.cred_dir = os.path.join(env.WORK_DIR, self.id() + '-creds')
        os.makedirs(self.cred_dir, exist_ok=True)
        self.file_path = os.path.join(self.cred_dir, 'git-token')
        with open(self.file_path, 'wb') as f:
            f.write(self.file_secret)
        self.responses = []

    # --- helpers ----------------------------------------------------------

    def daemon(self, **settings):
        config = driver_config(self.api.kubeconfig, **settings)
        config['credentials'] = {'file_directories': [self.cred_dir],
                                 'env_prefix': ENV_PREFIX}
        d = self.start_daemon(config=config, audit=True,
                              env_extra={ENV_PREFIX + 'GIT_TOKEN': self.env_secret})
        return d, self.admin_channel(d)

    def call(self, ch, rpc, body):
        out = rpcs.invoke(ch, rpc, body)
        for r in out.responses:
            self.responses.append(r.SerializeToString())
        self.responses.append((out.details or '').encode())
        return out

    def ok(self, ch, rpc, body):
        out = self.call(ch, rpc, body)
        self.assertEqual(out.code, 'OK', '%s: %r' % (rpc, out))
        return out.response

    def credentials(self, ch):
        """An env record and a file record, bound as GIT_TOKEN and a file."""
        e = self.ok(ch, 'CreateCredential', {'credential': {
            'name': uname('git'), 'tenant': TENANT,
            'source': {'kind': 'env', 'ref': {'name': ENV_PREFIX + 'GIT_TOKEN'}}}})
        f = self.ok(ch, 'CreateCredential', {'credential': {
            'name': uname('key'), 'tenant': TENANT,
            'source': {'kind': 'file', 'ref': {'path': self.file_path}}}})
        return [{'credential': e.name, 'env': 'GIT_TOKEN'},
                {'credential': f.name, 'file': FILE_TARGET}]

    def create(self, ch, bindings, driver=None):
        spec = {'image': 'busybox:1.37', 'command': ['sleep', '3600'],
                'credentials': bindings}
        if driver is not None:
            spec['driverConfig'] = {'kubernetes': driver}
        return self.call(ch, 'CreateSandbox', {'sandbox': {
            'name': uname('sb'), 'tenant': TENANT, 'project': 'review', 'spec': spec}})

    def objects(self, resource, ns=NS):
        return self.api.admin('GET', '/objects?resource=%s&namespace=%s' % (resource, ns))[
            'objects']

    def secrets(self):
        return {s['metadata']['name']: s for s in self.objects('secrets')}

    def sandbox_object(self, sid):
        mine = [o for o in self.objects('sandboxes')
                if o['metadata']['labels'].get('sandgate.io/sandbox-id') == sid]
        self.assertEqual(len(mine), 1, mine)
        return mine[0]

    def api_delete(self, path):
        req = urllib.request.Request(self.api.info['url'] + path, method='DELETE',
                                     headers={'Authorization': 'Bearer ' + self.api.info['token']})
        ctx = ssl.create_default_context(cafile=self.api.info['ca_file'])
        urllib.request.urlopen(req, timeout=10, context=ctx).read()

    def assert_no_leak(self, d):
        d.stop()
        needles = (self.env_secret.encode(), self.file_secret,
                   b64(self.env_secret.encode()).encode(), b64(self.file_secret).encode())
        for raw in self.responses:
            for n in needles:
                self.assertNotIn(n, raw)
        logs = (d.stderr_text() + d.stdout_text() + (d.audit_text() or '')).encode()
        for n in needles:
            self.assertNotIn(n, logs)
        for row in events(d):
            text = json.dumps(dict(row), default=str).encode()
            for n in needles:
                self.assertNotIn(n, text)
        for path in glob.glob(os.path.join(d.data_dir, '*')):
            if os.path.isfile(path):
                with open(path, 'rb') as f:
                    data = f.read()
                for n in needles:
                    self.assertNotIn(n, data, path)

    # --- tests ------------------------------------------------------------

    def test_secret_owned_referenced_and_deleted(self):
        d, ch = self.daemon()
        c = Client(ch)
        out = self.create(ch, self.credentials(ch))
        self.assertEqual(out.code, 'OK', out)
        sid = out.response.id
        ready = c.wait_phase(sid, ('READY', 'FAILED'))
        self.assertEqual(phase_name(ready), 'READY', ready.status.message)
        self.responses.append(ready.SerializeToString())

        sbo = self.sandbox_object(sid)
        name = sbo['metadata']['name']
        sname = name + '-credentials'
        secret = self.secrets()[sname]
        self.assertEqual(secret['type'], 'Opaque')
        self.assertEqual(secret['data'], {'c0': b64(self.env_secret.encode()),
                                          'c1': b64(self.file_secret)})
        labels = secret['metadata']['labels']
        self.assertEqual(labels['sandgate.io/sandbox-id'], sid)
        self.assertEqual(labels['sandgate.io/gateway-id'], GATEWAY_ID)
        self.assertEqual(labels['app.kubernetes.io/managed-by'], 'sandgate')
        self.assertEqual(secret['metadata']['ownerReferences'], [{
            'apiVersion': 'agents.x-k8s.io/v1beta1', 'kind': 'Sandbox', 'name': name,
            'uid': sbo['metadata']['uid'], 'controller': False,
            'blockOwnerDeletion': False}])

        # The pod template refers to the Secret; no value is in it.
        self.assertNotIn(self.env_secret, json.dumps(sbo))
        pod = sbo['spec']['podTemplate']['spec']
        ctr = pod['containers'][0]
        self.assertIn({'name': 'GIT_TOKEN', 'valueFrom': {'secretKeyRef': {
            'name': sname, 'key': 'c0'}}}, ctr['env'])
        self.assertEqual(pod['volumes'], [{'name': 'sg-credentials', 'secret': {
            'secretName': sname, 'defaultMode': 0o440,
            'items': [{'key': 'c1', 'path': 'c1'}]}}])
        self.assertEqual(ctr['volumeMounts'], [{
            'name': 'sg-credentials', 'mountPath': FILE_TARGET, 'subPath': 'c1',
            'readOnly': True}])
        # Non-root without ids: the file's group is the pod's fsGroup.
        self.assertEqual(pod['securityContext']['fsGroup'], 65532)
        pods = [p for p in self.objects('pods') if p['metadata']['name'] == name]
        self.assertEqual(len(pods), 1)

        # Order: the Secret, then the Sandbox, then the Secret's owner.
        w = [(r['method'], r['resource']) for r in writes(self.api.requests(), resource=None)
             if r['resource'] in ('secrets', 'sandboxes')]
        self.assertEqual(w, [('POST', 'secrets'), ('POST', 'sandboxes'),
                             ('PATCH', 'secrets')])
        types = [e['type_name'] for e in events(d, sid)]
        self.assertIn('CREDENTIALS_RESOLVED', types)
        self.assertLess(types.index('CREDENTIALS_RESOLVED'), types.index('READY'))

        # Without the garbage collector: the gateway deletes it itself.
        self.api.config(gc=False)
        c.delete(sid)
        self.assertEqual(phase_name(c.wait_phase(sid, ('DELETED',))), 'DELETED')
        self.assertNotIn(sname, self.secrets())
        deletes = [r for r in writes(self.api.requests(), resource='secrets')
                   if r['method'] == 'DELETE']
        self.assertEqual([(r['name'], r['status']) for r in deletes], [(sname, 200)])
        self.assert_no_leak(d)

    def test_a_synced_secret_is_copied_into_the_sandbox_secret(self):
        # The usual case: a platform Secret (synced by External Secrets,
        # say) read by the driver and copied into the per-sandbox Secret.
        value = 'synced-' + uuid.uuid4().hex
        body = {'apiVersion': 'v1', 'kind': 'Secret', 'metadata': {'name': 'git-synced'},
                'data': {'token': b64(value.encode())}}
        req = urllib.request.Request(
            self.api.info['url'] + '/api/v1/namespaces/%s/secrets' % NS, method='POST',
            data=json.dumps(body).encode(),
            headers={'Content-Type': 'application/json',
                     'Authorization': 'Bearer ' + self.api.info['token']})
        ctx = ssl.create_default_context(cafile=self.api.info['ca_file'])
        urllib.request.urlopen(req, timeout=10, context=ctx).read()
        d, ch = self.daemon()
        rec = self.ok(ch, 'CreateCredential', {'credential': {
            'name': uname('synced'), 'tenant': TENANT,
            'source': {'kind': 'kubernetes-secret',
                       'ref': {'namespace': NS, 'name': 'git-synced', 'key': 'token'}}}})
        out = self.create(ch, [{'credential': rec.name, 'env': 'GIT_TOKEN'}])
        self.assertEqual(out.code, 'OK', out)
        ready = Client(ch).wait_phase(out.response.id, ('READY', 'FAILED'))
        self.assertEqual(phase_name(ready), 'READY', ready.status.message)
        name = self.sandbox_object(out.response.id)['metadata']['name']
        self.assertEqual(self.secrets()[name + '-credentials']['data'],
                         {'c0': b64(value.encode())})
        audit = [r for r in d.audit_records()
                 if r['rpc'] == 'sandgate.reconciler/DeliverCredential' and
                 r.get('target') == out.response.id]
        self.assertEqual([r['reason'] for r in audit],
                         ["credential '%s': resolved secret %s/git-synced key token"
                          % (rec.name, NS)])
        d.stop()
        logs = (d.stderr_text() + d.audit_text()).encode()
        self.assertNotIn(value.encode(), logs)
        self.assertNotIn(b64(value.encode()).encode(), logs)

    def test_shutdown_does_not_wait_for_a_secret_read_in_flight(self):
        # A delivery waits on a worker for the driver's GET of a Secret the
        # API server is slow to answer (60 s, far past the request timeout).
        # SIGTERM closes the driver before the workers are joined, so the
        # read ends at once and the gateway exits promptly.
        d, ch = self.daemon()
        rec = self.ok(ch, 'CreateCredential', {'credential': {
            'name': uname('slow'), 'tenant': TENANT,
            'source': {'kind': 'kubernetes-secret',
                       'ref': {'namespace': NS, 'name': 'git-slow', 'key': 'token'}}}})
        self.api.fault({'method': 'GET', 'resource': 'secrets', 'name': 'git-slow'},
                       {'delay_ms': 60000})
        out = self.create(ch, [{'credential': rec.name, 'env': 'GIT_TOKEN'}])
        self.assertEqual(out.code, 'OK', out)
        wait_for(lambda: any(f['seen'] for f in self.api.admin('GET', '/faults')['faults']),
                 what='the Secret read to be in flight')
        t0 = time.monotonic()
        self.assertEqual(d.stop(timeout=env.scaled(50)), 0, d.stderr_text()[-2000:])
        # Joined first, the worker would wait out its bound: twice the
        # request timeout (5 s here) and a second, 11 s.
        self.assertLess(time.monotonic() - t0, env.scaled(3))
        # Nothing was made for it: the read never answered.
        self.assertEqual(self.objects('sandboxes'), [])

    def test_run_as_user_sets_fs_group_to_the_sandbox_group(self):
        d, ch = self.daemon(pod_security={'run_as_user': 1000, 'run_as_group': 2000})
        c = Client(ch)
        out = self.create(ch, self.credentials(ch)[1:])
        self.assertEqual(out.code, 'OK', out)
        self.assertEqual(phase_name(c.wait_phase(out.response.id, ('READY', 'FAILED'))),
                         'READY')
        pod = self.sandbox_object(out.response.id)['spec']['podTemplate']['spec']
        self.assertEqual(pod['securityContext']['fsGroup'], 2000)
        self.assertEqual(pod['volumes'][0]['secret']['defaultMode'], 0o440)
        self.assertNotIn('env', pod['containers'][0])

    def test_garbage_collector_takes_the_secret_with_the_sandbox(self):
        d, ch = self.daemon()
        c = Client(ch)
        out = self.create(ch, self.credentials(ch))
        self.assertEqual(out.code, 'OK', out)
        sid = out.response.id
        self.assertEqual(phase_name(c.wait_phase(sid, ('READY', 'FAILED'))), 'READY')
        name = self.sandbox_object(sid)['metadata']['name']
        self.assertIn(name + '-credentials', self.secrets())
        # With the gateway down, only the garbage collector can delete it.
        d.stop()
        since = self.api.last_seq()
        self.api_delete('/apis/agents.x-k8s.io/v1beta1/namespaces/%s/sandboxes/%s' % (NS, name))
        wait_for(lambda: name + '-credentials' not in self.secrets(),
                 what='the Secret to be collected')
        self.assertEqual([r for r in self.api.requests(since=since)
                          if r['resource'] == 'secrets'], [])

    def test_create_retried_after_a_failure_keeps_one_owned_secret(self):
        d, ch = self.daemon(max_retries=0)
        c = Client(ch)
        # The Sandbox cannot be made at first; the Secret is made already.
        self.api.fault({'resource': 'sandboxes', 'method': 'POST', 'count': 2},
                       {'status': 503})
        out = self.create(ch, self.credentials(ch))
        self.assertEqual(out.code, 'OK', out)
        sid = out.response.id
        ready = c.wait_phase(sid, ('READY', 'FAILED'), timeout=env.scaled(60))
        self.assertEqual(phase_name(ready), 'READY', ready.status.message)
        sbo = self.sandbox_object(sid)
        sname = sbo['metadata']['name'] + '-credentials'
        mine = [s for s in self.objects('secrets')
                if s['metadata']['labels'].get('sandgate.io/sandbox-id') == sid]
        self.assertEqual([s['metadata']['name'] for s in mine], [sname])
        self.assertEqual(mine[0]['metadata']['ownerReferences'][0]['uid'],
                         sbo['metadata']['uid'])
        self.assertEqual(mine[0]['data']['c0'], b64(self.env_secret.encode()))
        posts = [r['status'] for r in writes(self.api.requests(), resource='secrets')
                 if r['method'] == 'POST']
        self.assertEqual(posts[0], 201)
        self.assertEqual(set(posts[1:]), {409})  # found again, not duplicated
        self.assert_no_leak(d)

    def test_foreign_secret_under_our_name_fails_the_create_untouched(self):
        d, ch = self.daemon(max_retries=0)
        c = Client(ch)
        rule = self.api.fault({'resource': 'sandboxes', 'method': 'POST'},
                              {'status': 503})['ids'][0]
        out = self.create(ch, self.credentials(ch))
        self.assertEqual(out.code, 'OK', out)
        sid = out.response.id
        secret = wait_for(lambda: next((s for s in self.objects('secrets')
                                        if s['metadata']['labels'].get(
                                            'sandgate.io/sandbox-id') == sid), None),
                          what='the Secret')
        sname = secret['metadata']['name']
        # Someone else's Secret takes the name while the Sandbox waits.
        self.api_delete('/api/v1/namespaces/%s/secrets/%s' % (NS, sname))
        foreign = {'apiVersion': 'v1', 'kind': 'Secret', 'type': 'Opaque',
                   'metadata': {'name': sname, 'namespace': NS, 'labels': {'app': 'other'}},
                   'data': {'token': b64(b'not-ours')}}
        self.api.admin('POST', '/objects', foreign)
        self.api.admin('DELETE', '/faults/%d' % rule)
        failed = c.wait_phase(sid, ('FAILED', 'READY'), timeout=env.scaled(60))
        self.assertEqual(phase_name(failed), 'FAILED')
        self.assertIn('Secret %s/%s already exists and does not belong' % (NS, sname),
                      failed.status.message)
        got = self.secrets()[sname]
        self.assertEqual(got['data'], foreign['data'])
        self.assertEqual(got['metadata']['labels'], {'app': 'other'})
        self.assertNotIn('ownerReferences', got['metadata'])
        self.assertEqual([o for o in self.objects('sandboxes')
                          if o['metadata']['labels'].get('sandgate.io/sandbox-id') == sid],
                         [])

    def test_ownerless_leftover_secret_is_swept_at_start(self):
        def secret(nm, gateway):
            return {'apiVersion': 'v1', 'kind': 'Secret', 'type': 'Opaque',
                    'metadata': {'name': nm, 'namespace': NS, 'labels': {
                        'sandgate.io/sandbox-id': nm[3:-len('-credentials')],
                        'sandgate.io/gateway-id': gateway,
                        'app.kubernetes.io/managed-by': 'sandgate'}},
                    'data': {'c0': b64(b'left-' + uuid.uuid4().hex.encode())}}
        # A create that never got to its Sandbox, and another gateway's.
        self.api.admin('POST', '/objects', {'objects': [
            secret('sg-ghost-credentials', GATEWAY_ID),
            secret('sg-other-credentials', 'gw-other')]})
        d, ch = self.daemon()
        wait_for(lambda: 'sg-ghost-credentials' not in self.secrets(),
                 what='the leftover Secret to be deleted')
        self.assertIn('sg-other-credentials', self.secrets())
        deletes = [r['name'] for r in writes(self.api.requests(), resource=None)
                   if r['method'] == 'DELETE']
        self.assertEqual(deletes, ['sg-ghost-credentials'])

    def test_claims_and_bad_targets_are_refused(self):
        d, ch = self.daemon()
        bindings = self.credentials(ch)
        before = self.api.last_seq()
        claim = self.call(ch, 'CreateSandbox', {'sandbox': {
            'name': uname('sb'), 'tenant': TENANT,
            'spec': {'credentials': bindings, 'driverConfig': {'kubernetes': {
                'agentSandbox': {'allocation': 'SandboxClaim', 'warmPool': 'pool'}}}}}})
        self.assertEqual(claim.code, 'UNIMPLEMENTED', claim)
        self.assertIn('not supported with SandboxClaim allocation', claim.details)
        bad = self.create(ch, [bindings[0], {'credential': bindings[1]['credential'],
                                             'file': '/run/a:b'}])
        self.assertEqual(bad.code, 'INVALID_ARGUMENT', bad)
        self.assertIn("kubernetes: credentials[1]: file '/run/a:b' is not a usable "
                      "mountPath", bad.details)
        self.assertEqual(writes(self.api.requests(since=before), resource=None), [])


if __name__ == '__main__':
    unittest.main()
