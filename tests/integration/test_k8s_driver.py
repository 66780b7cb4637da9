"""The kubernetes driver end to end: the real binary with driver kubernetes,
a grpcio client, and the Kubernetes API stand-in of tests/k8s/.

Schema tests need no API server (validation is synchronous); the rest
start the stand-in (`tests/k8s/standin.py --state-dir DIR`, which writes
DIR/standin.json and DIR/kubeconfig) and skip when it is not there. Every
call to the stand-in's admin API goes through the StandIn class below.
"""
import json
import os
import ssl
import subprocess
import sys
import time
import unittest
import urllib.request
import uuid

import grpc

from sgtest import env
from sgtest.daemon import DaemonTestCase, short_tempdir
from sgtest.sandboxes import Client, phase_name

STANDIN = os.path.join(env.SOURCE_ROOT or '.', 'tests', 'k8s', 'standin.py')
HAVE_STANDIN = os.path.exists(STANDIN)
GATEWAY_ID = 'gw-it'


def name():
    return 'k8s-' + uuid.uuid4().hex[:10]


def body(nm, driver=None, **spec):
    spec.setdefault('image', 'busybox:1.37')
    spec.setdefault('command', ['sleep', '3600'])
    if driver is not None:
        spec['driverConfig'] = {'kubernetes': driver}
    return {'name': nm, 'tenant': 'team-a', 'project': 'review', 'spec': spec}


class StandIn:
    """The stand-in process and its admin API."""

    def __init__(self, **config):
        self.dir = short_tempdir()
        args = [sys.executable, STANDIN, '--state-dir', self.dir]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, 'stderr.log'), 'w'))
        info = os.path.join(self.dir, 'standin.json')
        deadline = time.monotonic() + env.scaled(20)
        while not os.path.exists(info):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError('the stand-in did not start')
            time.sleep(0.05)
        time.sleep(0.1)
        with open(info) as f:
            self.info = json.load(f)
        self.kubeconfig = os.path.join(self.dir, 'kubeconfig')
        self.ctx = ssl.create_default_context(cafile=self.info['ca_file'])
        if config:
            self.config(**config)

    def admin(self, method, path, payload=None):
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.info['admin_url'] + path, data=data, method=method,
                                     headers={'Content-Type': 'application/json'})
        kw = {'context': self.ctx} if self.info['admin_url'].startswith('https') else {}
        with urllib.request.urlopen(req, timeout=10, **kw) as r:
            text = r.read()
        return json.loads(text) if text else None

    def config(self, **kv):
        return self.admin('POST', '/config', kv)

    def fault(self, match, action):
        return self.admin('POST', '/faults', {'match': match, 'action': action})

    def clear_faults(self):
        return self.admin('DELETE', '/faults')

    def requests(self, since=0):
        """The request log, from the entry after seq since on."""
        out = self.admin('GET', '/requests?since=%d' % since if since else '/requests')
        return out.get('requests', out) if isinstance(out, dict) else out

    def last_seq(self):
        """The seq of the newest request logged (0 for none)."""
        return self.admin('GET', '/requests?since=%d' % (1 << 62)).get('last') or 0

    def namespace(self, ns):
        """Create a namespace through the API itself, as a platform would."""
        req = urllib.request.Request(
            self.info['url'] + '/api/v1/namespaces', method='POST',
            data=json.dumps({'apiVersion': 'v1', 'kind': 'Namespace',
                             'metadata': {'name': ns}}).encode(),
            headers={'Content-Type': 'application/json',
                     'Authorization': 'Bearer ' + self.info['token']})
        try:
            urllib.request.urlopen(req, timeout=10, context=self.ctx).read()
        except urllib.error.HTTPError as e:
            if e.code != 409:
                raise

    def sandboxes(self, ns):
        req = urllib.request.Request(
            self.info['url'] + '/apis/agents.x-k8s.io/v1beta1/namespaces/%s/sandboxes' % ns,
            headers={'Authorization': 'Bearer ' + self.info['token']})
        with urllib.request.urlopen(req, timeout=10, context=self.ctx) as r:
            return json.loads(r.read())['items']

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def reasons(sb):
    return [c.reason for c in sb.status.conditions]


def writes(reqs, resource='sandboxes'):
    """The requests that write, to resource (None: to any resource)."""
    return [r for r in reqs if resource in (None, r.get('resource'))
            and r.get('method') in ('POST', 'PUT', 'PATCH', 'DELETE')]


def gets_of_items(reqs, resource='sandboxes'):
    return [r for r in reqs if r.get('resource') == resource and r.get('method') == 'GET'
            and r.get('name') and not r.get('watch')]


def driver_config(kubeconfig, **extra):
    settings = {'kubeconfig': kubeconfig, 'gateway_id': GATEWAY_ID,
                'default_namespace': 'sbx-default', 'retry_base_ms': 20,
                'retry_max_ms': 200, 'request_timeout_ms': 5000}
    settings.update(extra)
    return {'driver': {'name': 'kubernetes', 'settings': settings}}


class K8sSchemaTest(DaemonTestCase):
    """Validation is synchronous: no API server needed."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        d = short_tempdir()
        kc = os.path.join(d, 'kubeconfig')
        with open(kc, 'w') as f:
            f.write('apiVersion: v1\nkind: Config\ncurrent-context: x\n'
                    'clusters: [{name: c, cluster: {server: "https://127.0.0.1:9"}}]\n'
                    'users: [{name: u, user: {token: t}}]\n'
                    'contexts: [{name: x, context: {cluster: c, user: u}}]\n')
        cls.daemon = cls.start_class_daemon(config=driver_config(kc))

    def setUp(self):
        self.c = Client(self.admin_channel(self.daemon))

    CASES = [
        ({'nmespace': 'x'}, 'kubernetes.nmespace: unknown key'),
        ({'namespace': 7}, 'kubernetes.namespace: expected a string'),
        ({'namespace': 'Bad_NS'}, "kubernetes.namespace: 'Bad_NS' is not a namespace name"),
        ({'resources': {'limits': {'cpu': '2x'}}},
         "kubernetes.resources.limits.cpu: invalid quantity '2x'"),
        ({'resources': {'requests': {'cpu': '2'}, 'limits': {'cpu': '1'}}},
         'kubernetes.resources.requests.cpu: must be less than or equal to the limit'),
        ({'tolerations': [{'key': 'a', 'operator': 'Maybe'}]},
         "kubernetes.tolerations[0].operator: 'Maybe' is not Exists or Equal"),
        ({'nodeSelector': {'a': 1}}, 'kubernetes.nodeSelector.a: expected a string'),
        ({'podLabels': {'sandgate.io/sandbox-id': 'x'}},
         'kubernetes.podLabels.sandgate.io/sandbox-id: is reserved by sandgate'),
        ({'podAnnotations': {'sandgate.io/owner': 'x'}},
         'kubernetes.podAnnotations.sandgate.io/owner: is reserved by sandgate'),
        ({'imagePullSecrets': 'x'}, 'kubernetes.imagePullSecrets: expected an array'),
        ({'agentSandbox': {'allocation': 'Pod'}},
         "kubernetes.agentSandbox.allocation: 'Pod' is not Sandbox or SandboxClaim"),
        ({'agentSandbox': {'allocation': 'SandboxClaim'}},
         'kubernetes.agentSandbox.warmPool: required with allocation SandboxClaim'),
    ]

    def test_every_schema_error_is_invalid_argument_naming_the_path(self):
        for block, message in self.CASES:
            with self.subTest(block=block):
                e = self.assertRpcCode(grpc.StatusCode.INVALID_ARGUMENT, self.c.create,
                                       body(name(), block))
                self.assertIn(message, e.details())

    def test_no_image_is_refused(self):
        e = self.assertRpcCode(grpc.StatusCode.INVALID_ARGUMENT, self.c.create,
                               body(name(), {}, image=''))
        self.assertIn('needs an image', e.details())


@unittest.skipUnless(HAVE_STANDIN, 'the Kubernetes API stand-in (tests/k8s/standin.py) is not there')
class K8sDriverTest(DaemonTestCase):
    def setUp(self):
        self.api = StandIn(ready_delay_ms=200)
        self.addCleanup(self.api.stop)
        for ns in ('sbx-default', 'sbx-team-a'):
            self.api.namespace(ns)

    def gateway(self, **extra):
        d = self.start_daemon(config=driver_config(self.api.kubeconfig, **extra))
        return d, Client(self.admin_channel(d))

    def wait_gone(self, ns, sid):
        deadline = time.monotonic() + env.scaled(20)
        while time.monotonic() < deadline:
            if not [o for o in self.api.sandboxes(ns)
                    if o['metadata']['labels'].get('sandgate.io/sandbox-id') == sid]:
                return
            time.sleep(0.05)
        self.fail('Sandbox of %s still in %s' % (sid, ns))

    def test_create_ready_delete_in_requested_and_default_namespace(self):
        _, c = self.gateway()
        a = c.create(body(name(), {'namespace': 'sbx-team-a'}, ttlSeconds=600))
        b = c.create(body(name()))
        for sb, ns in ((a, 'sbx-team-a'), (b, 'sbx-default')):
            got = c.wait_phase(sb.id, ('READY', 'FAILED'))
            self.assertEqual(phase_name(got), 'READY', got.status.message)
            self.assertEqual(got.status.backend_object,
                             'kubernetes/%s/sg-%s' % (ns, sb.id))
            objs = self.api.sandboxes(ns)
            mine = [o for o in objs if o['metadata']['name'] == 'sg-' + sb.id]
            self.assertEqual(len(mine), 1)
            labels = mine[0]['metadata']['labels']
            self.assertEqual(labels['sandgate.io/sandbox-id'], sb.id)
            self.assertEqual(labels['sandgate.io/gateway-id'], GATEWAY_ID)
            self.assertEqual(labels['sandgate.io/tenant'], 'team-a')
            # The record's facts, exactly, on the object and its pods.
            for meta in (mine[0]['metadata'],
                         mine[0]['spec']['podTemplate']['metadata']):
                anns = meta['annotations']
                self.assertEqual(anns['sandgate.io/owner'], got.owner)
                # Left out when not set (the client sent no request id).
                self.assertEqual(anns.get('sandgate.io/request-id', ''),
                                 got.request_id)
                self.assertEqual(anns.get('sandgate.io/policy-hash', ''),
                                 got.status.policy_hash)
            pod = mine[0]['spec']['podTemplate']['spec']
            self.assertEqual(pod['restartPolicy'], 'Never')
            self.assertFalse(pod['automountServiceAccountToken'])
        self.assertEqual(self.api.sandboxes('sbx-team-a')[0]['spec']['shutdownPolicy'], 'Delete')
        # Steady state: no GET of single objects, however long we wait.
        before = len(gets_of_items(self.api.requests()))
        time.sleep(1.5)
        self.assertEqual(len(gets_of_items(self.api.requests())), before)
        for sb in (a, b):
            c.delete(sb.id)
        for sb, ns in ((a, 'sbx-team-a'), (b, 'sbx-default')):
            self.assertEqual(phase_name(c.wait_phase(sb.id, ('DELETED',))), 'DELETED')
            self.wait_gone(ns, sb.id)
        w = writes(self.api.requests())
        self.assertEqual(len([r for r in w if r['method'] == 'POST']), 2)
        self.assertEqual(len([r for r in w if r['method'] == 'DELETE']), 2)

    def test_failure_reason_is_mapped(self):
        self.api.config(crash_image='crashme')
        _, c = self.gateway()
        sb = c.create(body(name(), image='crashme:1'))
        got = c.wait_phase(sb.id, ('READY', 'FAILED'))
        self.assertEqual(phase_name(got), 'FAILED')
        self.assertIn('PodFailed', reasons(got), got.status.message)

    def test_missing_namespace_fails_clearly(self):
        _, c = self.gateway()
        sb = c.create(body(name(), {'namespace': 'no-such-ns'}))
        got = c.wait_phase(sb.id, ('READY', 'FAILED'))
        self.assertEqual(phase_name(got), 'FAILED')
        self.assertIn('DriverRejected', reasons(got))
        self.assertIn('HTTP 404 NotFound', got.status.message)

    def test_faults_converge_without_duplicates(self):
        self.api.fault({'method': 'POST', 'resource': 'sandboxes', 'count': 2},
                       {'status': 503})
        self.api.fault({'method': 'POST', 'resource': 'sandboxes', 'count': 1},
                       {'status': 429, 'retry_after': 1})
        self.api.fault({'watch': True, 'resource': 'sandboxes', 'count': 1},
                       {'send_410': True})
        _, c = self.gateway()
        ids = [c.create(body(name())).id for _ in range(5)]
        for sid in ids:
            got = c.wait_phase(sid, ('READY', 'FAILED'), timeout=env.scaled(40))
            self.assertEqual(phase_name(got), 'READY', got.status.message)
        for f in self.api.admin('GET', '/faults')['faults']:
            self.assertGreater(f['fired'], 0, f)  # every fault was met
        objs = self.api.sandboxes('sbx-default')
        names = [o['metadata']['name'] for o in objs]
        self.assertEqual(sorted(names), sorted('sg-' + i for i in ids))
        for sid in ids:
            c.delete(sid)
        for sid in ids:
            c.wait_phase(sid, ('DELETED',))
        self.assertEqual(self.api.sandboxes('sbx-default'), [])

    def test_restart_mid_provisioning_loses_nothing(self):
        self.api.config(ready_delay_ms=3000)
        d, c = self.gateway()
        ids = [c.create(body(name())).id for _ in range(3)]
        for sid in ids:
            c.wait_phase(sid, ('PROVISIONING',))
        d.stop()
        d.start()
        c = Client(self.admin_channel(d))
        for sid in ids:
            got = c.wait_phase(sid, ('READY', 'FAILED'), timeout=env.scaled(30))
            self.assertEqual(phase_name(got), 'READY', got.status.message)
        posts = [r for r in writes(self.api.requests()) if r['method'] == 'POST']
        self.assertEqual(len(posts), 3)  # nothing created twice


    def test_foreign_object_under_our_name_fails_clearly(self):
        # The POST waits at the server while someone else creates an
        # object of the same name: the create meets AlreadyExists, reads
        # the object, finds it is not ours, and fails without touching it.
        self.api.fault({'method': 'POST', 'resource': 'sandboxes', 'count': 1},
                       {'delay_ms': 1500})
        _, c = self.gateway()
        sb = c.create(body(name()))
        self.api.admin('POST', '/objects', {
            'apiVersion': 'agents.x-k8s.io/v1beta1', 'kind': 'Sandbox',
            'metadata': {'name': 'sg-' + sb.id, 'namespace': 'sbx-default',
                         'labels': {'app': 'someone-else'}},
            'spec': {'podTemplate': {'spec': {'containers': [
                {'name': 'c', 'image': 'busybox:1.37'}]}}}})
        got = c.wait_phase(sb.id, ('READY', 'FAILED'))
        self.assertEqual(phase_name(got), 'FAILED')
        self.assertIn('already exists and does not belong to this sandbox',
                      got.status.message)
        objs = [o for o in self.api.sandboxes('sbx-default')
                if o['metadata']['name'] == 'sg-' + sb.id]
        self.assertEqual(len(objs), 1)
        self.assertEqual(objs[0]['metadata']['labels'], {'app': 'someone-else'})
        w = writes(self.api.requests())
        self.assertEqual([r['method'] for r in w], ['POST'])  # no delete, no update

    def test_restart_adopts_through_a_paged_list(self):
        d, c = self.gateway(list_page_size=2)
        ids = [c.create(body(name())).id for _ in range(5)]
        for sid in ids:
            self.assertEqual(phase_name(c.wait_phase(sid, ('READY', 'FAILED'))), 'READY')
        d.stop()
        since = self.api.last_seq()
        d.start()
        c = Client(self.admin_channel(d))
        deadline = time.monotonic() + env.scaled(20)
        lists = []
        while time.monotonic() < deadline:
            lists = [r for r in self.api.requests(since=since)
                     if r.get('resource') == 'sandboxes' and r.get('method') == 'GET'
                     and not r.get('watch') and not r.get('name')]
            if len(lists) >= 3 and any(r.get('watch') for r in self.api.requests(since=since)):
                break
            time.sleep(0.05)
        # 5 objects at 2 a page: three pages, each after the first with
        # the previous page's continue token.
        self.assertGreaterEqual(len(lists), 3, lists)
        self.assertTrue(all('limit=2' in r['query'] for r in lists), lists)
        self.assertEqual(len([r for r in lists if 'continue=' in r['query']]), len(lists) - 1)
        for sid in ids:
            self.assertEqual(phase_name(c.get(sid)), 'READY')
        self.assertEqual(writes(self.api.requests(since=since)), [])  # adopted, not recreated

    def unknown_object(self, nm):
        return {'apiVersion': 'agents.x-k8s.io/v1beta1', 'kind': 'Sandbox',
                'metadata': {'name': nm, 'namespace': 'sbx-default',
                             'labels': {'sandgate.io/gateway-id': GATEWAY_ID,
                                        'sandgate.io/managed-by': 'sandgate'}},
                'spec': {'podTemplate': {'spec': {'containers': [
                    {'name': 'c', 'image': 'busybox:1.37'}]}}}}

    def test_unknown_objects_are_reported_or_deleted_as_configured(self):
        self.api.admin('POST', '/objects', self.unknown_object('left-behind'))
        d, c = self.gateway()
        sb = c.create(body(name()))  # the namespace's watch starts
        self.assertEqual(phase_name(c.wait_phase(sb.id, ('READY', 'FAILED'))), 'READY')
        self.assertIn('left-behind',
                      [o['metadata']['name'] for o in self.api.sandboxes('sbx-default')])
        self.assertEqual([r for r in writes(self.api.requests())
                          if r['method'] == 'DELETE'], [])
        d.stop()
        d.rewrite_config({'driver': {'settings': {'delete_unknown': True}}})
        d.start()
        c = Client(self.admin_channel(d))
        deadline = time.monotonic() + env.scaled(20)
        while time.monotonic() < deadline:
            if 'left-behind' not in [o['metadata']['name']
                                     for o in self.api.sandboxes('sbx-default')]:
                break
            time.sleep(0.05)
        deletes = [r for r in writes(self.api.requests()) if r['method'] == 'DELETE']
        self.assertEqual([r.get('name') for r in deletes], ['left-behind'])
        self.assertEqual(phase_name(c.get(sb.id)), 'READY')  # ours untouched

    def test_cluster_wide_watch(self):
        _, c = self.gateway(cluster_wide_watch=True)
        a = c.create(body(name(), {'namespace': 'sbx-team-a'}))
        b = c.create(body(name()))
        for sb in (a, b):
            self.assertEqual(phase_name(c.wait_phase(sb.id, ('READY', 'FAILED'))), 'READY')
        watches = [r for r in self.api.requests()
                   if r.get('resource') == 'sandboxes' and r.get('watch')]
        self.assertTrue(watches)
        self.assertTrue(all(not r.get('namespace') for r in watches), watches)
        self.assertTrue(all('gateway-id%3D' + GATEWAY_ID in r['query'] or
                            'gateway-id=' + GATEWAY_ID in r['query']
                            for r in watches), watches)


    def cert_kubeconfig(self, inline):
        """A kubeconfig with a client certificate and no token: file
        paths, or the same as base64 *-data."""
        import base64

        def data(path):
            with open(path, 'rb') as f:
                return base64.b64encode(f.read()).decode()
        info = self.api.info
        if inline:
            cluster = {'server': info['url'],
                       'certificate-authority-data': data(info['ca_file'])}
            user = {'client-certificate-data': data(info['client_cert_file']),
                    'client-key-data': data(info['client_key_file'])}
        else:
            cluster = {'server': info['url'], 'certificate-authority': info['ca_file']}
            user = {'client-certificate': info['client_cert_file'],
                    'client-key': info['client_key_file']}
        path = os.path.join(self.api.dir, 'kubeconfig-cert-%s' % ('data' if inline else 'files'))
        with open(path, 'w') as f:
            json.dump({'apiVersion': 'v1', 'kind': 'Config',
                       'clusters': [{'name': 'c', 'cluster': cluster}],
                       'users': [{'name': 'u', 'user': user}],
                       # a current context naming nothing: the named one is used
                       'contexts': [{'name': 'other', 'context': {'cluster': 'x', 'user': 'y'}},
                                    {'name': 'cert', 'context': {'cluster': 'c', 'user': 'u'}}],
                       'current-context': 'other'}, f)  # JSON is YAML
        os.chmod(path, 0o600)
        return path

    def test_kubeconfig_client_certificate_files_and_data(self):
        for inline in (False, True):
            with self.subTest(inline=inline):
                since = self.api.last_seq()
                d = self.start_daemon(config=driver_config(
                    self.cert_kubeconfig(inline), context='cert'))
                c = Client(self.admin_channel(d))
                sb = c.create(body(name()))
                got = c.wait_phase(sb.id, ('READY', 'FAILED'))
                self.assertEqual(phase_name(got), 'READY', got.status.message)
                users = {r.get('user') for r in self.api.requests(since=since)}
                # Every request authenticated by the certificate (the
                # stand-in's token user is another name).
                self.assertEqual(users, {'kubernetes-admin'})
                d.stop()


if __name__ == '__main__':
    unittest.main()
