"""Allocation by SandboxClaim against a warm pool, end to end: the real
binary with driver kubernetes, a grpcio client, and the Kubernetes API
stand-in of tests/k8s/, whose claim controller binds a ready pool member
after its bind delay, or creates a cold Sandbox named after the claim when
the pool has none (tests/k8s/README.md, "Extension controllers").

A sandbox allocated so is backed by its SandboxClaim: READY when the claim
is Ready, with the reason WarmStart or ColdStart and the bound Sandbox in
the message; FAILED on the claim controller's terminal reasons; DELETED
once the claim is gone (its Sandbox goes with it).
"""
import json
import os
import time
import unittest
import urllib.request
import uuid

import grpc

from sgtest import env, protos, rpcs
from sgtest import jwt as sgjwt
from sgtest.authfix import bind_subjects, keydir, policy, role
from sgtest.daemon import DaemonTestCase
from sgtest.sandboxes import Client, phase_name
from test_k8s_driver import HAVE_STANDIN, StandIn, driver_config, writes

EXT = '/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/%s/%s'
NS = 'sbx-default'          # the driver's default namespace (driver_config())


def name():
    return 'clm-' + uuid.uuid4().hex[:10]


def claim_body(nm, pool='wp', env_vars=None, ttl=0, **block):
    ks = {'agentSandbox': {'allocation': 'SandboxClaim', 'warmPool': pool}}
    if 'template' in block:
        ks['agentSandbox']['template'] = block.pop('template')
    ks.update(block)
    spec = {'driverConfig': {'kubernetes': ks}}
    if env_vars:
        spec['env'] = env_vars
    if ttl:
        spec['ttlSeconds'] = ttl
    return {'name': nm, 'tenant': 'team-a', 'project': 'review', 'spec': spec}


def template(nm, **spec):
    s = {'podTemplate': {'spec': {'containers': [
        {'name': 'main', 'image': 'busybox:1.37', 'command': ['sleep', '3600']}]}}}
    s.update(spec)
    return {'apiVersion': 'extensions.agents.x-k8s.io/v1beta1', 'kind': 'SandboxTemplate',
            'metadata': {'name': nm, 'namespace': NS}, 'spec': s}


def pool(nm, tmpl, replicas):
    return {'apiVersion': 'extensions.agents.x-k8s.io/v1beta1', 'kind': 'SandboxWarmPool',
            'metadata': {'name': nm, 'namespace': NS},
            'spec': {'replicas': replicas, 'sandboxTemplateRef': {'name': tmpl}}}


def ready_reason(sb):
    return next((c.reason for c in sb.status.conditions if c.type == 'Ready'), '')


class ClaimStandIn(StandIn):
    def seed(self, *objs):
        self.admin('POST', '/objects', {'objects': list(objs)})

    def get(self, plural, nm):
        out = self.admin('GET', '/objects?resource=%s&namespace=%s' % (plural, NS))['objects']
        return next((o for o in out if o['metadata']['name'] == nm), None)

    def objects(self, plural):
        return self.admin('GET', '/objects?resource=%s&namespace=%s' % (plural, NS))['objects']

    def api_request(self, method, plural, nm, body=None, ctype='application/json'):
        req = urllib.request.Request(
            self.info['url'] + EXT % (NS, plural) + '/' + nm, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={'Content-Type': ctype, 'Authorization': 'Bearer ' + self.info['token']})
        with urllib.request.urlopen(req, timeout=10, context=self.ctx) as r:
            return json.loads(r.read())

    def request_patch(self, plural, nm, patch):
        return self.api_request('PATCH', plural, nm, patch, 'application/merge-patch+json')

    def request_delete(self, plural, nm):
        return self.api_request('DELETE', plural, nm)

    def wait_pool_ready(self, nm, n):
        deadline = time.monotonic() + env.scaled(20)
        while time.monotonic() < deadline:
            p = self.get('sandboxwarmpools', nm)
            if p and (p.get('status') or {}).get('readyReplicas') == n:
                return p
            time.sleep(0.05)
        raise AssertionError('pool %s never had %d ready members' % (nm, n))


@unittest.skipUnless(HAVE_STANDIN, 'the Kubernetes API stand-in (tests/k8s/standin.py) is not there')
class K8sClaimTest(DaemonTestCase):
    def setUp(self):
        self.api = ClaimStandIn(ready_delay_ms=200)
        self.addCleanup(self.api.stop)
        self.api.namespace(NS)
        self.api.seed(template('tmpl'))

    def gateway(self, **extra):
        d = self.start_daemon(config=driver_config(self.api.kubeconfig, **extra))
        return d, Client(self.admin_channel(d))

    def claim_posts(self, since=0):
        return [r for r in writes(self.api.requests(since=since), resource='sandboxclaims')
                if r['method'] == 'POST']

    def test_warm_claim_ready_then_deleted_with_its_sandbox(self):
        self.api.seed(pool('wp', 'tmpl', 2))
        self.api.wait_pool_ready('wp', 2)
        # After the wait: the pool's controller makes its members.
        members = {m['metadata']['name'] for m in self.api.objects('sandboxes')}
        _, c = self.gateway()
        sb = c.create(claim_body(name(), ttl=600))
        got = c.wait_phase(sb.id, ('READY', 'FAILED'))
        self.assertEqual(phase_name(got), 'READY', got.status.message)
        self.assertEqual(ready_reason(got), 'WarmStart')
        self.assertEqual(got.status.backend_object, 'kubernetes/%s/sg-%s' % (NS, sb.id))
        claim = self.api.get('sandboxclaims', 'sg-' + sb.id)
        bound = claim['status']['sandbox']['name']
        self.assertIn(bound, members)                       # a pool member
        self.assertIn('bound to Sandbox %s (warm start)' % bound, got.status.message)
        self.assertIn(claim['status']['sandbox']['podIPs'][0], got.status.message)
        md = claim['metadata']
        self.assertEqual(md['labels']['sandgate.io/sandbox-id'], sb.id)
        self.assertEqual(md['annotations']['sandgate.io/owner'], got.owner)
        spec = claim['spec']
        self.assertEqual(spec['warmPoolRef'], {'name': 'wp'})
        self.assertEqual(spec['lifecycle']['shutdownPolicy'], 'Delete')
        self.assertIn('shutdownTime', spec['lifecycle'])
        # Our annotations reach the pod; our labels do not by default (the
        # claim controller allows only sandbox.users.io label keys).
        apm = spec['additionalPodMetadata']
        self.assertEqual(apm['annotations']['sandgate.io/owner'], got.owner)
        self.assertNotIn('labels', apm)
        posts = self.claim_posts()
        self.assertEqual(len(posts), 1)
        self.assertEqual([r for r in writes(self.api.requests()) if r['method'] == 'POST'], [])
        c.delete(sb.id)
        self.assertEqual(phase_name(c.wait_phase(sb.id, ('DELETED',))), 'DELETED')
        self.assertIsNone(self.api.get('sandboxclaims', 'sg-' + sb.id))
        deadline = time.monotonic() + env.scaled(10)
        while self.api.get('sandboxes', bound) is not None:
            self.assertLess(time.monotonic(), deadline, 'the bound Sandbox stayed')
            time.sleep(0.05)

    def test_empty_pool_is_a_cold_start(self):
        self.api.seed(pool('wp', 'tmpl', 0))
        _, c = self.gateway()
        sb = c.create(claim_body(name()))
        got = c.wait_phase(sb.id, ('READY', 'FAILED'))
        self.assertEqual(phase_name(got), 'READY', got.status.message)
        self.assertEqual(ready_reason(got), 'ColdStart')
        self.assertIn('bound to Sandbox sg-%s (cold start)' % sb.id, got.status.message)
        cold = self.api.get('sandboxes', 'sg-' + sb.id)
        self.assertEqual(cold['metadata']['labels']['agents.x-k8s.io/launch-type'], 'cold')
        self.assertEqual(cold['metadata']['ownerReferences'][0]['kind'], 'SandboxClaim')

    def test_terminal_reasons_fail_the_sandbox(self):
        self.api.seed(pool('wp', 'tmpl', 1), pool('lost', 'no-such-template', 0))
        _, c = self.gateway()
        cases = [
            (claim_body(name(), pool='no-such-pool'), 'WarmPoolNotFound',
             'SandboxWarmPool "no-such-pool" not found'),
            (claim_body(name(), pool='lost'), 'TemplateNotFound', 'no-such-template'),
            (claim_body(name(), podLabels={'team': 'x'}), 'InvalidMetadata', 'label key "team"'),
            (claim_body(name(), env_vars={'MODE': 'fast'}), 'EnvVarsInjectionRejected',
             'disallowed'),
        ]
        for body, reason, text in cases:
            with self.subTest(reason=reason):
                sb = c.create(body)
                got = c.wait_phase(sb.id, ('READY', 'FAILED'))
                self.assertEqual(phase_name(got), 'FAILED')
                self.assertIn(reason, [x.reason for x in got.status.conditions],
                              got.status.message)
                self.assertIn(text, got.status.message)

    def test_env_forces_a_cold_start_where_the_template_allows_it(self):
        self.api.seed(template('tmpl-env', envVarsInjectionPolicy='Allowed'),
                      pool('wpe', 'tmpl-env', 1))
        self.api.wait_pool_ready('wpe', 1)
        _, c = self.gateway()
        sb = c.create(claim_body(name(), pool='wpe', env_vars={'MODE': 'fast'}))
        got = c.wait_phase(sb.id, ('READY', 'FAILED'))
        self.assertEqual(phase_name(got), 'READY', got.status.message)
        self.assertEqual(ready_reason(got), 'ColdStart')
        claim = self.api.get('sandboxclaims', 'sg-' + sb.id)
        self.assertEqual(claim['spec']['env'], [{'name': 'MODE', 'value': 'fast'}])

    def test_pool_replenishes_while_claims_arrive(self):
        self.api.seed(pool('wp', 'tmpl', 3))
        self.api.wait_pool_ready('wp', 3)
        _, c = self.gateway()
        ids = []
        for _ in range(6):
            ids.append(c.create(claim_body(name())).id)
            time.sleep(0.1)
        reasons = []
        for sid in ids:
            got = c.wait_phase(sid, ('READY', 'FAILED'), timeout=env.scaled(30))
            self.assertEqual(phase_name(got), 'READY', got.status.message)
            reasons.append(ready_reason(got))
        # Every claim is warm or cold, as its binding says.
        for sid, reason in zip(ids, reasons):
            bound = self.api.get('sandboxclaims', 'sg-' + sid)['status']['sandbox']['name']
            self.assertEqual(reason, 'ColdStart' if bound == 'sg-' + sid else 'WarmStart')
        self.assertIn('WarmStart', reasons)
        # The pool is back to three ready members, none of them claimed.
        p = self.api.wait_pool_ready('wp', 3)
        self.assertEqual(p['status']['replicas'], 3)
        self.assertEqual(len(self.claim_posts()), 6)

    def test_restart_mid_binding_loses_nothing(self):
        self.api.seed(pool('wp', 'tmpl', 1))
        self.api.wait_pool_ready('wp', 1)
        self.api.config(bind_delay_ms=2500)
        d, c = self.gateway()
        sb = c.create(claim_body(name()))
        c.wait_phase(sb.id, ('PROVISIONING',))
        d.stop()
        d.start()
        c = Client(self.admin_channel(d))
        got = c.wait_phase(sb.id, ('READY', 'FAILED'), timeout=env.scaled(30))
        self.assertEqual(phase_name(got), 'READY', got.status.message)
        self.assertEqual(ready_reason(got), 'WarmStart')
        self.assertEqual(len(self.claim_posts()), 1)   # adopted, not created again

    def test_the_template_named_must_be_the_pools(self):
        self.api.seed(pool('wp', 'tmpl', 0))
        _, c = self.gateway()
        ok = c.create(claim_body(name(), template='tmpl'))
        self.assertEqual(phase_name(c.wait_phase(ok.id, ('READY', 'FAILED'))), 'READY')
        before = self.api.last_seq()
        bad = c.create(claim_body(name(), template='other'))
        got = c.wait_phase(bad.id, ('READY', 'FAILED'))
        self.assertEqual(phase_name(got), 'FAILED')
        self.assertIn("runs SandboxTemplate 'tmpl', not 'other'", got.status.message)
        self.assertEqual(self.claim_posts(since=before), [])   # no claim made

    def test_pod_labels_where_the_platform_allows_our_domain(self):
        self.api.seed(pool('wp', 'tmpl', 0))
        self.api.config(allowed_label_domains=['sandbox.users.io', 'sandgate.io'])
        _, c = self.gateway(claim_pod_labels=True)
        sb = c.create(claim_body(name()))
        got = c.wait_phase(sb.id, ('READY', 'FAILED'))
        self.assertEqual(phase_name(got), 'READY', got.status.message)
        labels = self.api.get('sandboxclaims', 'sg-' + sb.id)['spec'][
            'additionalPodMetadata']['labels']
        self.assertEqual(labels['sandgate.io/sandbox-id'], sb.id)
        self.assertNotIn('app.kubernetes.io/managed-by', labels)
        pm = self.api.get('sandboxes', 'sg-' + sb.id)['spec']['podTemplate']['metadata']
        self.assertEqual(pm['labels']['sandgate.io/sandbox-id'], sb.id)

    def test_claim_blocks_refuse_what_the_template_decides(self):
        _, c = self.gateway()
        cases = [
            (dict(claim_body(name()), spec=dict(claim_body(name())['spec'],
                                                image='busybox:1.37')),
             'a SandboxClaim runs its warm pool\'s template'),
            (claim_body(name(), runtimeClassName='gvisor'),
             'kubernetes.runtimeClassName: not with allocation SandboxClaim'),
            (claim_body(name(), resources={'limits': {'cpu': '1'}}),
             'kubernetes.resources: not with allocation SandboxClaim'),
        ]
        for body, text in cases:
            with self.subTest(text=text):
                e = self.assertRpcCode(grpc.StatusCode.INVALID_ARGUMENT, c.create, body)
                self.assertIn(text, e.details())
        self.assertEqual(self.claim_posts(), [])


ISS = 'https://issuer.claims.test'


def claimer(**driver_cfg):
    scopes = {'tenants': ['team-a'], 'projects': ['*'], 'namespaces': [NS]}
    driver_cfg.setdefault('fields', ['*'])
    scopes['driver_config'] = driver_cfg
    return role(['sandboxes.*'], 'own', **scopes)


ROLES = {
    # Claims from pool wp only, no template named.
    'wp-only': claimer(allocation_modes=['SandboxClaim'], warm_pools=['wp'], templates=['']),
    # Direct Sandboxes only.
    'sandbox-only': claimer(allocation_modes=['Sandbox']),
    # Claims with template tmpl named.
    'tmpl-only': claimer(allocation_modes=['SandboxClaim'], warm_pools=['*'],
                         templates=['tmpl']),
}


@unittest.skipUnless(HAVE_STANDIN, 'the Kubernetes API stand-in (tests/k8s/standin.py) is not there')
class K8sClaimAuthzTest(DaemonTestCase):
    """Allocation mode, warm pool and template are scoped per subject; a
    denial writes nothing to the API server."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.api = ClaimStandIn(ready_delay_ms=100)
        try:
            cls.api.namespace(NS)
            cls.api.seed(template('tmpl'), pool('wp', 'tmpl', 0), pool('wp2', 'tmpl', 0))
            base = os.path.join(env.WORK_DIR or cls.api.dir, cls.__name__ + '-keys')
            os.makedirs(base, exist_ok=True)
            cls.issuer = sgjwt.Issuer(ISS, [sgjwt.Key.rsa('claims-rs-1')], algorithms=['RS256'])
            cls.issuer.write_jwks(os.path.join(keydir(base), 'jwks.json'))
            pol = policy([cls.issuer], ROLES, bind_subjects(ISS, {r: r for r in ROLES}))
            cls.daemon = cls.start_class_daemon(config=driver_config(cls.api.kubeconfig),
                                                policy=pol)
            cls.tokens = {r: cls.issuer.token(r, lifetime=3600) for r in ROLES}
        except BaseException:
            cls.api.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.api.stop()

    def create(self, principal, body):
        ch = self.channel(self.daemon.address, token=self.tokens[principal])
        return rpcs.invoke(ch, 'CreateSandbox', {'sandbox': body})

    def assert_denied(self, principal, body, needle):
        before = self.api.last_seq()
        out = self.create(principal, body)
        self.assertEqual(out.code, 'PERMISSION_DENIED', out)
        self.assertIn(needle, out.details)
        self.assertEqual(writes(self.api.requests(since=before), resource=None), [])

    def assert_allowed(self, principal, body):
        out = self.create(principal, body)
        self.assertEqual(out.code, 'OK', out)
        ch = self.channel(self.daemon.address, token=self.tokens[principal])
        got = Client(ch).wait_phase(out.response.id, ('READY', 'FAILED'))
        self.assertEqual(phase_name(got), 'READY', got.status.message)

    def test_warm_pool_scope(self):
        self.assert_allowed('wp-only', claim_body(name(), pool='wp'))
        self.assert_denied('wp-only', claim_body(name(), pool='wp2'),
                           "driver_config: warm pool 'wp2' is not allowed")

    def test_allocation_mode_scope(self):
        self.assert_denied('sandbox-only', claim_body(name()),
                           "driver_config: allocation mode 'SandboxClaim' is not allowed")
        self.assert_denied('wp-only', {'name': name(), 'tenant': 'team-a', 'project': 'p',
                                       'spec': {'image': 'busybox:1.37'}},
                           "driver_config: allocation mode 'Sandbox' is not allowed")

    def test_template_scope(self):
        self.assert_allowed('tmpl-only', claim_body(name(), template='tmpl'))
        self.assert_denied('tmpl-only', claim_body(name()),
                           "driver_config: template '' is not allowed")
        self.assert_denied('wp-only', claim_body(name(), template='tmpl'),
                           "driver_config: template 'tmpl' is not allowed")


@unittest.skipUnless(HAVE_STANDIN, 'the Kubernetes API stand-in (tests/k8s/standin.py) is not there')
class K8sKeptPoolTest(DaemonTestCase):
    """Warm pools declared in the driver's settings: the gateway makes their
    SandboxTemplate and SandboxWarmPool, keeps them as declared, and says
    through the health service whether each has a ready member."""

    POOL = {'name': 'gw-pool', 'replicas': 2, 'image': 'busybox:1.37',
            'command': ['sleep', '3600'],
            'pod': {'resources': {'limits': {'cpu': '1'}},
                    'podLabels': {'sandbox.users.io/kind': 'kept'}}}
    HEALTH = 'kubernetes/warm-pool/%s/gw-pool' % NS

    def setUp(self):
        self.api = ClaimStandIn(ready_delay_ms=200)
        self.addCleanup(self.api.stop)
        self.api.namespace(NS)

    def wait_for(self, what, fn, timeout=20):
        deadline = time.monotonic() + env.scaled(timeout)
        while time.monotonic() < deadline:
            v = fn()
            if v:
                return v
            time.sleep(0.05)
        self.fail('timed out: ' + what)

    def test_the_gateway_makes_and_keeps_its_pools(self):
        # Left by an earlier configuration: ours (the label), not declared.
        self.api.seed(dict(pool('old-pool', 'gw-pool', 1), metadata={
            'name': 'old-pool', 'namespace': NS,
            'labels': {'sandgate.io/gateway-id': 'gw-it'}}))
        d = self.start_daemon(config=driver_config(self.api.kubeconfig,
                                                   warm_pools=[self.POOL]))
        ch = self.admin_channel(d)
        tmpl = self.wait_for('template', lambda: self.api.get('sandboxtemplates', 'gw-pool'))
        self.assertEqual(tmpl['metadata']['labels']['sandgate.io/gateway-id'], 'gw-it')
        pod = tmpl['spec']['podTemplate']
        self.assertEqual(pod['spec']['containers'][0]['image'], 'busybox:1.37')
        self.assertEqual(pod['spec']['containers'][0]['resources'], {'limits': {'cpu': '1'}})
        self.assertEqual(pod['metadata']['labels'], {'sandbox.users.io/kind': 'kept'})
        self.assertFalse(pod['spec']['automountServiceAccountToken'])
        self.wait_for('pool ready', lambda: (self.api.get('sandboxwarmpools', 'gw-pool') or {})
                      .get('status', {}).get('readyReplicas') == 2)
        self.wait_for('old pool deleted',
                      lambda: self.api.get('sandboxwarmpools', 'old-pool') is None)
        p = protos.get()
        self.wait_for('health SERVING', lambda: p.health_check(ch, self.HEALTH) == 'SERVING')
        # Scaled by hand: put back.
        self.api.request_patch('sandboxwarmpools', 'gw-pool', {'spec': {'replicas': 5}})
        self.wait_for('replicas put back', lambda: (self.api.get('sandboxwarmpools', 'gw-pool')
                                                    or {}).get('spec', {}).get('replicas') == 2)
        # Deleted by hand: made again.
        self.api.request_delete('sandboxwarmpools', 'gw-pool')
        self.wait_for('pool made again', lambda: (self.api.get('sandboxwarmpools', 'gw-pool')
                                                  or {}).get('status', {})
                      .get('readyReplicas') == 2)
        # A claim from it starts warm.
        c = Client(ch)
        sb = c.create(claim_body(name(), pool='gw-pool'))
        got = c.wait_phase(sb.id, ('READY', 'FAILED'))
        self.assertEqual(phase_name(got), 'READY', got.status.message)
        self.assertEqual(ready_reason(got), 'WarmStart')
        # An unknown service name stays unknown.
        with self.assertRaises(grpc.RpcError) as e:
            p.health_check(ch, 'kubernetes/warm-pool/%s/nope' % NS)
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_a_lost_write_race_is_tried_again(self):
        # The put-back PUT meets a conflict (another writer got there
        # first) and no later event comes for the pool (an annotation
        # edit: the pool's controller has nothing to do): the gateway must
        # look again on its own, not wait for one.
        self.start_daemon(config=driver_config(self.api.kubeconfig, warm_pools=[self.POOL]))
        self.wait_for('pool ready', lambda: (self.api.get('sandboxwarmpools', 'gw-pool') or {})
                      .get('status', {}).get('readyReplicas') == 2)
        self.api.fault({'method': 'PUT', 'resource': 'sandboxwarmpools', 'count': 1},
                       {'status': 409, 'reason': 'Conflict'})
        hash_key = 'sandgate.io/spec-hash'
        want = self.api.get('sandboxwarmpools', 'gw-pool')['metadata']['annotations'][hash_key]
        self.api.request_patch('sandboxwarmpools', 'gw-pool',
                               {'metadata': {'annotations': {hash_key: 'edited'}}})
        self.wait_for('annotation put back', lambda: (
            self.api.get('sandboxwarmpools', 'gw-pool') or {}).get('metadata', {})
            .get('annotations', {}).get(hash_key) == want)
        fired = [f['fired'] for f in self.api.admin('GET', '/faults')['faults']]
        self.assertEqual(fired, [1])

    def test_a_pool_without_ready_members_is_not_serving(self):
        self.api.config(unschedulable=True)
        d = self.start_daemon(config=driver_config(self.api.kubeconfig,
                                                   warm_pools=[self.POOL]))
        ch = self.admin_channel(d)
        self.wait_for('pool', lambda: self.api.get('sandboxwarmpools', 'gw-pool'))
        p = protos.get()
        self.wait_for('reported', lambda: self.health(p, ch) == 'NOT_SERVING')
        self.api.config(unschedulable=False)
        self.wait_for('health SERVING', lambda: self.health(p, ch) == 'SERVING', timeout=30)

    def health(self, p, ch):
        try:
            return p.health_check(ch, self.HEALTH)
        except grpc.RpcError:
            return None


if __name__ == '__main__':
    unittest.main()
