"""Authorization end to end through the kubernetes driver: a policy file,
JWT callers, the real binary, and the Kubernetes API stand-in of
tests/k8s/.

The authorizer decides on the placement facts the driver reports (its
describe(): namespace with the default applied, service account, runtime
class, node selector pairs, toleration keys, the largest CPU and memory,
allocation mode, and the dotted path of every key set). So every scope is
tried with a kubernetes driver_config block, and each answer is checked
where it lands:

- a denial is PERMISSION_DENIED naming the field and value (the formats of
  authz/policy.h), leaves no sandbox row and no audit "allow", and the
  stand-in's request log shows no request that writes;
- an allowed create reaches READY, and the Sandbox object in the stand-in
  carries exactly the placement asked for, and the caller as owner.

One role per scope under test; each differs from a role that may create
plainly in team-a only in what it limits.
"""
import os
import sqlite3
import time
import unittest
import uuid

from sgtest import env, rpcs
from sgtest import jwt as sgjwt
from sgtest.authfix import bind_subjects, keydir, policy, role
from sgtest.daemon import DaemonTestCase
from sgtest.sandboxes import Client, db_path, phase_name
from test_authz import missing_id_like
from test_k8s_driver import HAVE_STANDIN, StandIn, driver_config, writes

ISS = 'https://issuer.k8s.test'
TENANT = 'team-a'
GATEWAY_NS = 'sandgate-system'
DEFAULT_NS = 'sbx-default'   # the driver's default_namespace (driver_config())
NAMESPACES = (DEFAULT_NS, 'sbx-team-a', 'sbx-other', GATEWAY_NS)
PD, NF, OK = 'PERMISSION_DENIED', 'NOT_FOUND', 'OK'
OWNER_ANNOTATION = 'sandgate.io/owner'   # docs/DRIVERS.md, "Annotations"
# The pod spec keys a block may set, and the container's resources.
POD_KEYS = ('serviceAccountName', 'runtimeClassName', 'priorityClassName',
            'nodeSelector', 'tolerations')


def creator(namespaces=None, service_accounts=None, **driver_cfg):
    """A role that may create in team-a (any project), limited by the
    scopes given. Every kubernetes block reports an allocation mode
    ("Sandbox" by default), so each role allows that one."""
    scopes = {'tenants': [TENANT], 'projects': ['*']}
    if namespaces is not None:
        scopes['namespaces'] = namespaces
    if service_accounts is not None:
        scopes['service_accounts'] = service_accounts
    driver_cfg.setdefault('allocation_modes', ['Sandbox'])
    scopes['driver_config'] = driver_cfg
    return role(['sandboxes.*'], 'own', **scopes)


ROLES = {
    # A namespace glob, and no other key but namespace.
    'ns-glob': creator(namespaces=['sbx-team-*'], fields=['namespace']),
    # Only the driver's default namespace, and no driver_config key at all.
    'ns-default': creator(namespaces=[DEFAULT_NS]),
    # Everything; the gateway's own namespace is refused anyway.
    'star': creator(namespaces=['*'], service_accounts=['*'], fields=['*'],
                    runtime_classes=['*'], node_selector={'*': ['*']},
                    toleration_keys=['*'], allocation_modes=['*'], templates=['*'],
                    warm_pools=['*']),
    # One service account; not setting one is the empty value, not allowed.
    'sa': creator(namespaces=['*'], service_accounts=['sandbox-runner'],
                  fields=['serviceAccountName']),
    # Every value allowed, but only three keys may be set.
    'fields': creator(namespaces=['*'], service_accounts=['*'],
                      fields=['namespace', 'runtimeClassName', 'nodeSelector'],
                      runtime_classes=['*'], node_selector={'*': ['*']},
                      toleration_keys=['*']),
    # Every key, limited values.
    'values': creator(namespaces=['sbx-*'], service_accounts=['', 'sandbox-runner'],
                      fields=['*'], runtime_classes=['', 'gvisor'],
                      node_selector={'pool': ['secure-*'], 'zone': ['*']},
                      toleration_keys=['example.com/*'], max_cpu='2', max_memory='1Gi'),
    # Claims only: a block that sets no allocation is a Sandbox all the
    # same, and the driver reports it so.
    'claims': creator(namespaces=['*'], service_accounts=['*'], fields=['*'],
                      allocation_modes=['SandboxClaim']),
    # Another tenant's administrator.
    'team-b': role(['sandboxes.*'], 'tenant', tenants=['team-b'], projects=['*'],
                   namespaces=['*']),
}
ROLE_OF = {name: name for name in ROLES}

# The placement the 'values' role allows at its ceilings: every sensitive
# key set, CPU and memory exactly at max_cpu and max_memory.
FULL = {
    'namespace': 'sbx-team-a',
    'serviceAccountName': 'sandbox-runner',
    'runtimeClassName': 'gvisor',
    'priorityClassName': 'sandbox-high',
    'nodeSelector': {'zone': 'z1', 'pool': 'secure-rce'},
    'tolerations': [
        {'key': 'example.com/gpu', 'operator': 'Exists'},
        {'key': 'example.com/dedicated', 'operator': 'Equal', 'value': 'rce',
         'effect': 'NoSchedule'},
    ],
    'resources': {'requests': {'cpu': '500m', 'memory': '512Mi'},
                  'limits': {'cpu': '2', 'memory': '1Gi'}},
}

# An extended resource name longer than the 64 bytes a message quotes:
# its field path is whole all the same.
LONG_RESOURCE = 'accelerators.vendor-with-a-long-name.example.com/gpu-model-a100-80gb'
GIB = 1 << 30
MIB = 1 << 20
# (block, the text the PERMISSION_DENIED must contain) for the 'values'
# role: one value out of bounds each, everything else allowed or unset.
VALUE_DENIALS = [
    ({'runtimeClassName': 'runc'}, "driver_config: runtime class 'runc' is not allowed"),
    ({'nodeSelector': {'pool': 'general'}},
     "driver_config: node selector 'pool=general' is not allowed"),
    ({'nodeSelector': {'pool': 'secure-rce', 'gpu': 'yes'}},
     "driver_config: node selector 'gpu=yes' is not allowed"),
    ({'tolerations': [{'key': 'example.com/ok', 'operator': 'Exists'},
                      {'key': 'other.org/dedicated', 'operator': 'Exists'}]},
     "driver_config: toleration key 'other.org/dedicated' is not allowed"),
    # A toleration without a key tolerates every taint: the empty key.
    ({'tolerations': [{'operator': 'Exists'}]},
     "driver_config: toleration key '' is not allowed"),
    ({'resources': {'limits': {'cpu': '3'}}},
     'driver_config: CPU 3000m exceeds the ceiling 2000m'),
    ({'resources': {'requests': {'cpu': '2001m'}}},
     'driver_config: CPU 2001m exceeds the ceiling 2000m'),
    # The largest of request and limit counts, not the request.
    ({'resources': {'requests': {'cpu': '1'}, 'limits': {'cpu': '2500m'}}},
     'driver_config: CPU 2500m exceeds the ceiling 2000m'),
    # A number in the block (a protobuf Struct carries it as a double).
    ({'resources': {'limits': {'cpu': 2.5}}},
     'driver_config: CPU 2500m exceeds the ceiling 2000m'),
    ({'resources': {'limits': {'memory': '2Gi'}}},
     'driver_config: memory %d bytes exceeds the ceiling %d' % (2 * GIB, GIB)),
    ({'resources': {'requests': {'memory': '1500Mi'}}},
     'driver_config: memory %d bytes exceeds the ceiling %d' % (1500 * MIB, GIB)),
    ({'resources': {'requests': {'memory': '1Gi'}, 'limits': {'memory': '1025Mi'}}},
     'driver_config: memory %d bytes exceeds the ceiling %d' % (1025 * MIB, GIB)),
    ({'resources': {'limits': {'memory': '1073741825'}}},
     'driver_config: memory %d bytes exceeds the ceiling %d' % (GIB + 1, GIB)),
    ({'namespace': 'team-a'}, "driver_config: namespace 'team-a' is not allowed"),
    ({'serviceAccountName': 'default'},
     "driver_config: service account 'default' is not allowed"),
]


def uname():
    return 'k8z-' + uuid.uuid4().hex[:10]


@unittest.skipUnless(HAVE_STANDIN, 'the Kubernetes API stand-in (tests/k8s/standin.py) is not there')
class K8sAuthzTest(DaemonTestCase):
    """One stand-in and one gateway (driver kubernetes, the policy above,
    an audit log, auth.gateway_namespace) for the class."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.api = StandIn(ready_delay_ms=100)
        try:
            for ns in NAMESPACES:
                cls.api.namespace(ns)
            base = os.path.join(env.WORK_DIR or cls.api.dir, cls.__name__ + '-keys')
            os.makedirs(base, exist_ok=True)
            cls.issuer = sgjwt.Issuer(ISS, [sgjwt.Key.rsa('k8s-rs-1')], algorithms=['RS256'])
            cls.issuer.write_jwks(os.path.join(keydir(base), 'jwks.json'))
            cls.policy = policy([cls.issuer], ROLES, bind_subjects(ISS, ROLE_OF))
            cls.daemon = cls.start_class_daemon(
                config=driver_config(cls.api.kubeconfig), policy=cls.policy, audit=True,
                auth={'gateway_namespace': GATEWAY_NS})
            cls.tokens = {sub: cls.issuer.token(sub, lifetime=3600) for sub in ROLE_OF}
        except BaseException:
            cls.api.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.api.stop()

    def setUp(self):
        self.test_start = self.api.last_seq()
        self.allowed_names = set()

    def tearDown(self):
        # A denied create must not write later either: every write since
        # the test began is for a sandbox that was allowed.
        time.sleep(0.2)
        posted = set()
        for w in writes(self.api.requests(since=self.test_start), resource=None):
            ann = ((w.get('body') or {}).get('metadata') or {}).get('annotations') or {}
            name = ann.get('sandgate.io/sandbox-name')
            self.assertIn(name, self.allowed_names,
                          'a write to the API server for no allowed sandbox: %s %s'
                          % (w.get('method'), w.get('path')))
            posted.add(name)
        self.assertEqual(posted, self.allowed_names, 'one POST per allowed sandbox')

    # helpers -------------------------------------------------------------

    def chan(self, principal, daemon=None):
        return self.channel((daemon or self.daemon).address, token=self.tokens[principal])

    def subject(self, principal):
        return self.issuer.subject(principal)

    def create(self, principal, block, name=None, tenant=TENANT, daemon=None):
        name = name or uname()
        spec = {'image': 'busybox:1.37', 'command': ['sleep', '3600']}
        if block is not None:
            spec['driverConfig'] = {'kubernetes': block}
        body = {'sandbox': {'name': name, 'tenant': tenant, 'project': 'p1', 'spec': spec},
                'requestId': 'req-' + name}
        return name, rpcs.invoke(self.chan(principal, daemon), 'CreateSandbox', body)

    def rows_named(self, name, daemon=None):
        con = sqlite3.connect('file:%s?mode=ro' % db_path(daemon or self.daemon), uri=True,
                              timeout=10)
        try:
            return con.execute('SELECT id FROM sandboxes WHERE name = ?', (name,)).fetchall()
        finally:
            con.close()

    def assert_denied(self, principal, block, needle, daemon=None):
        """The create is PERMISSION_DENIED naming needle, and left nothing:
        no request that writes, no row, a deny line in the audit log."""
        daemon = daemon or self.daemon
        before = self.api.last_seq()
        name, out = self.create(principal, block, daemon=daemon)
        self.assertEqual(out.code, PD, '%s %r: %r' % (principal, block, out))
        self.assertIn(needle, out.details, '%s %r' % (principal, block))
        self.assertEqual(writes(self.api.requests(since=before), resource=None), [],
                         '%s %r: the denied create wrote to the API server' % (principal, block))
        self.assertEqual(self.rows_named(name, daemon), [], '%s %r' % (principal, block))
        lines = [r for r in daemon.audit_records() if r.get('request_id') == 'req-' + name]
        self.assertEqual([(r.get('decision'), r.get('code'), r.get('subject')) for r in lines],
                         [('deny', PD, self.subject(principal))], lines)
        return out

    def assert_allowed(self, principal, block, namespace, daemon=None, resources=None):
        """The create is allowed and READY, and the Sandbox object in the
        stand-in carries exactly block's placement (resources: the
        container's resources when they differ from the block's text), in
        namespace, owned by the caller. Returns (the sandbox, the Sandbox
        object)."""
        name, out = self.create(principal, block, daemon=daemon)
        self.assertEqual(out.code, OK, '%s %r: %r' % (principal, block, out))
        self.allowed_names.add(name)
        sb = out.response
        self.assertEqual(sb.owner, self.subject(principal))
        self.assertEqual(sb.status.namespace, namespace)
        c = Client(self.chan(principal, daemon))
        got = c.wait_phase(sb.id, ('READY', 'FAILED'), timeout=env.scaled(30))
        self.assertEqual(phase_name(got), 'READY', got.status.message)
        self.assertEqual(got.status.backend_object, 'kubernetes/%s/sg-%s' % (namespace, sb.id))
        objs = [o for o in self.api.sandboxes(namespace)
                if o['metadata']['name'] == 'sg-' + sb.id]
        self.assertEqual(len(objs), 1, 'no Sandbox sg-%s in %s' % (sb.id, namespace))
        obj = objs[0]
        self.assertEqual(obj['metadata']['namespace'], namespace)
        ann = obj['metadata'].get('annotations') or {}
        self.assertEqual(ann.get(OWNER_ANNOTATION), self.subject(principal))
        self.assertEqual(ann.get('sandgate.io/tenant'), TENANT)
        block = block or {}
        pod = obj['spec']['podTemplate']['spec']
        for key in POD_KEYS:
            if key in block:
                self.assertEqual(pod.get(key), block[key], key)
            else:
                self.assertNotIn(key, pod, 'the block did not set %s' % key)
        containers = pod['containers']
        self.assertEqual(len(containers), 1)
        self.assertEqual(containers[0].get('resources') or {},
                         resources if resources is not None else block.get('resources', {}))
        # Nowhere else either: no other namespace has it.
        for ns in NAMESPACES:
            if ns != namespace:
                self.assertEqual([o for o in self.api.sandboxes(ns)
                                  if o['metadata']['name'] == 'sg-' + sb.id], [], ns)
        return sb, obj

    # namespace -----------------------------------------------------------

    def test_namespace_glob(self):
        self.assert_allowed('ns-glob', {'namespace': 'sbx-team-a'}, 'sbx-team-a')
        self.assert_denied('ns-glob', {'namespace': 'sbx-other'},
                           "driver_config: namespace 'sbx-other' is not allowed")
        # No namespace: the driver's default is what is authorized.
        self.assert_denied('ns-glob', None,
                           "driver_config: namespace '%s' is not allowed" % DEFAULT_NS)
        self.assert_denied('ns-glob', {},
                           "driver_config: namespace '%s' is not allowed" % DEFAULT_NS)

    def test_default_namespace(self):
        self.assert_allowed('ns-default', None, DEFAULT_NS)
        self.assert_allowed('ns-default', {}, DEFAULT_NS)
        self.assert_denied('ns-default', {'namespace': 'sbx-team-a'},
                           "driver_config: namespace 'sbx-team-a' is not allowed")
        # The namespace is allowed, setting the key is not.
        self.assert_denied('ns-default', {'namespace': DEFAULT_NS},
                           'driver_config.namespace: setting this field is not allowed')

    def test_gateway_namespace_refused_even_for_star(self):
        own = "driver_config: namespace '%s' is the gateway's own" % GATEWAY_NS
        self.assert_denied('star', {'namespace': GATEWAY_NS}, own)
        self.assert_allowed('star', {'namespace': 'sbx-other'}, 'sbx-other')
        # A driver whose default is the gateway's namespace: omitting the
        # namespace is refused the same way. (Its own gateway id: it must
        # not take the class gateway's objects for its own.)
        d = self.start_daemon(config=driver_config(self.api.kubeconfig, gateway_id='gw-it-ns',
                                                   default_namespace=GATEWAY_NS),
                              policy=self.policy, audit=True,
                              auth={'gateway_namespace': GATEWAY_NS})
        self.assert_denied('star', None, own, daemon=d)
        self.assert_denied('star', {'serviceAccountName': 'x'}, own, daemon=d)
        self.assert_allowed('star', {'namespace': 'sbx-team-a'}, 'sbx-team-a', daemon=d)

    # service account ---------------------------------------------------

    def test_service_account(self):
        self.assert_allowed('sa', {'serviceAccountName': 'sandbox-runner'}, DEFAULT_NS)
        self.assert_denied('sa', {'serviceAccountName': 'root-sa'},
                           "driver_config: service account 'root-sa' is not allowed")
        # The list has no "": a sandbox must name the allowed account.
        self.assert_denied('sa', None, "driver_config: service account '' is not allowed")

    # driver_config fields --------------------------------------------------

    def test_driver_config_fields(self):
        self.assert_allowed('fields', {'runtimeClassName': 'gvisor',
                                       'nodeSelector': {'pool': 'general'}}, DEFAULT_NS)
        for block, field in [
                ({'tolerations': [{'key': 'example.com/a', 'operator': 'Exists'}]},
                 'tolerations'),
                ({'priorityClassName': 'sandbox-high'}, 'priorityClassName'),
                ({'serviceAccountName': 'sandbox-runner'}, 'serviceAccountName'),
                ({'resources': {'limits': {'cpu': '1'}}}, 'resources.limits.cpu'),
                ({'resources': {'requests': {'memory': '1Mi'}}}, 'resources.requests.memory'),
                ({'resources': {'limits': {LONG_RESOURCE: '1'}}},
                 'resources.limits.' + LONG_RESOURCE),
                ({'agentSandbox': {'allocation': 'Sandbox'}}, 'agentSandbox.allocation'),
                ({'podLabels': {'a': 'b'}}, 'podLabels'),
                ({'imagePullSecrets': ['reg']}, 'imagePullSecrets'),
                # An allowed key does not let a forbidden one through.
                ({'nodeSelector': {'pool': 'x'}, 'tolerations': []}, 'tolerations')]:
            with self.subTest(field=field):
                self.assert_denied('fields', block,
                                   'driver_config.%s: setting this field is not allowed' % field)

    # sensitive values --------------------------------------------------------

    def test_sensitive_values_denied(self):
        for block, needle in VALUE_DENIALS:
            with self.subTest(block=block):
                self.assert_denied('values', block, needle)

    def test_sensitive_values_allowed_at_the_ceilings(self):
        sb, obj = self.assert_allowed('values', FULL, 'sbx-team-a')
        pod = obj['spec']['podTemplate']['spec']
        self.assertEqual(pod['nodeSelector'], {'pool': 'secure-rce', 'zone': 'z1'})
        self.assertEqual(pod['containers'][0]['resources'], FULL['resources'])
        # Nothing set: every list here allows the unset value, and the
        # default namespace matches sbx-*.
        self.assert_allowed('values', None, DEFAULT_NS)
        # Numbers (doubles in the request) at the ceilings, sent as text.
        self.assert_allowed('values', {'resources': {'limits': {'cpu': 2, 'memory': GIB}}},
                            DEFAULT_NS,
                            resources={'limits': {'cpu': '2', 'memory': str(GIB)}})

    def test_allocation_mode_is_reported_when_defaulted(self):
        for block in (None, {'agentSandbox': {'allocation': 'Sandbox'}}):
            with self.subTest(block=block):
                self.assert_denied('claims', block,
                                   "driver_config: allocation mode 'Sandbox' is not allowed")

    # reads across tenants and owners -------------------------------------

    def test_read_of_another_tenant_is_not_found(self):
        sb, _ = self.assert_allowed('values', {'namespace': 'sbx-team-a'}, 'sbx-team-a')
        missing = missing_id_like(sb.id)
        before = self.api.last_seq()
        for principal in ('team-b', 'ns-glob'):   # another tenant; another owner
            ch = self.chan(principal)
            for rpc in ('GetSandbox', 'DeleteSandbox'):
                with self.subTest(principal=principal, rpc=rpc):
                    hidden = rpcs.invoke(ch, rpc, {'id': sb.id})
                    absent = rpcs.invoke(ch, rpc, {'id': missing})
                    self.assertEqual(hidden.code, NF, hidden)
                    self.assertEqual(absent.code, NF, absent)
                    self.assertEqual(hidden.details.replace(sb.id, 'ID'),
                                     absent.details.replace(missing, 'ID'))
            listed = rpcs.invoke(ch, 'ListSandboxes', {'pageSize': 1000})
            self.assertEqual(listed.code, OK, listed)
            self.assertNotIn(sb.id, [s.id for s in listed.response.sandboxes])
        self.assertEqual(writes(self.api.requests(since=before), resource=None), [])
        got = Client(self.chan('values')).get(sb.id)
        self.assertEqual(phase_name(got), 'READY')


if __name__ == '__main__':
    unittest.main()
