#!/usr/bin/python3
"""Self-tests of the Kubernetes API stand-in, with plain HTTPS requests:
the status codes and Status bodies of each error class, resourceVersion
semantics, selectors, pagination, watches, schema validation, garbage
collection, the simulated controller and every fault kind."""
import json
import os
import re
import shutil
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from standin_client import EVENTS, PODS, SANDBOXES, StandIn  # noqa: E402

SECRETS = '/api/v1/namespaces/%s/secrets'
GEN_RE = re.compile(r'^sb-[bcdfghjklmnpqrstvwxz2456789]{5}$')
TS_RE = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$')


def sandbox(name=None, image='busybox:1.37.0', **spec):
    md = {'name': name} if name else {'generateName': 'sb-'}
    s = {'podTemplate': {'spec': {'containers': [{'name': 'main', 'image': image}]}}}
    s.update(spec)
    return {'apiVersion': 'agents.x-k8s.io/v1beta1', 'kind': 'Sandbox', 'metadata': md,
            'spec': s}


def secret(name, labels=None, **data):
    return {'apiVersion': 'v1', 'kind': 'Secret',
            'metadata': {'name': name, 'labels': labels or {}}, 'stringData': data}


def cond(obj, type_):
    for c in (obj.get('status') or {}).get('conditions') or []:
        if c['type'] == type_:
            return c
    return None


class StandInTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix='standin-test-')
        cls.k = StandIn(cls.dir, namespaces=['default', 'team-a'], ready_delay_ms=50).start()

    @classmethod
    def tearDownClass(cls):
        cls.k.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        self.k.reset()
        self.k.config(ready_delay_ms=50)

    # helpers
    def create(self, obj, ns='default', path=SANDBOXES, expect=201, **params):
        code, body, _ = self.k.request('POST', path % ns, obj, params=params)
        self.assertEqual(code, expect, body)
        return body

    def get(self, name, ns='default', path=SANDBOXES):
        return self.k.request('GET', (path % ns) + '/' + name)

    def wait_sandbox(self, name, pred, ns='default', timeout=10, what='sandbox state'):
        def check():
            code, body, _ = self.get(name, ns)
            return body if code == 200 and pred(body) else None
        return self.k.wait_for(check, timeout, what=what)

    def assertStatus(self, body, code, reason):
        self.assertEqual(body.get('kind'), 'Status', body)
        self.assertEqual(body.get('apiVersion'), 'v1')
        self.assertEqual(body.get('status'), 'Failure')
        self.assertEqual(body.get('code'), code, body)
        self.assertEqual(body.get('reason'), reason, body)


class AuthAndDiscovery(StandInTest):
    def test_missing_and_wrong_token_are_401(self):
        for tok in (None, 'not-the-token'):
            code, body, _ = self.k.request('GET', SANDBOXES % 'default', token=tok)
            self.assertEqual(code, 401)
            self.assertEqual(body, {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {},
                                    'status': 'Failure', 'message': 'Unauthorized',
                                    'reason': 'Unauthorized', 'code': 401})

    def test_client_certificate_authenticates_its_cn(self):
        import http.client
        import ssl
        ctx = ssl.create_default_context(cafile=self.k.info['ca_file'])
        ctx.load_cert_chain(self.k.info['client_cert_file'], self.k.info['client_key_file'])
        conn = http.client.HTTPSConnection(self.k.host, self.k.port_number, context=ctx,
                                           timeout=10)
        code, _, _ = self.k.request('GET', SANDBOXES % 'default', token=None, conn=conn)
        conn.close()
        self.assertEqual(code, 200)
        users = [r.get('user') for r in self.k.requests(resource='sandboxes')]
        self.assertEqual(users[-1], 'kubernetes-admin')
        # Without a certificate and without a token: 401.
        code, _, _ = self.k.request('GET', SANDBOXES % 'default', token=None)
        self.assertEqual(code, 401)

    def test_rbac_rules_give_403_with_the_apiserver_message(self):
        self.k.add_token('reader', 'system:serviceaccount:sg:reader',
                         [{'verbs': ['get', 'list', 'watch'], 'resources': ['sandboxes'],
                           'apiGroups': ['agents.x-k8s.io']}])
        code, _, _ = self.k.request('GET', SANDBOXES % 'default', token='reader')
        self.assertEqual(code, 200)
        code, body, _ = self.k.request('POST', SANDBOXES % 'default', sandbox('x'),
                                       token='reader')
        self.assertStatus(body, 403, 'Forbidden')
        self.assertEqual(body['message'], 'sandboxes.agents.x-k8s.io is forbidden: User '
                         '"system:serviceaccount:sg:reader" cannot create resource "sandboxes" '
                         'in API group "agents.x-k8s.io" in the namespace "default"')
        self.assertEqual(body['details'], {'group': 'agents.x-k8s.io', 'kind': 'sandboxes'})
        code, body, _ = self.k.request('PATCH', (SANDBOXES % 'default') + '/x/status', {},
                                       token='reader',
                                       content_type='application/merge-patch+json')
        self.assertEqual(code, 403)
        self.assertIn('cannot patch resource "sandboxes/status"', body['message'])
        self.k.remove_token('reader')
        code, _, _ = self.k.request('GET', SANDBOXES % 'default', token='reader')
        self.assertEqual(code, 401)

    def test_discovery_lists_the_crds(self):
        code, body, _ = self.k.request('GET', '/apis')
        self.assertEqual(code, 200)
        groups = {g['name']: g for g in body['groups']}
        self.assertEqual(groups['agents.x-k8s.io']['preferredVersion']['version'], 'v1beta1')
        self.assertIn('extensions.agents.x-k8s.io', groups)
        code, body, _ = self.k.request('GET', '/apis/agents.x-k8s.io/v1beta1')
        names = {r['name']: r for r in body['resources']}
        self.assertEqual(names['sandboxes']['kind'], 'Sandbox')
        self.assertTrue(names['sandboxes']['namespaced'])
        self.assertIn('sandboxes/status', names)
        code, body, _ = self.k.request('GET', '/apis/extensions.agents.x-k8s.io/v1beta1')
        names = {r['name'] for r in body['resources']}
        self.assertTrue({'sandboxclaims', 'sandboxtemplates', 'sandboxwarmpools',
                         'sandboxwarmpools/scale'} <= names)
        code, body, _ = self.k.request('GET', '/api')
        self.assertEqual(body['versions'], ['v1'])

    def test_unserved_paths_are_plain_404(self):
        for p in ('/apis/agents.x-k8s.io/v1alpha1/namespaces/default/sandboxes',
                  '/apis/nope.example.com/v1/things', '/apis/agents.x-k8s.io/v1beta1/widgets',
                  '/nothing'):
            code, body, headers = self.k.request('GET', p)
            self.assertEqual(code, 404, p)
            self.assertEqual(body, '404 page not found\n')
            self.assertTrue(headers['Content-Type'].startswith('text/plain'))

    def test_unknown_subresource_is_a_notfound_status(self):
        self.create(sandbox('s1'))
        code, body, _ = self.k.request('GET', (SANDBOXES % 'default') + '/s1/scale')
        self.assertStatus(body, 404, 'NotFound')


class Create(StandInTest):
    def test_create_sets_metadata_defaults_and_drops_status(self):
        body = sandbox()
        body['status'] = {'nodeName': 'x'}
        obj = self.create(body)
        md = obj['metadata']
        self.assertRegex(md['name'], GEN_RE)
        self.assertTrue(md['resourceVersion'].isdigit())
        self.assertEqual(md['generation'], 1)
        self.assertRegex(md['creationTimestamp'], TS_RE)
        self.assertRegex(md['uid'], r'^[0-9a-f-]{36}$')
        self.assertEqual(obj['spec']['operatingMode'], 'Running')
        self.assertEqual(obj['spec']['shutdownPolicy'], 'Retain')
        self.assertNotIn('status', obj)
        other = self.create(sandbox())
        self.assertGreater(int(other['metadata']['resourceVersion']),
                           int(md['resourceVersion']))

    def test_already_exists(self):
        self.create(sandbox('dup'))
        code, body, _ = self.k.request('POST', SANDBOXES % 'default', sandbox('dup'))
        self.assertStatus(body, 409, 'AlreadyExists')
        self.assertEqual(body['message'], 'sandboxes.agents.x-k8s.io "dup" already exists')
        self.assertEqual(body['details'], {'name': 'dup', 'group': 'agents.x-k8s.io',
                                           'kind': 'sandboxes'})

    def test_not_found_and_missing_namespace(self):
        code, body, _ = self.get('nope')
        self.assertStatus(body, 404, 'NotFound')
        self.assertEqual(body['message'], 'sandboxes.agents.x-k8s.io "nope" not found')
        code, body, _ = self.k.request('GET', (PODS % 'default') + '/nope')
        self.assertEqual(body['message'], 'pods "nope" not found')
        self.assertNotIn('group', body['details'])
        code, body, _ = self.k.request('POST', SANDBOXES % 'missing-ns', sandbox('a'))
        self.assertStatus(body, 404, 'NotFound')
        self.assertEqual(body['message'], 'namespaces "missing-ns" not found')
        self.assertEqual(body['details'], {'name': 'missing-ns', 'kind': 'namespaces'})

    def test_type_meta_is_checked(self):
        body = sandbox('a')
        body['apiVersion'] = 'agents.x-k8s.io/v1alpha1'
        code, out, _ = self.k.request('POST', SANDBOXES % 'default', body)
        self.assertStatus(out, 400, 'BadRequest')
        body = sandbox('a')
        body['kind'] = 'Pod'
        code, out, _ = self.k.request('POST', SANDBOXES % 'default', body)
        self.assertStatus(out, 422, 'Invalid')
        self.assertEqual(out['details']['causes'][0]['field'], 'kind')

    def test_generate_name_with_server_defaults_on_pods(self):
        pod = {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'generateName': 'p-'},
               'spec': {'containers': [{'name': 'c', 'image': 'busybox'}]}}
        obj = self.create(pod, path=PODS)
        self.assertRegex(obj['metadata']['name'], r'^p-[bcdfghjklmnpqrstvwxz2456789]{5}$')
        spec = obj['spec']
        self.assertEqual(spec['restartPolicy'], 'Always')
        self.assertEqual(spec['serviceAccountName'], 'default')
        self.assertEqual(spec['containers'][0]['imagePullPolicy'], 'Always')
        self.assertEqual(obj['status']['phase'], 'Pending')
        self.assertNotIn('generation', obj['metadata'])


class Validation(StandInTest):
    def invalid(self, body, ns='default', path=SANDBOXES):
        code, out, _ = self.k.request('POST', path % ns, body)
        self.assertStatus(out, 422, 'Invalid')
        return out, {c['field']: c for c in out['details']['causes']}

    def test_required_fields(self):
        body = sandbox('r')
        del body['spec']
        out, causes = self.invalid(body)
        self.assertEqual(out['message'],
                         'Sandbox.agents.x-k8s.io "r" is invalid: spec: Required value')
        self.assertEqual(causes['spec'], {'reason': 'FieldValueRequired',
                                          'message': 'Required value', 'field': 'spec'})
        self.assertEqual(out['details']['kind'], 'Sandbox')
        body = sandbox('r')
        body['spec']['podTemplate']['spec'] = {}
        _, causes = self.invalid(body)
        self.assertIn('spec.podTemplate.spec.containers', causes)

    def test_enum_type_pattern_format_and_duplicates(self):
        body = sandbox('v', operatingMode='Paused', shutdownTime='tomorrow')
        c = body['spec']['podTemplate']['spec']['containers']
        c.append({'name': 'main', 'image': 'x'})
        c[0]['resources'] = {'limits': {'cpu': 'lots'}}
        body['spec']['podTemplate']['spec']['terminationGracePeriodSeconds'] = 'soon'
        out, causes = self.invalid(body)
        self.assertEqual(causes['spec.operatingMode']['reason'], 'FieldValueNotSupported')
        self.assertEqual(causes['spec.operatingMode']['message'],
                         'Unsupported value: "Paused": supported values: "Running", '
                         '"Suspended"')
        self.assertEqual(causes['spec.shutdownTime']['reason'], 'FieldValueTypeInvalid')
        self.assertEqual(causes['spec.podTemplate.spec.containers[1]']['reason'],
                         'FieldValueDuplicate')
        self.assertEqual(causes['spec.podTemplate.spec.containers[0].resources.limits.cpu']
                         ['reason'], 'FieldValueInvalid')
        self.assertEqual(causes['spec.podTemplate.spec.terminationGracePeriodSeconds']
                         ['reason'], 'FieldValueTypeInvalid')
        self.assertTrue(out['message'].startswith('Sandbox.agents.x-k8s.io "v" is invalid: ['))

    def test_metadata_validation(self):
        _, causes = self.invalid(sandbox('Not_A_Name'))
        self.assertEqual(causes['metadata.name']['reason'], 'FieldValueInvalid')
        body = sandbox('ok')
        body['metadata']['labels'] = {'bad key!': 'v'}
        _, causes = self.invalid(body)
        self.assertIn('metadata.labels', causes)
        body = {'apiVersion': 'agents.x-k8s.io/v1beta1', 'kind': 'Sandbox', 'metadata': {},
                'spec': sandbox()['spec']}
        _, causes = self.invalid(body)
        self.assertEqual(causes['metadata.name']['message'],
                         'Required value: name or generateName is required')

    def test_unknown_fields_warn_strict_ignore(self):
        body = sandbox('u1')
        body['spec']['bogus'] = 1
        body['spec']['podTemplate']['metadata'] = {'name': 'pruned'}
        code, obj, headers = self.k.request('POST', SANDBOXES % 'default', body)
        self.assertEqual(code, 201)
        self.assertEqual(sorted(headers.get_all('Warning')),
                         ['299 - "unknown field \\"spec.bogus\\""',
                          '299 - "unknown field \\"spec.podTemplate.metadata.name\\""'])
        self.assertNotIn('bogus', obj['spec'])
        self.assertEqual(obj['spec']['podTemplate']['metadata'], {})
        body['metadata']['name'] = 'u2'
        code, out, _ = self.k.request('POST', SANDBOXES % 'default', body,
                                      params={'fieldValidation': 'Strict'})
        self.assertStatus(out, 400, 'BadRequest')
        self.assertEqual(out['message'], 'strict decoding error: unknown field "spec.bogus", '
                         'unknown field "spec.podTemplate.metadata.name"')
        code, _, headers = self.k.request('POST', SANDBOXES % 'default', body,
                                          params={'fieldValidation': 'Ignore'})
        self.assertEqual(code, 201)
        self.assertIsNone(headers.get('Warning'))

    def test_volume_claim_templates_are_immutable(self):
        self.k.config(controllers=False)
        vct = [{'metadata': {'name': 'ws'}, 'spec': {'accessModes': ['ReadWriteOnce']}}]
        obj = self.create(sandbox('vct', volumeClaimTemplates=vct))
        obj['spec']['volumeClaimTemplates'][0]['metadata']['name'] = 'other'
        code, out, _ = self.k.request('PUT', (SANDBOXES % 'default') + '/vct', obj)
        self.assertStatus(out, 422, 'Invalid')
        self.assertEqual(out['details']['causes'][0]['field'], 'spec')
        self.assertIn('volumeClaimTemplates is immutable', out['message'])

    def test_secret_rules(self):
        obj = self.create(secret('s', token='abc'), path=SECRETS)
        self.assertEqual(obj['data'], {'token': 'YWJj'})
        self.assertNotIn('stringData', obj)
        self.assertEqual(obj['type'], 'Opaque')
        imm = self.create({'apiVersion': 'v1', 'kind': 'Secret', 'metadata': {'name': 'imm'},
                           'data': {'a': 'YQ=='}, 'immutable': True}, path=SECRETS)
        imm['data'] = {'a': 'Yg=='}
        code, out, _ = self.k.request('PUT', (SECRETS % 'default') + '/imm', imm)
        self.assertStatus(out, 422, 'Invalid')
        self.assertIn('field is immutable when `immutable` is set', out['message'])
        _, causes = self.invalid({'apiVersion': 'v1', 'kind': 'Secret',
                                  'metadata': {'name': 'b'}, 'data': {'k': '%%%'}},
                                 path=SECRETS)
        self.assertIn('data[k]', causes)


class Update(StandInTest):
    def test_put_needs_and_checks_resource_version(self):
        self.k.config(controllers=False)   # no controller writes in between
        obj = self.create(sandbox('u'))
        path = (SANDBOXES % 'default') + '/u'
        stale = json.loads(json.dumps(obj))
        no_rv = json.loads(json.dumps(obj))
        del no_rv['metadata']['resourceVersion']
        code, out, _ = self.k.request('PUT', path, no_rv)
        self.assertStatus(out, 422, 'Invalid')
        self.assertEqual(out['message'], 'sandboxes.agents.x-k8s.io "u" is invalid: '
                         'metadata.resourceVersion: Invalid value: 0: must be specified for an '
                         'update')
        obj['spec']['operatingMode'] = 'Suspended'
        code, new, _ = self.k.request('PUT', path, obj)
        self.assertEqual(code, 200, new)
        self.assertEqual(new['metadata']['generation'], 2)
        code, out, _ = self.k.request('PUT', path, stale)
        self.assertStatus(out, 409, 'Conflict')
        self.assertEqual(out['message'], 'Operation cannot be fulfilled on '
                         'sandboxes.agents.x-k8s.io "u": the object has been modified; please '
                         'apply your changes to the latest version and try again')
        # Metadata-only changes keep the generation.
        new['metadata']['labels'] = {'a': 'b'}
        code, newer, _ = self.k.request('PUT', path, new)
        self.assertEqual(newer['metadata']['generation'], 2)

    def test_status_subresource_split(self):
        self.k.config(controllers=False)
        obj = self.create(sandbox('st'))
        path = (SANDBOXES % 'default') + '/st'
        obj['status'] = {'nodeName': 'n1'}
        code, out, _ = self.k.request('PUT', path, obj)
        self.assertNotIn('status', out)
        out['status'] = {'nodeName': 'n1'}
        out['spec']['operatingMode'] = 'Suspended'
        out['metadata']['labels'] = {'ignored': 'yes'}
        code, st, _ = self.k.request('PUT', path + '/status', out)
        self.assertEqual(code, 200, st)
        self.assertEqual(st['status'], {'nodeName': 'n1'})
        self.assertEqual(st['spec']['operatingMode'], 'Running')
        self.assertNotIn('labels', st['metadata'])
        self.assertEqual(st['metadata']['generation'], 1)

    def test_patch_kinds(self):
        self.k.config(controllers=False)
        obj = self.create(sandbox('p'))
        path = (SANDBOXES % 'default') + '/p'
        code, out, _ = self.k.request('PATCH', path, {'metadata': {'labels': {'x': 'y'}}},
                                      content_type='application/merge-patch+json')
        self.assertEqual(out['metadata']['labels'], {'x': 'y'})
        code, out, _ = self.k.request('PATCH', path, {'metadata': {'labels': {'x': None}}},
                                      content_type='application/merge-patch+json')
        self.assertEqual(out['metadata'].get('labels', {}), {})
        code, out, _ = self.k.request('PATCH', path, [
            {'op': 'replace', 'path': '/spec/operatingMode', 'value': 'Suspended'}],
            content_type='application/json-patch+json')
        self.assertEqual(code, 200, out)
        self.assertEqual(out['spec']['operatingMode'], 'Suspended')
        code, out, _ = self.k.request('PATCH', path, [
            {'op': 'test', 'path': '/spec/operatingMode', 'value': 'Running'}],
            content_type='application/json-patch+json')
        self.assertEqual(code, 422)
        code, out, _ = self.k.request('PATCH', path, {},
                                      content_type='application/strategic-merge-patch+json')
        self.assertStatus(out, 415, 'UnsupportedMediaType')
        code, out, _ = self.k.request('PATCH', path, {'metadata': {
            'resourceVersion': obj['metadata']['resourceVersion']}},
            content_type='application/merge-patch+json')
        self.assertStatus(out, 409, 'Conflict')
        code, out, _ = self.k.request('PATCH', path, {'spec': {'operatingMode': 'Bad'}},
                                      content_type='application/merge-patch+json')
        self.assertStatus(out, 422, 'Invalid')
        code, out, _ = self.k.request('PATCH', (SANDBOXES % 'default') + '/none', {},
                                      content_type='application/merge-patch+json')
        self.assertStatus(out, 404, 'NotFound')


class Delete(StandInTest):
    def test_delete_returns_status_and_404_after(self):
        obj = self.create(sandbox('d'))
        code, out, _ = self.k.request('DELETE', (SANDBOXES % 'default') + '/d')
        self.assertEqual(code, 200)
        self.assertEqual(out, {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {},
                               'status': 'Success', 'details': {
                                   'name': 'd', 'group': 'agents.x-k8s.io',
                                   'kind': 'sandboxes', 'uid': obj['metadata']['uid']}})
        code, out, _ = self.k.request('DELETE', (SANDBOXES % 'default') + '/d')
        self.assertStatus(out, 404, 'NotFound')

    def test_finalizers_and_preconditions(self):
        self.k.config(controllers=False)
        body = sandbox('f')
        body['metadata']['finalizers'] = ['example.com/hold']
        obj = self.create(body)
        path = (SANDBOXES % 'default') + '/f'
        code, out, _ = self.k.request('DELETE', path, {
            'kind': 'DeleteOptions', 'apiVersion': 'v1', 'preconditions': {'uid': 'wrong'}})
        self.assertStatus(out, 409, 'Conflict')
        self.assertIn('Sandbox.agents.x-k8s.io "f": the UID in the precondition (wrong)',
                      out['message'])
        code, out, _ = self.k.request('DELETE', path, params={'propagationPolicy': 'Sideways'})
        self.assertStatus(out, 422, 'Invalid')
        code, out, _ = self.k.request('DELETE', path)
        self.assertEqual(code, 200)
        self.assertEqual(out['kind'], 'Sandbox')
        self.assertRegex(out['metadata']['deletionTimestamp'], TS_RE)
        self.assertEqual(out['metadata']['generation'], 2)
        code, out, _ = self.k.request('PATCH', path, {'metadata': {'finalizers': None}},
                                      content_type='application/merge-patch+json')
        self.assertEqual(code, 200)
        code, _, _ = self.get('f')
        self.assertEqual(code, 404)
        del obj

    def test_garbage_collection_by_propagation_policy(self):
        for policy, pod_survives in (('Background', False), ('Foreground', False),
                                     ('Orphan', True)):
            name = 'gc-' + policy.lower()
            self.create(sandbox(name))
            self.k.wait_for(lambda: self.get(name, path=PODS)[0] == 200, what='pod')
            code, out, _ = self.k.request('DELETE', (SANDBOXES % 'default') + '/' + name,
                                          params={'propagationPolicy': policy})
            self.assertEqual(code, 200)
            if policy == 'Foreground':
                self.assertIn('foregroundDeletion', out['metadata']['finalizers'])
            self.k.wait_for(lambda: self.get(name)[0] == 404, what='sandbox gone')
            if pod_survives:
                pod = self.k.wait_for(lambda: (lambda r: r[1] if r[0] == 200 and not
                                               r[1]['metadata'].get('ownerReferences')
                                               else None)(self.get(name, path=PODS)),
                                      what='orphaned pod')
                self.assertNotIn('deletionTimestamp', pod['metadata'])
            else:
                self.k.wait_for(lambda: self.get(name, path=PODS)[0] == 404, what='pod gone')

    def test_pod_delete_is_graceful_and_returns_the_pod(self):
        self.create(sandbox('gp'))
        self.wait_sandbox('gp', lambda o: (cond(o, 'Ready') or {}).get('status') == 'True')
        code, out, _ = self.k.request('DELETE', (PODS % 'default') + '/gp')
        self.assertEqual(code, 200)
        self.assertEqual(out['kind'], 'Pod')
        self.assertEqual(out['metadata']['deletionGracePeriodSeconds'], 30)


class ListAndSelectors(StandInTest):
    def setUp(self):
        super().setUp()
        for i, (app, tier) in enumerate([('a', 'web'), ('a', 'db'), ('b', 'web'),
                                         ('c', None), ('b', 'db'), ('a', 'cache'),
                                         ('d', 'web')]):
            labels = {'app': app}
            if tier:
                labels['tier'] = tier
            self.create(secret('s%d' % i, labels), path=SECRETS)

    def names(self, **params):
        code, out, _ = self.k.request('GET', SECRETS % 'default', params=params)
        self.assertEqual(code, 200, out)
        return [o['metadata']['name'] for o in out['items']]

    def test_label_selectors(self):
        self.assertEqual(self.names(labelSelector='app=a'), ['s0', 's1', 's5'])
        self.assertEqual(self.names(labelSelector='app==b'), ['s2', 's4'])
        self.assertEqual(self.names(labelSelector='app!=a,tier'), ['s2', 's4', 's6'])
        self.assertEqual(self.names(labelSelector='tier in (db, cache)'), ['s1', 's4', 's5'])
        self.assertEqual(self.names(labelSelector='tier notin (web)'), ['s1', 's3', 's4', 's5'])
        self.assertEqual(self.names(labelSelector='!tier'), ['s3'])
        code, out, _ = self.k.request('GET', SECRETS % 'default',
                                      params={'labelSelector': 'app in (a'})
        self.assertStatus(out, 400, 'BadRequest')

    def test_field_selectors(self):
        self.assertEqual(self.names(fieldSelector='metadata.name=s3'), ['s3'])
        self.assertEqual(len(self.names(fieldSelector='metadata.name!=s3')), 6)
        self.assertEqual(len(self.names(fieldSelector='type=Opaque')), 7)
        code, out, _ = self.k.request('GET', SANDBOXES % 'default',
                                      params={'fieldSelector': 'spec.operatingMode=Running'})
        self.assertStatus(out, 400, 'BadRequest')
        self.assertEqual(out['message'], 'field label not supported: spec.operatingMode')

    def test_pagination_is_a_consistent_snapshot(self):
        code, p1, _ = self.k.request('GET', SECRETS % 'default', params={'limit': 3})
        self.assertEqual(len(p1['items']), 3)
        self.assertEqual(p1['metadata']['remainingItemCount'], 4)
        rv = p1['metadata']['resourceVersion']
        self.create(secret('s99'), path=SECRETS)           # after the snapshot
        self.k.request('DELETE', (SECRETS % 'default') + '/s6')
        seen = [o['metadata']['name'] for o in p1['items']]
        token = p1['metadata']['continue']
        while token:
            code, page, _ = self.k.request('GET', SECRETS % 'default',
                                           params={'limit': 3, 'continue': token})
            self.assertEqual(code, 200, page)
            self.assertEqual(page['metadata']['resourceVersion'], rv)
            seen += [o['metadata']['name'] for o in page['items']]
            token = page['metadata'].get('continue')
        self.assertEqual(seen, ['s0', 's1', 's2', 's3', 's4', 's5', 's6'])
        code, out, _ = self.k.request('GET', SECRETS % 'default',
                                      params={'limit': 3, 'continue': p1['metadata']['continue'],
                                              'resourceVersion': rv})
        self.assertStatus(out, 400, 'BadRequest')

    def test_expired_continue_token_is_410_with_a_fresh_token(self):
        code, p1, _ = self.k.request('GET', SECRETS % 'default', params={'limit': 2})
        self.create(secret('late'), path=SECRETS)
        self.k.compact()
        code, out, _ = self.k.request('GET', SECRETS % 'default',
                                      params={'limit': 2, 'continue': p1['metadata']['continue']})
        self.assertStatus(out, 410, 'Expired')
        self.assertTrue(out['message'].startswith('The provided continue parameter is too old'))
        code, page, _ = self.k.request('GET', SECRETS % 'default',
                                       params={'limit': 2, 'continue': out['metadata']['continue']})
        self.assertEqual(code, 200)
        self.assertEqual([o['metadata']['name'] for o in page['items']], ['s2', 's3'])
        code, out, _ = self.k.request('GET', SECRETS % 'default',
                                      params={'limit': 2, 'resourceVersion': '3',
                                              'resourceVersionMatch': 'Exact'})
        self.assertStatus(out, 410, 'Expired')
        code, out, _ = self.k.request('GET', SECRETS % 'default', params={'continue': 'garbage'})
        self.assertStatus(out, 400, 'BadRequest')


class Watches(StandInTest):
    def test_initial_events_resume_and_deleted(self):
        a = self.create(secret('w1'), path=SECRETS)
        w = self.k.watch(SECRETS % 'default', resourceVersion='0', timeoutSeconds=5)
        self.assertEqual(w.headers['Transfer-Encoding'], 'chunked')
        t, o = next(w)
        self.assertEqual((t, o['metadata']['name']), ('ADDED', 'w1'))
        self.k.request('DELETE', (SECRETS % 'default') + '/w1')
        t, o = next(w)
        self.assertEqual(t, 'DELETED')
        self.assertGreater(int(o['metadata']['resourceVersion']),
                           int(a['metadata']['resourceVersion']))
        w.close()
        b = self.create(secret('w2'), path=SECRETS)
        self.create(secret('w3'), path=SECRETS)
        w = self.k.watch(SECRETS % 'default', resourceVersion=b['metadata']['resourceVersion'],
                         timeoutSeconds=5)
        t, o = next(w)
        self.assertEqual((t, o['metadata']['name']), ('ADDED', 'w3'))
        w.close()

    def test_bookmarks_and_timeout(self):
        self.k.config(bookmark_interval_ms=100)
        w = self.k.watch(SECRETS % 'default', resourceVersion='0', allowWatchBookmarks='true',
                         timeoutSeconds=1)
        events = list(w)
        self.assertFalse(w.dropped)
        bms = [o for t, o in events if t == 'BOOKMARK']
        self.assertTrue(bms)
        self.assertEqual(set(bms[0]), {'apiVersion', 'kind', 'metadata'})
        self.assertEqual(bms[0]['kind'], 'Secret')
        self.assertTrue(bms[0]['metadata']['resourceVersion'].isdigit())
        w = self.k.watch(SECRETS % 'default', resourceVersion='0', timeoutSeconds=1)
        self.assertEqual([t for t, _ in w], [])

    def test_too_old_resource_version_is_an_error_event(self):
        old = self.create(secret('o1'), path=SECRETS)['metadata']['resourceVersion']
        self.create(secret('o2'), path=SECRETS)
        self.k.compact()
        w = self.k.watch(SECRETS % 'default', resourceVersion=old, timeoutSeconds=5)
        self.assertEqual(w.status, 200)
        events = list(w)
        self.assertEqual(len(events), 1)
        t, st = events[0]
        self.assertEqual(t, 'ERROR')
        self.assertEqual(st['code'], 410)
        self.assertEqual(st['reason'], 'Expired')
        self.assertRegex(st['message'], r'^too old resource version: %s \(\d+\)$' % old)

    def test_history_window_expires_old_versions(self):
        self.k.config(history_size=5)
        first = self.create(secret('h0'), path=SECRETS)['metadata']['resourceVersion']
        for i in range(1, 8):
            self.create(secret('h%d' % i), path=SECRETS)
        w = self.k.watch(SECRETS % 'default', resourceVersion=first, timeoutSeconds=5)
        self.assertEqual(next(w)[0], 'ERROR')

    def test_selector_transitions(self):
        self.create(secret('t', {'app': 'x'}), path=SECRETS)
        w = self.k.watch(SECRETS % 'default', resourceVersion='0', labelSelector='app=x',
                         timeoutSeconds=5)
        self.assertEqual(next(w)[0], 'ADDED')
        self.k.request('PATCH', (SECRETS % 'default') + '/t', {'metadata': {'labels':
                                                                            {'app': 'y'}}},
                       content_type='application/merge-patch+json')
        self.assertEqual(next(w)[0], 'DELETED')
        self.k.request('PATCH', (SECRETS % 'default') + '/t', {'metadata': {'labels':
                                                                            {'app': 'x'}}},
                       content_type='application/merge-patch+json')
        self.assertEqual(next(w)[0], 'ADDED')
        w.close()

    def test_watch_does_not_block_other_requests(self):
        watches = [self.k.watch(SECRETS % 'default', resourceVersion='0', timeoutSeconds=10)
                   for _ in range(4)]
        code, _, _ = self.k.request('GET', SECRETS % 'default')
        self.assertEqual(code, 200)
        self.create(secret('nb'), path=SECRETS)
        for w in watches:
            self.assertEqual(next(w)[0], 'ADDED')
            w.close()


class Controller(StandInTest):
    def test_sandbox_becomes_ready_with_pod(self):
        self.k.config(ready_delay_ms=300)
        obj = self.create(sandbox('r1'))
        w = self.k.watch(SANDBOXES % 'default', resourceVersion=obj['metadata']['resourceVersion'],
                         fieldSelector='metadata.name=r1', timeoutSeconds=10)
        ready_seen = None
        for t, o in w:
            c = cond(o, 'Ready')
            if c and c['status'] == 'True':
                ready_seen = o
                break
            if c:
                self.assertEqual(c['reason'], 'DependenciesNotReady')
        w.close()
        self.assertIsNotNone(ready_seen)
        st = ready_seen['status']
        ready = cond(ready_seen, 'Ready')
        self.assertEqual((ready['reason'], ready['message']), ('DependenciesReady',
                                                               'Pod is Ready'))
        self.assertEqual(ready['observedGeneration'], 1)
        self.assertEqual(cond(ready_seen, 'Suspended')['reason'], 'NotSuspended')
        self.assertEqual(st['selector'], 'agents.x-k8s.io/sandbox-name-hash=%s'
                         % _fnv('r1'))
        self.assertTrue(st['podIPs'] and st['nodeName'])
        code, pod, _ = self.get('r1', path=PODS)
        self.assertEqual(pod['status']['phase'], 'Running')
        ref = pod['metadata']['ownerReferences'][0]
        self.assertEqual((ref['kind'], ref['uid'], ref['controller'], ref['blockOwnerDeletion']),
                         ('Sandbox', obj['metadata']['uid'], True, True))
        self.assertEqual(pod['metadata']['labels']['agents.x-k8s.io/sandbox-name-hash'],
                         _fnv('r1'))

    def test_image_pull_failure(self):
        self.k.config(fail_image=r'^ghcr\.io/nope/')
        self.create(sandbox('ip', image='ghcr.io/nope/x:1'))
        pod = self.k.wait_for(lambda: (lambda r: r[1] if r[0] == 200 and any(
            (cs['state'].get('waiting') or {}).get('reason') == 'ImagePullBackOff'
            for cs in r[1]['status'].get('containerStatuses') or []) else None)(
                self.get('ip', path=PODS)), what='ImagePullBackOff')
        self.assertEqual(pod['status']['phase'], 'Pending')
        code, evs, _ = self.k.request('GET', EVENTS % 'default', params={
            'fieldSelector': 'involvedObject.name=ip,involvedObject.kind=Pod'})
        reasons = [(e['reason'], e['message']) for e in evs['items']]
        self.assertIn(('Failed', 'Error: ErrImagePull'), reasons)
        self.assertIn(('BackOff', 'Back-off pulling image "ghcr.io/nope/x:1"'), reasons)
        sb = self.wait_sandbox('ip', lambda o: cond(o, 'Ready') is not None)
        self.assertEqual(cond(sb, 'Ready')['status'], 'False')
        self.assertEqual(cond(sb, 'Ready')['message'], 'Pod exists with phase: Pending')

    def test_unschedulable(self):
        self.k.config(unschedulable=True)
        self.create(sandbox('us'))
        sb = self.wait_sandbox('us', lambda o: (cond(o, 'PodScheduled') or {}).get('reason')
                               == 'Unschedulable')
        self.assertEqual(cond(sb, 'PodScheduled')['status'], 'False')
        code, evs, _ = self.k.request('GET', EVENTS % 'default',
                                      params={'fieldSelector': 'reason=FailedScheduling'})
        self.assertEqual(evs['items'][0]['involvedObject']['name'], 'us')
        self.assertEqual(evs['items'][0]['type'], 'Warning')
        self.k.config(unschedulable=False)
        self.wait_sandbox('us', lambda o: (cond(o, 'Ready') or {}).get('status') == 'True')

    def test_crashing_pod_fails_the_sandbox(self):
        self.k.config(crash_image='crash')
        self.create(sandbox('cr', image='crash:1'))
        sb = self.wait_sandbox('cr', lambda o: (cond(o, 'Finished') or {}).get('status')
                               == 'True')
        self.assertEqual(cond(sb, 'Ready')['reason'], 'PodFailed')
        self.assertEqual(cond(sb, 'Finished')['reason'], 'PodFailed')

    def test_expiry_with_delete_and_retain(self):
        past = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(time.time() - 5))
        self.create(sandbox('ex-d', shutdownTime=past, shutdownPolicy='Delete'))
        self.create(sandbox('ex-r', shutdownTime=past))
        self.k.wait_for(lambda: self.get('ex-d')[0] == 404, what='expired sandbox deleted')
        sb = self.wait_sandbox('ex-r', lambda o: (cond(o, 'Ready') or {}).get('reason')
                               == 'SandboxExpired')
        self.assertEqual(cond(sb, 'Ready')['message'], 'Sandbox has expired')
        self.k.wait_for(lambda: self.get('ex-r', path=PODS)[0] == 404, what='pod removed')


class Faults(StandInTest):
    def test_status_faults_fire_count_times(self):
        self.k.add_fault({'match': {'verb': 'create', 'resource': 'sandboxes', 'count': 1},
                          'action': {'status': 500}})
        code, out, _ = self.k.request('POST', SANDBOXES % 'default', sandbox('f1'))
        self.assertStatus(out, 500, 'InternalError')
        self.assertEqual(self.get('f1')[0], 404)   # the fault answered before the write
        self.create(sandbox('f1'))
        self.k.add_fault({'match': {'verb': 'get', 'count': 1},
                          'action': {'status': 429, 'retry_after': 2}})
        code, out, headers = self.get('f1')
        self.assertStatus(out, 429, 'TooManyRequests')
        self.assertEqual(headers['Retry-After'], '2')
        self.assertEqual(out['details']['retryAfterSeconds'], 2)
        self.k.add_fault({'match': {'verb': 'update', 'count': 1}, 'action': {'status': 409}})
        code, obj, _ = self.get('f1')
        code, out, _ = self.k.request('PUT', (SANDBOXES % 'default') + '/f1', obj)
        self.assertStatus(out, 409, 'Conflict')
        rules = {r['id']: r for r in self.k.faults()}
        self.assertTrue(all(r['fired'] == 1 for r in rules.values()))
        reqs = self.k.requests(verb='create', resource='sandboxes')
        self.assertEqual([r['status'] for r in reqs], [500, 201])
        self.assertIsNotNone(reqs[0]['fault'])
        self.assertEqual(reqs[1]['body']['metadata']['name'], 'f1')
        self.assertNotIn('Authorization', json.dumps(reqs))

    def test_fault_after_the_write(self):
        self.k.add_fault({'match': {'verb': 'create', 'count': 1},
                          'action': {'status': 503, 'after': True}})
        code, out, _ = self.k.request('POST', SANDBOXES % 'default', sandbox('aw'))
        self.assertEqual(code, 503)
        self.assertEqual(self.get('aw')[0], 200)

    def test_delay_and_dropped_connection(self):
        self.k.add_fault({'match': {'verb': 'list', 'count': 1}, 'action': {'delay_ms': 200}})
        code, _, _ = self.k.request('GET', SANDBOXES % 'default')
        self.assertEqual(code, 200)
        rec = self.k.requests(verb='list')[-1]
        self.assertGreaterEqual(rec['duration_ms'], 200)
        self.k.add_fault({'match': {'verb': 'get', 'count': 1},
                          'action': {'close_connection': True}})
        with self.assertRaises((ConnectionError, OSError, Exception)):
            self.get('anything')

    def test_watch_faults(self):
        for i in range(3):
            self.create(secret('wf%d' % i), path=SECRETS)
        self.k.add_fault({'match': {'verb': 'watch', 'count': 1},
                          'action': {'drop_watch_after_events': 2}})
        w = self.k.watch(SECRETS % 'default', resourceVersion='0', timeoutSeconds=5)
        events = list(w)
        self.assertEqual(len(events), 2)
        self.assertTrue(w.dropped)
        self.k.add_fault({'match': {'verb': 'watch', 'count': 1}, 'action': {'send_410': True}})
        w = self.k.watch(SECRETS % 'default', resourceVersion='5', timeoutSeconds=5)
        events = list(w)
        self.assertEqual(w.status, 200)
        self.assertEqual([(t, o['code']) for t, o in events], [('ERROR', 410)])
        self.k.add_fault({'match': {'verb': 'watch', 'count': 1}, 'action': {'status': 410}})
        w = self.k.watch(SECRETS % 'default', resourceVersion='5', timeoutSeconds=5)
        self.assertEqual(w.status, 410)
        self.assertEqual(w.body['reason'], 'Expired')
        w = self.k.watch(SECRETS % 'default', resourceVersion='0', timeoutSeconds=5)
        self.assertEqual(next(w)[0], 'ADDED')
        self.assertEqual(self.k.close_watches(), 1)
        rest = list(w)
        self.assertTrue(w.dropped or rest is not None)


class Namespaces(StandInTest):
    def test_terminating_namespace(self):
        self.create({'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'tmp'}},
                    path='/api/v1/namespaces%s', ns='')
        self.create(secret('x'), ns='tmp', path=SECRETS)
        code, out, _ = self.k.request('DELETE', '/api/v1/namespaces/tmp')
        self.assertEqual(code, 200)
        self.assertEqual(out['status']['phase'], 'Terminating')
        self.k.wait_for(lambda: self.k.request('GET', '/api/v1/namespaces/tmp')[0] == 404,
                        what='namespace gone')
        code, out, _ = self.k.request('POST', SECRETS % 'tmp', secret('y'))
        self.assertEqual(code, 404)


def _fnv(s):
    h = 2166136261
    for b in s.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return '%08x' % h


EXT = '/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/%s/'
TEMPLATES, POOLS, CLAIMS = EXT + 'sandboxtemplates', EXT + 'sandboxwarmpools', EXT + 'sandboxclaims'
WARM_LABEL = 'agents.x-k8s.io/warm-pool-sandbox'


def template(name, **spec):
    s = {'podTemplate': {'metadata': {'labels': {'team': 'a'}},
                         'spec': {'containers': [{'name': 'main', 'image': 'busybox:1.37.0'}]}}}
    s.update(spec)
    return {'apiVersion': 'extensions.agents.x-k8s.io/v1beta1', 'kind': 'SandboxTemplate',
            'metadata': {'name': name}, 'spec': s}


def pool(name, tmpl, replicas):
    return {'apiVersion': 'extensions.agents.x-k8s.io/v1beta1', 'kind': 'SandboxWarmPool',
            'metadata': {'name': name},
            'spec': {'replicas': replicas, 'sandboxTemplateRef': {'name': tmpl}}}


def claim(name, pool_name, **spec):
    s = {'warmPoolRef': {'name': pool_name}}
    s.update(spec)
    return {'apiVersion': 'extensions.agents.x-k8s.io/v1beta1', 'kind': 'SandboxClaim',
            'metadata': {'name': name}, 'spec': s}


class WarmPoolsAndClaims(StandInTest):
    """The SandboxTemplate, SandboxWarmPool and SandboxClaim controllers."""

    def get_path(self, path, name, ns='default'):
        code, body, _ = self.k.request('GET', (path % ns) + '/' + name)
        return body if code == 200 else None

    def members(self, pool_name):
        from standin.util import name_hash
        code, body, _ = self.k.request('GET', SANDBOXES % 'default', params={
            'labelSelector': '%s=%s' % (WARM_LABEL, name_hash(pool_name))})
        self.assertEqual(code, 200)
        return body['items']

    def ready_pool(self, name, replicas):
        self.create(template('tmpl'), path=TEMPLATES)
        self.create(pool(name, 'tmpl', replicas), path=POOLS)

        def ready():
            p = self.get_path(POOLS, name)
            return p if (p.get('status') or {}).get('readyReplicas') == replicas else None
        return self.k.wait_for(ready, 15, what='pool %s ready' % name)

    def wait_claim(self, name, pred, what):
        def check():
            c = self.get_path(CLAIMS, name)
            return c if c is not None and pred(c) else None
        return self.k.wait_for(check, 15, what=what)

    def test_pool_fills_with_owned_generated_members(self):
        p = self.ready_pool('wp', 3)
        self.assertEqual(p['status']['replicas'], 3)
        self.assertEqual(p['status']['selector'], WARM_LABEL + '=' + p['status']['selector']
                         .split('=')[1])
        ms = self.members('wp')
        self.assertEqual(len(ms), 3)
        for m in ms:
            self.assertTrue(m['metadata']['name'].startswith('wp-'))
            self.assertEqual(m['metadata']['ownerReferences'][0]['kind'], 'SandboxWarmPool')
            self.assertEqual(m['metadata']['labels']['agents.x-k8s.io/launch-type'], 'warm')
            self.assertFalse(m['spec']['podTemplate']['spec']['automountServiceAccountToken'])
        t = self.get_path(TEMPLATES, 'tmpl')
        self.assertIn('agents.x-k8s.io/sandbox-template-ref-hash', t['metadata']['labels'])

    def test_warm_claim_adopts_a_ready_member_and_the_pool_replenishes(self):
        self.ready_pool('wp', 2)
        before = {m['metadata']['name'] for m in self.members('wp')}
        self.create(claim('c1', 'wp', additionalPodMetadata={
            'labels': {'sandbox.users.io/run': 'r1'}}), path=CLAIMS)
        c = self.wait_claim('c1', lambda c: (cond(c, 'Ready') or {}).get('status') == 'True',
                            'claim Ready')
        bound = c['status']['sandbox']['name']
        self.assertIn(bound, before)           # a pool member, not a Sandbox named c1
        self.assertTrue(c['status']['sandbox']['podIPs'])
        self.assertEqual(c['metadata']['annotations']['agents.x-k8s.io/sandbox-name'], bound)
        sb = self.get(bound)[1]
        labels = sb['metadata']['labels']
        self.assertNotIn(WARM_LABEL, labels)
        self.assertEqual(labels['agents.x-k8s.io/launch-type'], 'warm')
        self.assertEqual(labels['agents.x-k8s.io/claim-uid'], c['metadata']['uid'])
        self.assertEqual([(o['kind'], o['name']) for o in sb['metadata']['ownerReferences']],
                         [('SandboxClaim', 'c1')])
        pm = sb['spec']['podTemplate']['metadata']
        self.assertEqual(pm['labels']['sandbox.users.io/run'], 'r1')
        self.assertNotIn(WARM_LABEL, pm['labels'])
        self.assertNotIn('cluster-autoscaler.kubernetes.io/safe-to-evict',
                         pm.get('annotations') or {})
        self.assertEqual(self.get_path(CLAIMS, 'c1')['status']['sandbox']['name'], bound)
        # The pool is back to two members, neither of them the adopted one.
        self.k.wait_for(lambda: len(self.members('wp')) == 2 and bound not in
                        {m['metadata']['name'] for m in self.members('wp')}, 10,
                        what='pool replenished')
        # Deleting the claim takes its Sandbox with it (no finalizer; GC).
        self.k.request('DELETE', (CLAIMS % 'default') + '/c1')
        self.k.wait_for(lambda: self.get(bound)[0] == 404, 10, what='bound Sandbox collected')

    def test_bind_delay_holds_the_adoption(self):
        self.ready_pool('wp', 1)
        self.k.config(bind_delay_ms=400)
        t0 = time.monotonic()
        self.create(claim('c2', 'wp'), path=CLAIMS)
        self.wait_claim('c2', lambda c: (c.get('status') or {}).get('sandbox'), 'bound')
        self.assertGreaterEqual(time.monotonic() - t0, 0.4)

    def test_empty_pool_falls_back_to_a_cold_sandbox_named_after_the_claim(self):
        self.ready_pool('wp0', 0)
        self.create(claim('cold1', 'wp0'), path=CLAIMS)
        c = self.wait_claim('cold1', lambda c: (cond(c, 'Ready') or {}).get('status') == 'True',
                            'cold claim Ready')
        self.assertEqual(c['status']['sandbox']['name'], 'cold1')
        sb = self.get('cold1')[1]
        self.assertEqual(sb['metadata']['labels']['agents.x-k8s.io/launch-type'], 'cold')
        self.assertEqual(sb['metadata']['ownerReferences'][0]['uid'], c['metadata']['uid'])

    def test_terminal_and_not_found_reasons(self):
        self.create(template('tmpl'), path=TEMPLATES)
        self.create(pool('wp', 'tmpl', 0), path=POOLS)
        self.create(pool('orphan', 'no-such-template', 0), path=POOLS)
        cases = [
            (claim('nopool', 'no-such-pool'), 'WarmPoolNotFound',
             'SandboxWarmPool "no-such-pool" not found'),
            (claim('notmpl', 'orphan'), 'TemplateNotFound', 'no-such-template'),
            (claim('badmeta', 'wp', additionalPodMetadata={'labels': {'team': 'x'}}),
             'InvalidMetadata', 'label key "team"'),
            (claim('badann', 'wp', additionalPodMetadata={
                'annotations': {'agents.x-k8s.io/x': 'y'}}), 'InvalidMetadata',
             'reserved domain'),
            (claim('env', 'wp', env=[{'name': 'A', 'value': 'b'}]),
             'EnvVarsInjectionRejected', 'disallowed'),
            (claim('vct', 'wp', volumeClaimTemplates=[{'metadata': {'name': 'data'},
                                                       'spec': {}}]),
             'VolumeClaimTemplatesError', 'disallowed'),
        ]
        for body, reason, text in cases:
            with self.subTest(reason=reason, claim=body['metadata']['name']):
                self.create(body, path=CLAIMS)
                c = self.wait_claim(body['metadata']['name'],
                                    lambda c: (cond(c, 'Ready') or {}).get('reason') == reason,
                                    reason)
                self.assertEqual(cond(c, 'Ready')['status'], 'False')
                self.assertIn(text, cond(c, 'Ready')['message'])
                self.assertEqual(self.get(body['metadata']['name'])[0], 404)  # nothing created

    def test_env_allowed_by_the_template_forces_a_cold_start(self):
        self.create(template('tmpl-env', envVarsInjectionPolicy='Allowed'), path=TEMPLATES)
        self.create(pool('wpe', 'tmpl-env', 1), path=POOLS)
        self.k.wait_for(lambda: (self.get_path(POOLS, 'wpe').get('status') or {})
                        .get('readyReplicas') == 1, 15, what='pool ready')
        self.create(claim('ce', 'wpe', env=[{'name': 'MODE', 'value': 'x'}]), path=CLAIMS)
        c = self.wait_claim('ce', lambda c: (c.get('status') or {}).get('sandbox'), 'bound')
        self.assertEqual(c['status']['sandbox']['name'], 'ce')   # cold, not the warm member
        env = self.get('ce')[1]['spec']['podTemplate']['spec']['containers'][0]['env']
        self.assertEqual(env, [{'name': 'MODE', 'value': 'x'}])

    def test_claim_expiry_with_shutdown_policy_delete(self):
        self.ready_pool('wp', 1)
        when = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(time.time() + 2))
        self.create(claim('exp', 'wp', lifecycle={'shutdownTime': when,
                                                  'shutdownPolicy': 'Delete'}), path=CLAIMS)
        c = self.wait_claim('exp', lambda c: (c.get('status') or {}).get('sandbox'), 'bound')
        bound = c['status']['sandbox']['name']
        self.k.wait_for(lambda: self.get_path(CLAIMS, 'exp') is None, 15, what='claim deleted')
        self.k.wait_for(lambda: self.get(bound)[0] == 404, 15, what='its Sandbox collected')

if __name__ == '__main__':
    unittest.main(verbosity=2)
