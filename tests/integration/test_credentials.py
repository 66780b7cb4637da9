"""CredentialService through the real binary: records of each source kind
(file under a configured directory, env with a prefix, kubernetes-secret
whose Check needs the kubernetes driver), the credential scope (kind,
Secret namespace, name and key; tenant), NOT_FOUND for what a caller may
not see, Check, validation errors naming the field, the audit log, and a
leak test: a known secret value, resolved by checks, appears in no log
line, audit line, response, event or database byte."""
import os
import sqlite3
import uuid

from sgtest import env, rpcs
from sgtest import jwt as sgjwt
from sgtest.authfix import bind_subjects, keydir, policy, role
from sgtest.daemon import DaemonTestCase
from sgtest.sandboxes import db_path, events

ISS = 'https://issuer.test'
ENV_PREFIX = 'SGTCRED_'
OK, PD, NF, IA = 'OK', 'PERMISSION_DENIED', 'NOT_FOUND', 'INVALID_ARGUMENT'
PERMS = ['credentials.*']
SECRET_ROLE = {'kind': 'kubernetes-secret', 'namespace': 'sbx-*', 'name': 'git-*',
               'key': 'token'}

ROLE_OF = {'admin': 'admin', 'alice': 'team-a', 'bob': 'team-b', 'filer': 'file-only',
           'reader': 'reader'}
ROLES = {
    'admin': role(PERMS, 'any', tenants=['*'], projects=['*'],
                  credentials={'sources': [{'kind': '*', 'namespace': '*', 'name': '*',
                                            'key': '*'}]}),
    'team-a': role(PERMS, 'tenant', tenants=['team-a'], projects=['*'],
                   credentials={'sources': [{'kind': 'file'}, {'kind': 'env'},
                                            SECRET_ROLE]}),
    'team-b': role(PERMS, 'tenant', tenants=['team-b'], projects=['*'],
                   credentials={'sources': [{'kind': 'env'}]}),
    'file-only': role(PERMS, 'own', tenants=['team-a'], projects=['*'],
                      credentials={'sources': [{'kind': 'file'}]}),
    'reader': role(['credentials.get', 'credentials.list'], 'tenant', tenants=['team-a'],
                   projects=['*']),
}


def uname(prefix='c'):
    return '%s-%s' % (prefix, uuid.uuid4().hex[:8])


def cred(name, tenant, kind, ref, **extra):
    c = {'name': name, 'tenant': tenant, 'source': {'kind': kind, 'ref': ref}}
    c.update(extra)
    return {'credential': c}


class _CredBase(DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        base = os.path.join(env.WORK_DIR, cls.__name__ + '-files')
        os.makedirs(base, exist_ok=True)
        cls.cred_dir = os.path.join(base, 'creds')
        os.makedirs(cls.cred_dir, exist_ok=True)
        cls.outside_dir = os.path.join(base, 'outside')
        os.makedirs(cls.outside_dir, exist_ok=True)
        # Known values: the leak test looks for them everywhere.
        cls.file_secret = 'filesecret-%s' % uuid.uuid4().hex
        cls.env_secret = 'envsecret-%s' % uuid.uuid4().hex
        cls.file_path = os.path.join(cls.cred_dir, 'git-token')
        with open(cls.file_path, 'w') as f:
            f.write(cls.file_secret)
        with open(os.path.join(cls.outside_dir, 'other'), 'w') as f:
            f.write('outside-%s' % uuid.uuid4().hex)
        signer = sgjwt.Key.rsa('rs-1')
        cls.issuer = sgjwt.Issuer(ISS, [signer], algorithms=['RS256'])
        cls.issuer.write_jwks(os.path.join(keydir(base), 'jwks.json'))
        cls.daemon = cls.start_class_daemon(
            driver='noop', audit=True,
            policy=policy([cls.issuer], ROLES, bind_subjects(ISS, ROLE_OF)),
            config={'credentials': {'file_directories': [cls.cred_dir],
                                    'env_prefix': ENV_PREFIX}},
            env_extra={ENV_PREFIX + 'GIT_TOKEN': cls.env_secret})
        cls.tokens = {p: cls.issuer.token(p, lifetime=3600) for p in ROLE_OF}
        cls.responses = []  # every response and error text, for the leak test

    def call(self, principal, rpc, body):
        ch = self.channel(self.daemon.address, token=self.tokens[principal])
        out = rpcs.invoke(ch, rpc, body)
        for r in out.responses:
            type(self).responses.append(r.SerializeToString())
        type(self).responses.append(out.details.encode())
        for _, v in out.trailing:
            type(self).responses.append(v if isinstance(v, bytes) else v.encode())
        return out

    def ok(self, principal, rpc, body):
        out = self.call(principal, rpc, body)
        self.assertEqual(out.code, OK, '%s %s: %r' % (principal, rpc, out))
        return out.response

    def violations(self, out):
        class E:
            def trailing_metadata(self):
                return out.trailing
        st = self.protos.status_details(E())
        self.assertIsNotNone(st, 'INVALID_ARGUMENT without details: %r' % out)
        br = self.protos.bad_request(st)
        self.assertIsNotNone(br, st)
        return [v.field for v in br.field_violations]

    def names(self, principal, **filters):
        out, token = [], ''
        while True:
            resp = self.ok(principal, 'ListCredentials', dict(filters, pageToken=token))
            out.extend((c.tenant, c.name) for c in resp.credentials)
            token = resp.next_page_token
            if not token:
                return out

    def audit_lines(self, rpc, target):
        return [r for r in self.daemon.audit_records()
                if r['rpc'] == rpcs.path(rpc) and r.get('target') == target]


class KindsTest(_CredBase):
    def test_file_create_get_list_check_delete(self):
        name = uname('git')
        made = self.ok('alice', 'CreateCredential',
                       cred(name, 'team-a', 'file', {'path': self.file_path},
                            description='the git token', labels={'env': 'prod'}))
        self.assertEqual((made.name, made.tenant, made.source.kind), (name, 'team-a', 'file'))
        self.assertEqual(made.owner, self.issuer.subject('alice'))
        self.assertGreater(made.create_time.seconds, 0)
        self.assertEqual(made.create_time, made.update_time)
        self.assertEqual(dict(made.source.ref)['path'], self.file_path)
        got = self.ok('alice', 'GetCredential', {'name': name, 'tenant': 'team-a'})
        self.assertEqual(got, made)
        self.assertIn(('team-a', name), self.names('alice'))
        chk = self.ok('alice', 'CheckCredential', {'name': name, 'tenant': 'team-a'})
        self.assertTrue(chk.ok, chk)
        self.assertEqual(chk.message, 'resolves')
        self.assertGreater(chk.check_time.seconds, 0)
        # The resolution is audited: who, which reference, the outcome.
        lines = [r for r in self.audit_lines('CheckCredential', name)
                 if 'resolv' in (r.get('reason') or '')]
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(lines[0]['subject'], self.issuer.subject('alice'))
        self.assertEqual(lines[0]['code'], OK)
        self.assertIn(self.file_path, lines[0]['reason'])
        gone = self.ok('alice', 'DeleteCredential', {'name': name, 'tenant': 'team-a'})
        self.assertEqual(gone.credential, made)
        self.assertEqual([(r['decision'], r['code']) for r in
                          self.audit_lines('DeleteCredential', name)], [('allow', OK)])
        for rpc in ('GetCredential', 'CheckCredential', 'DeleteCredential'):
            out = self.call('alice', rpc, {'name': name, 'tenant': 'team-a'})
            self.assertEqual((out.code, out.details), (NF, 'credential not found'), rpc)
        self.assertNotIn(('team-a', name), self.names('admin'))

    def test_file_missing_and_outside(self):
        name = uname('missing')
        self.ok('alice', 'CreateCredential',
                cred(name, 'team-a', 'file', {'path': os.path.join(self.cred_dir, 'nope')}))
        chk = self.ok('alice', 'CheckCredential', {'name': name, 'tenant': 'team-a'})
        self.assertFalse(chk.ok, chk)
        self.assertTrue(chk.message, chk)
        self.assertNotEqual(chk.message, 'resolves')
        lines = self.audit_lines('CheckCredential', name)
        self.assertTrue(any(r['code'] != OK and 'fail' in r.get('reason', '') for r in lines),
                        lines)
        # Outside every configured directory: refused at create, naming the field.
        bad = uname('outside')
        out = self.call('alice', 'CreateCredential',
                        cred(bad, 'team-a', 'file',
                             {'path': os.path.join(self.outside_dir, 'other')}))
        self.assertEqual(out.code, IA, out)
        self.assertIn('credential.source.ref.path', self.violations(out))
        self.assertNotIn(('team-a', bad), self.names('admin'))

    def test_env(self):
        name = uname('env')
        self.ok('alice', 'CreateCredential',
                cred(name, 'team-a', 'env', {'name': ENV_PREFIX + 'GIT_TOKEN'}))
        chk = self.ok('alice', 'CheckCredential', {'name': name, 'tenant': 'team-a'})
        self.assertEqual((chk.ok, chk.message), (True, 'resolves'))
        unset = uname('unset')
        self.ok('alice', 'CreateCredential',
                cred(unset, 'team-a', 'env', {'name': ENV_PREFIX + 'NOT_SET'}))
        chk = self.ok('alice', 'CheckCredential', {'name': unset, 'tenant': 'team-a'})
        self.assertFalse(chk.ok, chk)
        self.assertIn(ENV_PREFIX + 'NOT_SET', chk.message)
        # Without the prefix: refused at create.
        out = self.call('alice', 'CreateCredential',
                        cred(uname('home'), 'team-a', 'env', {'name': 'HOME'}))
        self.assertEqual(out.code, IA, out)
        self.assertIn('credential.source.ref.name', self.violations(out))
        self.ok('alice', 'DeleteCredential', {'name': name, 'tenant': 'team-a'})

    def test_kubernetes_secret(self):
        name = uname('git')
        ref = {'namespace': 'sbx-team-a', 'name': 'git-creds', 'key': 'token'}
        made = self.ok('alice', 'CreateCredential',
                       cred(name, 'team-a', 'kubernetes-secret', ref))
        self.assertEqual(dict(made.source.ref), ref)
        # The noop driver cannot read Secrets: the check says why.
        chk = self.ok('alice', 'CheckCredential', {'name': name, 'tenant': 'team-a'})
        self.assertFalse(chk.ok, chk)
        self.assertTrue(chk.message)
        # The reference is validated (a key Kubernetes would refuse).
        out = self.call('alice', 'CreateCredential', cred(
            uname('git'), 'team-a', 'kubernetes-secret',
            {'namespace': 'sbx-team-a', 'name': 'git-creds', 'key': 'token', 'extra': 'x'}))
        self.assertEqual(out.code, IA, out)
        self.assertIn('credential.source.ref.extra', self.violations(out))

    def test_list_paging_and_filters(self):
        tag = uuid.uuid4().hex[:6]
        made = []
        for i in range(5):
            name = 'p%s-%d' % (tag, i)
            kind, ref = (('env', {'name': ENV_PREFIX + 'GIT_TOKEN'}) if i % 2
                         else ('file', {'path': self.file_path}))
            self.ok('admin', 'CreateCredential',
                    cred(name, 'team-b' if i == 4 else 'team-a', kind, ref,
                         labels={'set': tag, 'parity': str(i % 2)}))
            made.append(name)
        sel = 'set=%s' % tag
        pages, token, got = 0, '', []
        while True:
            resp = self.ok('admin', 'ListCredentials',
                           {'pageSize': 2, 'pageToken': token, 'labelSelector': sel})
            self.assertLessEqual(len(resp.credentials), 2)
            got.extend((c.tenant, c.name) for c in resp.credentials)
            pages += 1
            token = resp.next_page_token
            if not token:
                break
        self.assertEqual(got, sorted(got))
        self.assertEqual(sorted(n for _, n in got), made)
        self.assertGreaterEqual(pages, 3)
        self.assertEqual([n for _, n in self.names('admin', labelSelector=sel, kind='env')],
                         [made[1], made[3]])
        self.assertEqual([n for _, n in self.names('admin', labelSelector=sel,
                                                   tenant='team-b')], [made[4]])
        self.assertEqual([n for _, n in self.names('admin',
                                                   labelSelector=sel + ',parity=0')],
                         [made[0], made[2], made[4]])
        # Per-item visibility: alice sees team-a's only, bob team-b's.
        self.assertEqual([n for _, n in self.names('alice', labelSelector=sel)], made[:4])
        self.assertEqual(self.names('bob', labelSelector=sel), [('team-b', made[4])])
        # A token is bound to its filters.
        resp = self.ok('admin', 'ListCredentials', {'pageSize': 1, 'labelSelector': sel})
        out = self.call('admin', 'ListCredentials',
                        {'pageSize': 1, 'pageToken': resp.next_page_token, 'kind': 'env'})
        self.assertEqual(out.code, IA, out)
        self.assertIn('page_token', self.violations(out))
        out = self.call('admin', 'ListCredentials', {'labelSelector': '!!bad'})
        self.assertEqual(out.code, IA, out)


class ScopeTest(_CredBase):
    def assert_denied(self, principal, body, needle):
        before = self.names('admin')
        name = body['credential']['name']
        out = self.call(principal, 'CreateCredential', body)
        self.assertEqual(out.code, PD, out)
        self.assertIn(needle, out.details)
        self.assertEqual(self.names('admin'), before, 'a denied create wrote something')
        lines = self.audit_lines('CreateCredential', name)
        if not lines:
            # Refused by the permission check, before the request is read.
            lines = [r for r in self.daemon.audit_records()
                     if r['rpc'] == rpcs.path('CreateCredential') and 'target' not in r
                     and r.get('subject') == self.issuer.subject(principal)]
        self.assertEqual([(r['decision'], r['code']) for r in lines][-1:], [('deny', PD)],
                         lines)

    def test_secret_coordinates(self):
        good = {'namespace': 'sbx-team-a', 'name': 'git-creds', 'key': 'token'}
        for over, needle in ((('namespace', 'kube-system'), 'kube-system'),
                             (('name', 'db-password'), 'db-password'),
                             (('key', 'password'), "'password'")):
            ref = dict(good)
            ref[over[0]] = over[1]
            with self.subTest(field=over[0]):
                self.assert_denied('alice', cred(uname('k'), 'team-a', 'kubernetes-secret',
                                                 ref), needle)
        self.ok('alice', 'CreateCredential',
                cred(uname('k'), 'team-a', 'kubernetes-secret', good))

    def test_tenant_and_kind(self):
        self.assert_denied('alice', cred(uname('t'), 'team-b', 'file',
                                         {'path': self.file_path}), 'credential.tenant')
        self.assert_denied('filer', cred(uname('e'), 'team-a', 'env',
                                         {'name': ENV_PREFIX + 'GIT_TOKEN'}),
                           'credential.source.kind')
        self.assert_denied('reader', cred(uname('r'), 'team-a', 'file',
                                          {'path': self.file_path}), 'credentials.create')
        # Authorization comes before the source's validation: a reference
        # the caller may not hold is denied, not judged.
        self.assert_denied('filer', cred(uname('e'), 'team-a', 'env', {'name': 'HOME'}),
                           'credential.source.kind')

    def test_not_found_for_what_the_caller_may_not_see(self):
        name = uname('hidden')
        self.ok('alice', 'CreateCredential',
                cred(name, 'team-a', 'env', {'name': ENV_PREFIX + 'GIT_TOKEN'}))
        missing = uname('hidden')
        for rpc in ('GetCredential', 'CheckCredential', 'DeleteCredential'):
            with self.subTest(rpc=rpc):
                a = self.call('bob', rpc, {'name': name, 'tenant': 'team-a'})
                b = self.call('bob', rpc, {'name': missing, 'tenant': 'team-a'})
                self.assertEqual((a.code, a.details), (NF, 'credential not found'))
                self.assertEqual((b.code, b.details), (a.code, a.details))
        # The same name in bob's own tenant is another record.
        self.ok('bob', 'CreateCredential',
                cred(name, 'team-b', 'env', {'name': ENV_PREFIX + 'GIT_TOKEN'}))
        self.assertEqual(self.ok('bob', 'GetCredential',
                                 {'name': name, 'tenant': 'team-b'}).tenant, 'team-b')
        # Untouched by bob's delete attempt.
        self.ok('alice', 'GetCredential', {'name': name, 'tenant': 'team-a'})
        # filer sees only its own records (reach own).
        out = self.call('filer', 'GetCredential', {'name': name, 'tenant': 'team-a'})
        self.assertEqual(out.code, NF, out)
        own = uname('own')
        self.ok('filer', 'CreateCredential', cred(own, 'team-a', 'file',
                                                  {'path': self.file_path}))
        self.assertEqual([n for t, n in self.names('filer')], [own])
        # The reader may see but not check or delete.
        self.assertEqual(self.call('reader', 'CheckCredential',
                                   {'name': name, 'tenant': 'team-a'}).code, PD)
        self.assertEqual(self.call('reader', 'DeleteCredential',
                                   {'name': name, 'tenant': 'team-a'}).code, PD)

    def test_duplicate(self):
        name = uname('dup')
        body = cred(name, 'team-a', 'env', {'name': ENV_PREFIX + 'GIT_TOKEN'})
        self.ok('alice', 'CreateCredential', body)
        out = self.call('alice', 'CreateCredential', body)
        self.assertEqual(out.code, 'ALREADY_EXISTS', out)
        lines = self.audit_lines('CreateCredential', name)
        self.assertEqual([r['code'] for r in lines], [OK, 'ALREADY_EXISTS'], lines)


class ValidationTest(_CredBase):
    def test_fields_named(self):
        ref = {'path': self.file_path}
        cases = [
            (cred('Bad_Name', 'team-a', 'file', ref), 'credential.name'),
            (cred('', 'team-a', 'file', ref), 'credential.name'),
            (cred(uname(), '', 'file', ref), 'credential.tenant'),
            (cred(uname(), 'Team_A', 'file', ref), 'credential.tenant'),
            (cred(uname(), 'team-a', '', ref), 'credential.source.kind'),
            ({'credential': {'name': uname(), 'tenant': 'team-a',
                             'source': {'kind': 'file'}}}, 'credential.source.ref'),
            ({'credential': {'name': uname(), 'tenant': 'team-a'}}, 'credential.source'),
            ({}, 'credential'),
            (cred(uname(), 'team-a', 'file', ref, description='x' * 2000),
             'credential.description'),
            (cred(uname(), 'team-a', 'file', ref, labels={'Bad Key': 'v'}),
             'credential.labels["Bad Key"]'),
            (cred(uname(), 'team-a', 'no-such-kind', {'x': 'y'}), 'credential.source.kind'),
            (cred(uname(), 'team-a', 'file', {'path': 'relative'}),
             'credential.source.ref.path'),
            (cred(uname(), 'team-a', 'file', {'path': self.file_path, 'mode': 'x'}),
             'credential.source.ref.mode'),
        ]
        for body, field in cases:
            with self.subTest(field=field, body=body):
                out = self.call('admin', 'CreateCredential', body)
                self.assertEqual(out.code, IA, out)
                self.assertIn(field, self.violations(out))
        for rpc in ('GetCredential', 'CheckCredential', 'DeleteCredential'):
            out = self.call('admin', rpc, {'tenant': 'team-a'})
            self.assertEqual(out.code, IA, out)
            self.assertIn('name', self.violations(out))
            out = self.call('admin', rpc, {'name': 'Not_A_Name', 'tenant': 'team-a'})
            self.assertEqual(out.code, NF, out)


class LeakTest(_CredBase):
    def test_material_appears_nowhere(self):
        names = []
        for kind, ref in (('file', {'path': self.file_path}),
                          ('env', {'name': ENV_PREFIX + 'GIT_TOKEN'})):
            name = uname('leak')
            self.ok('alice', 'CreateCredential', cred(name, 'team-a', kind, ref))
            names.append(name)
            for _ in range(3):
                chk = self.ok('alice', 'CheckCredential', {'name': name, 'tenant': 'team-a'})
                self.assertTrue(chk.ok, chk)
            self.ok('alice', 'GetCredential', {'name': name, 'tenant': 'team-a'})
        self.names('alice')
        self.names('admin', kind='file')
        # Failures too: a denied check (reader), refused creates.
        self.call('reader', 'CheckCredential', {'name': names[0], 'tenant': 'team-a'})
        self.call('alice', 'CreateCredential',
                  cred(uname(), 'team-a', 'file',
                       {'path': os.path.join(self.outside_dir, 'other')}))
        self.call('filer', 'CreateCredential',
                  cred(uname(), 'team-a', 'env', {'name': ENV_PREFIX + 'GIT_TOKEN'}))
        self.ok('alice', 'DeleteCredential', {'name': names[1], 'tenant': 'team-a'})

        secrets = [self.file_secret.encode(), self.env_secret.encode()]
        places = {
            'stderr': self.daemon.stderr_text().encode(),
            'stdout': self.daemon.stdout_text().encode(),
            'audit': self.daemon.audit_text().encode(),
            'responses': b'\n'.join(type(self).responses),
            'events': repr(events(self.daemon)).encode(),
        }
        db = db_path(self.daemon)
        for suffix in ('', '-wal', '-shm'):
            p = db + suffix
            if os.path.exists(p):
                with open(p, 'rb') as f:
                    places['database' + suffix] = f.read()
        self.assertIn('database', places)
        # The search works: the value is where it is meant to be.
        with open(self.file_path, 'rb') as f:
            self.assertIn(secrets[0], f.read())
        # The records are in the database (so it was worth searching).
        con = sqlite3.connect('file:%s?mode=ro' % db, uri=True, timeout=10)
        try:
            stored = [r[0] for r in con.execute('SELECT name FROM credentials')]
        finally:
            con.close()
        self.assertIn(names[0], stored)
        for where, data in places.items():
            for s in secrets:
                self.assertNotIn(s, data, 'a secret value is in %s' % where)
