"""Credential delivery to process sandboxes, through the real binary.

A sandbox's bindings are checked at create (the record's name and its
source, in one role), resolved during provisioning before the driver is
called, and handed to the sandbox: an environment variable of the main
process, or a 0400 file in the sandbox's own tmpfs. The sandbox proves
what it got by writing SHA-256 digests into its work directory, so the
material itself never passes through an RPC. A resolution that fails
fails the sandbox, with nothing made; every resolution is audited; and a
known value appears in no log line, audit line, response, event or
database byte.
"""
import hashlib
import os
import sqlite3
import unittest
import uuid

from sgtest import env, rpcs
from sgtest import jwt as sgjwt
from sgtest.authfix import bind_subjects, keydir, policy, role
from sgtest.daemon import DaemonTestCase
from sgtest.sandboxes import (bwrap_available, db_path, events, phase_name,
                              process_dir, wait_for)

ISS = 'https://issuer.test'
ENV_PREFIX = 'SGTDELIVER_'
TENANT = 'team-a'
HAVE_BWRAP = bwrap_available()
DELIVERY_RPC = 'sandgate.reconciler/DeliverCredential'
EVERYWHERE = {'projects': ['*'], 'access_profiles': ['*'], 'runtime_profiles': ['*'],
              'namespaces': ['*']}

ROLE_OF = {'ctl': 'ctl', 'narrow': 'narrow'}
ROLES = {
    # Makes records of both kinds and binds any of them.
    'ctl': role(['sandboxes.*', 'credentials.*', 'events.*'], 'any',
                tenants=[TENANT, 'team-b'],
                credentials={'names': ['*'],
                             'sources': [{'kind': 'file'}, {'kind': 'env'},
                                         {'kind': 'kubernetes-secret', 'namespace': '*',
                                          'name': '*', 'key': '*'}]},
                **EVERYWHERE),
    # May bind git-* records whose source is a file or one kind of Secret.
    'narrow': role(['sandboxes.*'], 'any', tenants=[TENANT],
                   credentials={'names': ['git-*'],
                                'sources': [{'kind': 'file'},
                                            {'kind': 'kubernetes-secret', 'namespace': 'sbx-a',
                                             'name': 'git-*', 'key': 'token'}]},
                   **EVERYWHERE),
}

# Digests of what the sandbox sees, written where the test can read them.
PROBE = ('sha256sum < /run/secrets/git | cut -d" " -f1 > /work/file.sha; '
         'printf %s "$GIT_TOKEN" | sha256sum | cut -d" " -f1 > /work/env.sha; '
         'stat -c %a /run/secrets/git > /work/file.mode; '
         '[ "$(stat -c %u /run/secrets/git)" = "$(id -u)" ] && echo yes > /work/file.own; '
         'touch /work/done; exec sleep 1000')


def uname(prefix):
    return '%s-%s' % (prefix, uuid.uuid4().hex[:8])


def sha(b):
    return hashlib.sha256(b).hexdigest()


@unittest.skipUnless(HAVE_BWRAP, 'bubblewrap cannot create namespaces here')
class DeliveryTest(DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        base = os.path.join(env.WORK_DIR, cls.__name__ + '-files')
        cls.cred_dir = os.path.join(base, 'creds')
        os.makedirs(cls.cred_dir, exist_ok=True)
        # Known values: the leak test looks for them everywhere. The file
        # value has a NUL and a newline in it: material is bytes.
        cls.file_secret = b'filesecret-%s\x00\n\xff-end' % uuid.uuid4().hex.encode()
        cls.env_secret = 'envsecret-%s' % uuid.uuid4().hex
        cls.file_path = os.path.join(cls.cred_dir, 'git-token')
        with open(cls.file_path, 'wb') as f:
            f.write(cls.file_secret)
        signer = sgjwt.Key.rsa('rs-1')
        cls.issuer = sgjwt.Issuer(ISS, [signer], algorithms=['RS256'])
        cls.issuer.write_jwks(os.path.join(keydir(base), 'jwks.json'))
        cls.daemon = cls.start_class_daemon(
            audit=True,
            policy=policy([cls.issuer], ROLES, bind_subjects(ISS, ROLE_OF)),
            config={'driver': {'name': 'process', 'settings': {'grace_period_ms': 500}},
                    'credentials': {'file_directories': [cls.cred_dir],
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
        return out

    def ok(self, principal, rpc, body):
        out = self.call(principal, rpc, body)
        self.assertEqual(out.code, 'OK', '%s %s: %r' % (principal, rpc, out))
        return out.response

    def credential(self, kind, ref, name=None, tenant=TENANT):
        name = name or uname('git')
        made = self.ok('ctl', 'CreateCredential',
                       {'credential': {'name': name, 'tenant': tenant,
                                       'source': {'kind': kind, 'ref': ref}}})
        return made

    def create(self, bindings, principal='ctl', command=None):
        out = self.call(principal, 'CreateSandbox', {'sandbox': {
            'name': uname('sb'), 'tenant': TENANT,
            'spec': {'command': command or ['sh', '-c', PROBE],
                     'credentials': bindings}}})
        if out.code == 'OK':
            # A process sandbox outlives its gateway: never leave one.
            self.addCleanup(self.remove, out.response.id)
        return out

    def remove(self, sid):
        self.call('ctl', 'DeleteSandbox', {'id': sid})
        self.wait_phase(sid, 'DELETED', 'FAILED')

    def get(self, sid):
        return self.ok('ctl', 'GetSandbox', {'id': sid})

    def wait_phase(self, sid, *phases):
        wait_for(lambda: phase_name(self.get(sid)) in phases,
                 timeout=env.scaled(30), what='%s in %s' % (sid, phases))
        return self.get(sid)

    def work_file(self, sid, name):
        with open(os.path.join(process_dir(self.daemon, sid), 'work', name)) as f:
            return f.read().strip()

    def delivery_audit(self, sid):
        return [r for r in self.daemon.audit_records()
                if r['rpc'] == DELIVERY_RPC and r.get('target') == sid]

    def test_env_and_file_are_delivered(self):
        fcred = self.credential('file', {'path': self.file_path})
        ecred = self.credential('env', {'name': ENV_PREFIX + 'GIT_TOKEN'})
        out = self.create([{'credential': fcred.name, 'file': '/run/secrets/git'},
                           {'credential': ecred.name, 'env': 'GIT_TOKEN'}])
        self.assertEqual(out.code, 'OK', out)
        sb = out.response
        # The records the create was authorized against.
        self.assertEqual([(c.credential, c.record_create_time) for c in sb.status.credentials],
                         [(fcred.name, fcred.create_time), (ecred.name, ecred.create_time)])
        ready = self.wait_phase(sb.id, 'READY', 'FAILED')
        self.assertEqual(phase_name(ready), 'READY', ready.status.message)
        wait_for(lambda: os.path.exists(os.path.join(process_dir(self.daemon, sb.id),
                                                     'work', 'done')),
                 what='the probe to finish')
        self.assertEqual(self.work_file(sb.id, 'file.sha'), sha(self.file_secret))
        self.assertEqual(self.work_file(sb.id, 'env.sha'), sha(self.env_secret.encode()))
        self.assertEqual(self.work_file(sb.id, 'file.mode'), '400')
        self.assertEqual(self.work_file(sb.id, 'file.own'), 'yes')

        types = [e['type_name'] for e in events(self.daemon, sb.id)]
        self.assertEqual(types, ['ACCEPTED', 'ALLOCATION_STARTED', 'CREDENTIALS_RESOLVED',
                                 'RESOURCE_CREATED', 'READY'])
        # One audit line per resolution, for the owner, naming the reference.
        lines = self.delivery_audit(sb.id)
        self.assertEqual(len(lines), 2, lines)
        for line, (cname, what) in zip(lines, ((fcred.name, 'file ' + self.file_path),
                                               (ecred.name, 'env ' + ENV_PREFIX + 'GIT_TOKEN'))):
            self.assertEqual(line['subject'], self.issuer.subject('ctl'))
            self.assertEqual((line['code'], line['tenant']), ('OK', TENANT))
            self.assertEqual(line['reason'], "credential '%s': resolved %s" % (cname, what))

        # Nothing of it on the host: the driver's files hold digests only.
        for root, _, files in os.walk(process_dir(self.daemon, sb.id)):
            for fn in files:
                p = os.path.join(root, fn)
                if os.path.isfile(p):
                    with open(p, 'rb') as f:
                        data = f.read()
                    self.assertNotIn(self.file_secret, data, p)
                    self.assertNotIn(self.env_secret.encode(), data, p)

    def test_scope_is_checked_at_create(self):
        fcred = self.credential('file', {'path': self.file_path}, name=uname('git'))
        ecred = self.credential('env', {'name': ENV_PREFIX + 'GIT_TOKEN'}, name=uname('git'))
        other = self.credential('file', {'path': self.file_path}, name=uname('npm'))
        cases = [
            # The name scope.
            ([{'credential': other.name, 'env': 'NPM'}], 'PERMISSION_DENIED',
             "spec.credentials: credential '%s' is not allowed" % other.name),
            # The source of the record, in the same role.
            ([{'credential': ecred.name, 'env': 'GIT'}], 'PERMISSION_DENIED',
             "spec.credentials: credential '%s' (env): its source is not allowed"
             % ecred.name),
            # No such record: told only once the name is allowed.
            ([{'credential': 'git-missing', 'env': 'GIT'}], 'FAILED_PRECONDITION',
             "sandbox.spec.credentials[0].credential: credential 'git-missing' does "
             "not exist in tenant 'team-a'"),
        ]
        before = len(events(self.daemon))
        for bindings, code, message in cases:
            out = self.create(bindings, principal='narrow')
            self.assertEqual((out.code, out.details), (code, message), bindings)
        # Denied creates wrote nothing and resolved nothing.
        self.assertEqual(len(events(self.daemon)), before)
        self.assertEqual([r for r in self.daemon.audit_records() if r['rpc'] == DELIVERY_RPC
                          and ecred.name in r.get('reason', '')], [])
        # What narrow may bind, it may.
        out = self.create([{'credential': fcred.name, 'file': '/run/secrets/git'}],
                          principal='narrow', command=['sleep', '1000'])
        self.assertEqual(out.code, 'OK', out)
        self.assertEqual(phase_name(self.wait_phase(out.response.id, 'READY', 'FAILED')),
                         'READY')

    def test_secret_coordinates_and_tenant_are_checked_at_create(self):
        def secret(ns, name, key):
            return self.credential('kubernetes-secret',
                                   {'namespace': ns, 'name': name, 'key': key})
        for rec in (secret('sbx-b', 'git-main', 'token'),    # namespace
                    secret('sbx-a', 'other', 'token'),       # name
                    secret('sbx-a', 'git-main', 'password')):  # key
            ref = dict(rec.source.ref)
            out = self.create([{'credential': rec.name, 'env': 'GIT'}], principal='narrow')
            self.assertEqual((out.code, out.details), (
                'PERMISSION_DENIED',
                "spec.credentials: credential '%s' (kubernetes-secret %s/%s key %s): its "
                "source is not allowed" % (rec.name, ref['namespace'], ref['name'],
                                           ref['key'])))
        # A record of another tenant is not one this sandbox can bind.
        theirs = self.credential('file', {'path': self.file_path}, tenant='team-b')
        out = self.create([{'credential': theirs.name, 'env': 'GIT'}], principal='narrow')
        self.assertEqual((out.code, out.details), (
            'FAILED_PRECONDITION',
            "sandbox.spec.credentials[0].credential: credential '%s' does not exist in "
            "tenant 'team-a'" % theirs.name))
        # Allowed, but without the kubernetes driver a Secret cannot be
        # read: the sandbox fails before anything is made.
        ok = secret('sbx-a', 'git-main', 'token')
        out = self.create([{'credential': ok.name, 'env': 'GIT'}], principal='narrow')
        self.assertEqual(out.code, 'OK', out)
        failed = self.wait_phase(out.response.id, 'FAILED', 'READY')
        self.assertEqual(phase_name(failed), 'FAILED')
        self.assertIn('resolving needs the kubernetes driver', failed.status.message)
        self.assertFalse(os.path.exists(process_dir(self.daemon, out.response.id)))

    def test_a_target_the_driver_cannot_deliver_to_is_refused(self):
        fcred = self.credential('file', {'path': self.file_path})
        out = self.create([{'credential': fcred.name, 'file': '/etc/git-token'}])
        self.assertEqual(out.code, 'INVALID_ARGUMENT', out)
        self.assertIn('/etc/git-token', out.details)

    def test_a_failed_resolution_fails_the_sandbox_and_makes_nothing(self):
        path = os.path.join(self.cred_dir, uname('gone'))
        with open(path, 'w') as f:
            f.write('short-lived')
        fcred = self.credential('file', {'path': path})
        os.unlink(path)
        out = self.create([{'credential': fcred.name, 'file': '/run/secrets/git'}])
        self.assertEqual(out.code, 'OK', out)
        sid = out.response.id
        failed = self.wait_phase(sid, 'FAILED', 'READY')
        self.assertEqual(phase_name(failed), 'FAILED')
        cond = {c.type: c for c in failed.status.conditions}
        self.assertEqual(cond['Ready'].reason, 'CredentialUnresolvable')
        self.assertIn("credential '%s'" % fcred.name, failed.status.message)
        self.assertIn(path, failed.status.message)
        self.assertIn('does not exist', failed.status.message)
        # The driver was never called.
        self.assertFalse(os.path.exists(process_dir(self.daemon, sid)))
        self.assertEqual(failed.status.backend_object, '')
        self.assertEqual([e['type_name'] for e in events(self.daemon, sid)],
                         ['ACCEPTED', 'ALLOCATION_STARTED', 'FAILED'])
        lines = self.delivery_audit(sid)
        self.assertEqual([l['code'] for l in lines], ['FAILED_PRECONDITION'], lines)

    def test_z_material_appears_nowhere(self):
        # Runs last in the class (unittest sorts by name): it searches what
        # every test above left behind.
        fcred = self.credential('file', {'path': self.file_path})
        ecred = self.credential('env', {'name': ENV_PREFIX + 'GIT_TOKEN'})
        out = self.create([{'credential': fcred.name, 'file': '/run/secrets/git'},
                           {'credential': ecred.name, 'env': 'GIT_TOKEN'}])
        self.assertEqual(out.code, 'OK', out)
        self.wait_phase(out.response.id, 'READY')
        self.ok('ctl', 'ListSandboxes', {})
        self.ok('ctl', 'ListEvents', {})
        self.ok('ctl', 'DeleteSandbox', {'id': out.response.id})
        self.wait_phase(out.response.id, 'DELETED')

        secrets = [self.file_secret, self.env_secret.encode()]
        places = {
            'stderr': self.daemon.stderr_text().encode(),
            'stdout': self.daemon.stdout_text().encode(),
            'audit': self.daemon.audit_text().encode(),
            'responses': b'\n'.join(type(self).responses),
            'events': repr(events(self.daemon)).encode(),
        }
        db = db_path(self.daemon)
        for suffix in ('', '-wal', '-shm'):
            if os.path.exists(db + suffix):
                with open(db + suffix, 'rb') as f:
                    places['database' + suffix] = f.read()
        # The search can find what it looks for: the records are there.
        con = sqlite3.connect('file:%s?mode=ro' % db, uri=True, timeout=10)
        try:
            stored = [r[0] for r in con.execute('SELECT name FROM credentials')]
        finally:
            con.close()
        self.assertIn(fcred.name, stored)
        self.assertIn(b'resolved file ' + self.file_path.encode(), places['audit'])
        for where, data in places.items():
            for s in secrets:
                self.assertNotIn(s, data, 'a secret value is in %s' % where)


class NoDeliveryTest(DaemonTestCase):
    def test_a_driver_that_cannot_deliver_answers_unimplemented(self):
        d = self.start_daemon(driver='noop')
        ch = self.admin_channel(d)
        out = rpcs.invoke(ch, 'CreateSandbox', {'sandbox': {
            'name': 'x', 'tenant': TENANT,
            'spec': {'credentials': [{'credential': 'git', 'env': 'GIT'}]}}})
        self.assertEqual((out.code, out.details),
                         ('UNIMPLEMENTED', "sandbox.spec.credentials: the 'noop' driver "
                                           "does not deliver credentials"))


if __name__ == '__main__':
    unittest.main()
