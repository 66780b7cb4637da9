"""Authorization through the real binary (noop driver): every sandgate.v1
RPC against every class of caller, in one explicit table; the create
scopes and the order in which they are enforced; the owner stamp; the
gateway's own namespace; what a denied create leaves behind (nothing, and
an audit line); and that a caller cannot tell a sandbox it may not see
from one that does not exist.

The policy (one RS256 issuer, one role per class of caller) is built in
_AuthzBase. The noop driver reports as placement facts what its
driver_config block's "placement" object says (drivers/noop/
noop_placement.h), and the dotted paths of the keys set ("fail",
"placement", "placement.namespace", ...)."""
import os
import random
import statistics
import time
import unittest
import uuid

from sgtest import env, rpcs
from sgtest import jwt as sgjwt
from sgtest.authfix import ALL_PERMISSIONS, bind_subjects, keydir, policy, role, \
    unknown_key_hint
from sgtest.daemon import DaemonTestCase
from sgtest.sandboxes import events, sandbox

ISS = 'https://issuer.test'
TENANT = 'team-a'
GATEWAY_NS = 'sandgate-system'

# JWT subject claim -> role (the principal names below use '_').
ROLE_OF = {
    'controller': 'controller',
    'tenant-admin': 'tenant-admin',
    'owner': 'creator',
    'reader': 'reader',
    'outsider': 'outsider',
    'ns-scope': 'ns-limited',
    'sa-scope': 'sa-limited',
    'field-scope': 'field-limited',
    'value-scope': 'value-limited',
    'cred-scope': 'cred-limited',
    # 'norole' authenticates but is bound to nothing.
}

ROLES = {
    'controller': role(ALL_PERMISSIONS, 'any', tenants=['*'], projects=['*'],
                       access_profiles=['*'], runtime_profiles=['*'], namespaces=['*'],
                       service_accounts=['*'],
                       credentials={'names': ['*'], 'sources': [
                           {'kind': '*', 'namespace': '*', 'name': '*', 'key': '*'}]},
                       driver_config={'fields': ['*'], 'runtime_classes': ['*']},
                       attach_policy=True),
    'tenant-admin': role(ALL_PERMISSIONS, 'tenant', tenants=[TENANT], projects=['*'],
                         credentials={'names': ['*']}),
    'creator': role(ALL_PERMISSIONS, 'own', tenants=[TENANT], projects=['*'],
                    credentials={'names': ['team-a-git']}),
    'reader': role(['sandboxes.get', 'sandboxes.list', 'sandboxes.logs', 'events.watch',
                    'events.list', 'credentials.get', 'credentials.list'], 'tenant',
                   tenants=[TENANT], projects=['*']),
    'outsider': role(ALL_PERMISSIONS, 'tenant', tenants=['team-b'], projects=['*']),
    # Each *-limited role may create in team-a and differs from the others
    # in the one scope its principal oversteps.
    'ns-limited': role(['sandboxes.*'], 'own', tenants=[TENANT], projects=['*'],
                       namespaces=['sbx-team-a'], service_accounts=['*'],
                       driver_config={'fields': ['placement', 'placement.namespace']}),
    'sa-limited': role(['sandboxes.*'], 'own', tenants=[TENANT], projects=['*'],
                       namespaces=['*'], service_accounts=['sandbox-runner'],
                       driver_config={'fields': ['placement',
                                                 'placement.serviceAccountName']}),
    'field-limited': role(['sandboxes.*'], 'own', tenants=[TENANT], projects=['*'],
                          namespaces=['*'], service_accounts=['*']),
    # Every sensitive value is limited; a list without "" also refuses
    # the unset value (runtime class, allocation mode, template).
    'value-limited': role(['sandboxes.*'], 'own', tenants=[TENANT], projects=['*'],
                          namespaces=['*'], service_accounts=['*'],
                          driver_config={'fields': ['*'], 'runtime_classes': ['gvisor'],
                                         'node_selector': {'pool': ['secure-*']},
                                         'toleration_keys': ['example.com/*'],
                                         'max_cpu': '2', 'max_memory': '1Gi',
                                         'allocation_modes': ['Sandbox'],
                                         'templates': ['tpl-*'],
                                         'warm_pools': ['', 'rce-*']}),
    'cred-limited': role(['sandboxes.*'], 'own', tenants=[TENANT], projects=['*'],
                         credentials={'names': ['team-a-git']}),
}

U, PD, NF, OK, UI, IA = ('UNAUTHENTICATED', 'PERMISSION_DENIED', 'NOT_FOUND', 'OK',
                         'UNIMPLEMENTED', 'INVALID_ARGUMENT')
SEES, BLIND = 'OK+', 'OK-'  # ListSandboxes: OK, and the target is / is not listed
# WatchEvents: authorized, the stream stays open until the client's deadline.
OPEN = 'DEADLINE_EXCEEDED'

# The columns, in the order each row runs them: DeleteSandbox last, since
# an allowed delete changes the row's target.
COLUMNS = ['CreateSandbox', 'GetSandbox', 'ListSandboxes', 'StreamSandboxLogs',
           'ExecSandbox', 'CreateCredential', 'GetCredential', 'ListCredentials',
           'CheckCredential', 'DeleteCredential', 'WatchEvents', 'ListEvents',
           'DeleteSandbox']

# The target of a row is a fresh sandbox that 'owner' created in team-a,
# and a fresh credential record (env source) that 'controller' created in
# team-a. The create a row sends is its principal's forbidden request
# (FORBIDDEN below), else a plain one in team-a. Logs and exec are not
# built: past authentication they answer UNIMPLEMENTED. A credential
# create needs the tenant and a credentials.sources entry (only the
# controller has one); get, check and delete of a record the caller may
# not see are NOT_FOUND; check also needs the source scope (tenant-admin
# may see the record but has no sources: PERMISSION_DENIED). Events are: a
# role without events.* is refused, any other watches (OPEN) and lists,
# each event filtered by what it may see (test_events.py checks that).
#
#                Create Get List  Logs Exec  CCre CGet CLst CChk CDel Watch LEv  Delete
MATRIX = {
    'anonymous':    (U,  U,  U,     U,  U,    U,  U,  U,  U,  U,    U,    U,  U),
    'garbage':      (U,  U,  U,     U,  U,    U,  U,  U,  U,  U,    U,    U,  U),
    'expired':      (U,  U,  U,     U,  U,    U,  U,  U,  U,  U,    U,    U,  U),
    'norole':       (PD, PD, PD,    UI, UI,   PD, PD, PD, PD, PD,   PD,   PD, PD),
    'outsider':     (PD, NF, BLIND, UI, UI,   PD, NF, OK, NF, NF,   OPEN, OK, NF),
    'ns_scope':     (PD, NF, BLIND, UI, UI,   PD, PD, PD, PD, PD,   PD,   PD, NF),
    'sa_scope':     (PD, NF, BLIND, UI, UI,   PD, PD, PD, PD, PD,   PD,   PD, NF),
    'field_scope':  (PD, NF, BLIND, UI, UI,   PD, PD, PD, PD, PD,   PD,   PD, NF),
    'value_scope':  (PD, NF, BLIND, UI, UI,   PD, PD, PD, PD, PD,   PD,   PD, NF),
    'cred_scope':   (PD, NF, BLIND, UI, UI,   PD, PD, PD, PD, PD,   PD,   PD, NF),
    'reader':       (PD, OK, SEES,  UI, UI,   PD, OK, OK, PD, PD,   OPEN, OK, PD),
    'owner':        (OK, OK, SEES,  UI, UI,   PD, NF, OK, NF, NF,   OPEN, OK, OK),
    'tenant_admin': (OK, OK, SEES,  UI, UI,   PD, OK, OK, PD, OK,   OPEN, OK, OK),
    'controller':   (OK, OK, SEES,  UI, UI,   OK, OK, OK, OK, OK,   OPEN, OK, OK),
}

# The create each scope principal sends in the matrix, the text its
# PERMISSION_DENIED must name, and the create just inside its scope with
# the status that one gets.
def placed(**placement):
    """A spec extra: the noop driver's block reporting these facts."""
    return {'driverConfig': {'noop': {'placement': placement}}}


# What value-limited allows at least: every list without "" gets a value.
VALUE_BASE = {'runtimeClassName': 'gvisor', 'allocation': 'Sandbox', 'template': 'tpl-a'}

FORBIDDEN = {
    'outsider': ({}, 'team-a'),
    'ns_scope': (placed(namespace='sbx-other'), 'sbx-other'),
    'sa_scope': (placed(serviceAccountName='root-sa'), 'root-sa'),
    'field_scope': ({'driverConfig': {'noop': {'fail': 'boom'}}}, 'fail'),
    'value_scope': (placed(**dict(VALUE_BASE, runtimeClassName='runc')), 'runc'),
    'cred_scope': ({'credentials': [{'credential': 'other-cred', 'env': 'TOKEN'}]},
                   'other-cred'),
}
ALLOWED = {
    'ns_scope': (placed(namespace='sbx-team-a'), OK),
    'sa_scope': (placed(serviceAccountName='sandbox-runner'), OK),
    'field_scope': ({}, OK),
    'value_scope': (placed(**VALUE_BASE), OK),
    # Allowed by the role, but the noop driver does not deliver credentials.
    'cred_scope': ({'credentials': [{'credential': 'team-a-git', 'env': 'TOKEN'}]}, UI),
}

# Each body gets the row's target sandbox id and credential name.
OBJECT_BODIES = {
    'GetSandbox': lambda sid, cred: {'id': sid},
    'DeleteSandbox': lambda sid, cred: {'id': sid},
    'StreamSandboxLogs': lambda sid, cred: {'id': sid},
    'ExecSandbox': lambda sid, cred: {'start': {'id': sid, 'command': ['true']}},
    'ListSandboxes': lambda sid, cred: {'pageSize': 1000},
    'CreateCredential': lambda sid, cred: {'credential': {
        'name': uname('cred'), 'tenant': TENANT,
        'source': {'kind': 'env', 'ref': {'name': 'GIT_TOKEN'}}}},
    'GetCredential': lambda sid, cred: {'name': cred, 'tenant': TENANT},
    'ListCredentials': lambda sid, cred: {},
    'DeleteCredential': lambda sid, cred: {'name': cred, 'tenant': TENANT},
    'CheckCredential': lambda sid, cred: {'name': cred, 'tenant': TENANT},
    'WatchEvents': lambda sid, cred: {},
    'ListEvents': lambda sid, cred: {},
}


def uname(prefix='sb'):
    return '%s-%s' % (prefix, uuid.uuid4().hex[:10])


class _AuthzBase(DaemonTestCase):
    """A noop-driver daemon with the policy above, an audit log and
    auth.gateway_namespace set; tokens for every principal."""

    daemon_name = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        base = os.path.join(env.WORK_DIR, cls.__name__ + '-keys')
        os.makedirs(base, exist_ok=True)
        cls.signer = sgjwt.Key.rsa('rs-1')
        cls.issuer = sgjwt.Issuer(ISS, [cls.signer], algorithms=['RS256'])
        cls.issuer.write_jwks(os.path.join(keydir(base), 'jwks.json'))
        cls.policy = policy([cls.issuer], ROLES, bind_subjects(ISS, ROLE_OF))
        cls.daemon = cls.start_class_daemon(
            driver='noop', policy=cls.policy, audit=True,
            auth={'gateway_namespace': GATEWAY_NS},
            config={'credentials': {'env_prefix': 'GIT_'}},
            env_extra={'GIT_TOKEN': 'matrix-%s' % uuid.uuid4().hex})
        cls.tokens = {sub.replace('-', '_'): cls.issuer.token(sub, lifetime=3600)
                      for sub in list(ROLE_OF) + ['norole']}
        cls.tokens['garbage'] = 'garbage-%s' % uuid.uuid4().hex
        cls.tokens['expired'] = cls.issuer.token('controller', iat=int(time.time()) - 7200,
                                                 nbf=int(time.time()) - 7200,
                                                 exp=int(time.time()) - 3600)
        cls.tokens['anonymous'] = None

    def chan(self, principal):
        return self.channel(self.daemon.address, token=self.tokens[principal])

    def subject(self, principal):
        return self.issuer.subject(principal.replace('_', '-'))

    def create(self, principal, body_extra=None, name=None, tenant=TENANT, project='p1',
               request_id=None, **top):
        name = name or uname()
        extra = dict(body_extra or {})
        body = {'sandbox': sandbox(name, tenant=tenant, project=project, **extra, **top),
                'requestId': request_id or 'req-' + name}
        return name, rpcs.invoke(self.chan(principal), 'CreateSandbox', body)

    def must_create(self, principal='owner', **kw):
        name, out = self.create(principal, **kw)
        self.assertEqual(out.code, OK, 'setup create as %s: %r' % (principal, out))
        return out.response

    def must_create_credential(self):
        """A fresh env credential in team-a, created by the controller."""
        name = uname('cred')
        out = rpcs.invoke(self.chan('controller'), 'CreateCredential', {'credential': {
            'name': name, 'tenant': TENANT,
            'source': {'kind': 'env', 'ref': {'name': 'GIT_TOKEN'}}}})
        self.assertEqual(out.code, OK, 'setup credential create: %r' % out)
        return name

    def list_ids(self, principal, **filters):
        ids, token = [], ''
        ch = self.chan(principal)
        while True:
            body = dict(filters, pageSize=1000, pageToken=token)
            out = rpcs.invoke(ch, 'ListSandboxes', body)
            self.assertEqual(out.code, OK, 'ListSandboxes as %s: %r' % (principal, out))
            ids.extend(out.response.sandboxes)
            token = out.response.next_page_token
            if not token:
                return ids


class MatrixTest(_AuthzBase):
    def test_table_covers_every_rpc_and_principal(self):
        self.assertEqual(sorted(COLUMNS), rpcs.sandgate_rpc_names(),
                         'the matrix must have one column per sandgate.v1 RPC')
        for p, row in MATRIX.items():
            self.assertEqual(len(row), len(COLUMNS), p)
            self.assertIn(p, self.tokens)

    def test_matrix(self):
        audit_before = len(self.daemon.audit_records())
        failures = []
        denied_names, made = [], {}   # name -> id
        deny_request_ids = {}         # request id -> (principal, rpc, code)
        target_of = {}
        for principal, row in MATRIX.items():
            target = self.must_create('owner')
            cred = self.must_create_credential()
            made[target.name] = target.id
            target_of[principal] = target
            ch = self.chan(principal)
            for rpc, want in zip(COLUMNS, row):
                if rpc == 'CreateSandbox':
                    extra, _ = FORBIDDEN.get(principal, ({}, None))
                    name, out = self.create(principal, extra)
                    if out.code == OK:
                        made[name] = out.response.id
                    else:
                        denied_names.append(name)
                        deny_request_ids['req-' + name] = (principal, rpc, out.code)
                else:
                    # An authorized watch never ends by itself: a short
                    # deadline tells it from a refusal.
                    out = rpcs.invoke(ch, rpc, OBJECT_BODIES[rpc](target.id, cred),
                                      timeout=env.scaled(1.5 if rpc == 'WatchEvents' else 5))
                got = out.code
                if rpc == 'ListSandboxes' and got == OK:
                    listed = [s for s in out.response.sandboxes]
                    got = SEES if target.id in {s.id for s in listed} else BLIND
                    bad = [s.id for s in listed if not self.may_see(principal, s)]
                    if bad:
                        failures.append('%s ListSandboxes listed sandboxes it may not see: %s'
                                        % (principal, bad))
                if got != want:
                    hint = unknown_key_hint(out, FORBIDDEN.get(principal, ('', ''))[1]) \
                        if rpc == 'CreateSandbox' else ''
                    failures.append('%-12s %-18s want %-17s got %-17s %s%s'
                                    % (principal, rpc, want, got, out.details[:160], hint))
                elif rpc == 'CreateSandbox' and want == PD and principal in FORBIDDEN:
                    needle = FORBIDDEN[principal][1]
                    if needle not in out.details:
                        failures.append('%s CreateSandbox: PERMISSION_DENIED must name %r: %r'
                                        % (principal, needle, out.details))
                if got in (U, PD, NF, UI, IA):
                    for secret in self.secrets():
                        if secret and secret in out.details:
                            failures.append('%s %s: a token is in the error message'
                                            % (principal, rpc))
                if rpc == 'DeleteSandbox' and got == OK and out.response.id != target.id:
                    failures.append('%s DeleteSandbox answered with %s, not the target %s'
                                    % (principal, out.response.id, target.id))
        # What the calls left behind is checked whatever the cells said.
        try:
            self.check_aftermath(audit_before, denied_names, made, deny_request_ids, target_of)
        except AssertionError as e:
            failures.append('after the matrix: %s' % e)
        if failures:
            self.fail('%d problems in %d cells:\n%s' % (len(failures), len(MATRIX) * len(COLUMNS),
                                                        '\n'.join(failures)))

    def check_aftermath(self, audit_before, denied_names, made, deny_request_ids, target_of):
        # Denied creates left nothing behind: no sandbox (as seen by the
        # controller, who sees everything), no event.
        listed = {s.name for s in self.list_ids('controller')}
        self.assertEqual(sorted(n for n in denied_names if n in listed), [])
        listed |= {s.name for s in self.list_ids('controller', phase='SANDBOX_PHASE_DELETED')}
        self.assertEqual(sorted(n for n in made if n not in listed), [],
                         'sandboxes created in the matrix are missing')
        evs = events(self.daemon)
        self.assertEqual([e for e in evs if e['sandbox_name'] in set(denied_names)], [])

        # The audit log: a deny line for every denied create (with the
        # request id when the request got far enough to be read), an
        # allow line for every create that went through; no token.
        recs = self.daemon.audit_records()[audit_before:]
        for r in recs:
            for k in ('time', 'rpc', 'decision', 'code'):
                self.assertIn(k, r, r)
        create_path = rpcs.path('CreateSandbox')
        for rid, (principal, rpc, code) in deny_request_ids.items():
            if code != PD:
                continue  # UNAUTHENTICATED: counted below; others are not denials
            # Each principal sends one create here. A denial at the
            # permission step may come before the request's fields are
            # read: request_id and tenant are checked when present.
            lines = [r for r in recs if r['rpc'] == create_path
                     and r.get('subject') == self.subject(principal)]
            self.assertEqual(len(lines), 1, 'audit lines for the denied create %s of %s: %s'
                             % (rid, principal, lines))
            self.assertEqual((lines[0]['decision'], lines[0]['code']), ('deny', code), lines)
            self.assertIn(lines[0].get('request_id', rid), (rid,), lines)
            self.assertIn(lines[0].get('tenant', TENANT), (TENANT,), lines)
        unauth_creates = [r for r in recs if r['rpc'] == create_path and r['code'] == U]
        self.assertGreaterEqual(len(unauth_creates), 3,
                                'the unauthenticated creates (anonymous, garbage, expired) '
                                'are denials and must be audited')
        for n, sid in made.items():
            lines = [r for r in recs if r['rpc'] == create_path and r.get('target') == sid]
            self.assertEqual(len(lines), 1, 'audit line of the create of %s: %s' % (sid, lines))
            self.assertEqual((lines[0]['decision'], lines[0]['code']), ('allow', OK), lines)
        delete_path = rpcs.path('DeleteSandbox')
        reader_del = [r for r in recs if r['rpc'] == delete_path
                      and r.get('subject') == self.subject('reader')]
        self.assertEqual([(r['decision'], r['code']) for r in reader_del], [('deny', PD)])
        for p in ('owner', 'tenant_admin', 'controller'):
            sid = target_of[p].id
            lines = [r for r in recs if r['rpc'] == delete_path and r.get('target') == sid]
            self.assertEqual([(r['decision'], r['code'], r.get('subject')) for r in lines],
                             [('allow', OK, self.subject(p))])
        text = self.daemon.audit_text() + self.daemon.stderr_text()
        for secret in self.secrets():
            self.assertNotIn(secret, text, 'a token reached the audit log or the log')

    def may_see(self, principal, sb):
        """Whether principal's role lets it see sb (what a list may show)."""
        role_name = ROLE_OF.get(principal.replace('_', '-'))
        if role_name is None:
            return False
        r = ROLES[role_name]
        reach = r['operations'][0]['on']
        if reach == 'any':
            return True
        if reach == 'own':
            return sb.owner == self.subject(principal)
        return sb.tenant in r['tenants']

    def secrets(self):
        out = []
        for p, t in self.tokens.items():
            if t:
                out.append(t)
                if t.count('.') == 2:
                    out.append(t.rsplit('.', 1)[1])
        return out


class CreateRulesTest(_AuthzBase):
    def test_owner_is_the_subject_never_a_request_field(self):
        sb = self.must_create('owner')
        self.assertEqual(sb.owner, self.subject('owner'))
        got = rpcs.invoke(self.chan('controller'), 'GetSandbox', {'id': sb.id})
        self.assertEqual(got.code, OK, got)
        self.assertEqual(got.response.owner, self.subject('owner'))
        rows = [e for e in events(self.daemon, sb.id) if e['type_name'] == 'ACCEPTED']
        self.assertEqual([e['owner'] for e in rows], [self.subject('owner')])
        # Setting it, even to the caller's own subject, is refused: output only.
        for value in (self.subject('owner'), self.subject('controller')):
            name, out = self.create('owner', owner=value)
            self.assertEqual(out.code, IA, out)
            st = self.protos.status_details(_rpc_error(out))
            self.assertIsNotNone(st, 'INVALID_ARGUMENT without google.rpc.Status details')
            br = self.protos.bad_request(st)
            self.assertIsNotNone(br, st)
            self.assertIn('sandbox.owner', [v.field for v in br.field_violations])
            self.assertNotIn(name, {s.name for s in self.list_ids('controller')})
        # A controller (who may act for anyone) creating stamps itself.
        sb = self.must_create('controller')
        self.assertEqual(sb.owner, self.subject('controller'))

    def test_enforcement_order(self):
        # Authentication before everything: an invalid request from nobody
        # is UNAUTHENTICATED.
        _, out = self.create('anonymous', name='Not_A_Name', owner='x')
        self.assertEqual(out.code, U, out)
        # The permission before validation: a reader's invalid create.
        _, out = self.create('reader', name='Not_A_Name', owner='x')
        self.assertEqual(out.code, PD, out)
        # Validation before the scopes: the outsider may create (in
        # team-b), so its invalid create in team-a is INVALID_ARGUMENT.
        _, out = self.create('outsider', name='Not_A_Name')
        self.assertEqual(out.code, IA, out)
        # The driver's validation before the scopes too: an unknown noop
        # key from a caller who may set no driver_config key at all.
        _, out = self.create('field_scope', {'driverConfig': {'noop': {'bogus': 1}}})
        self.assertEqual(out.code, IA, out)
        self.assertIn('bogus', out.details)

    def test_scope_pairs_inside_and_outside(self):
        failures = []
        for principal, (extra, needle) in FORBIDDEN.items():
            name, out = self.create(principal, extra)
            if out.code != PD or needle not in out.details:
                failures.append('%s outside its scope: want PERMISSION_DENIED naming %r, got '
                                '%r%s' % (principal, needle, out, unknown_key_hint(out, needle)))
        for principal, (extra, want) in ALLOWED.items():
            name, out = self.create(principal, extra)
            if out.code != want:
                failures.append('%s inside its scope: want %s, got %r%s'
                                % (principal, want, out, unknown_key_hint(out, str(extra))))
            elif want == OK:
                self.assertEqual(out.response.owner, self.subject(principal))
        if failures:
            self.fail('\n'.join(failures))

    def test_each_sensitive_value(self):
        """value-limited (VALUE_BASE allowed): each value outside its list is
        refused, naming the value; the largest values inside pass."""
        gi = 1 << 30
        cases = [
            # (placement over VALUE_BASE; None removes a key), expected, text named
            ({}, OK, None),
            ({'nodeSelector': {'pool': 'secure-1'}, 'tolerationKeys': ['example.com/a'],
              'cpuMillis': 2000, 'memoryBytes': gi, 'warmPool': 'rce-1'}, OK, None),
            ({'runtimeClassName': 'runc'}, PD, 'runc'),
            ({'runtimeClassName': None}, PD, None),
            ({'nodeSelector': {'pool': 'general'}}, PD, 'general'),
            ({'nodeSelector': {'zone': 'secure-1'}}, PD, 'zone'),
            ({'tolerationKeys': ['other.com/x']}, PD, 'other.com/x'),
            ({'tolerationKeys': ['example.com/a', '']}, PD, None),
            ({'cpuMillis': 2001}, PD, '2001'),
            ({'memoryBytes': gi + 1}, PD, str(gi + 1)),
            ({'allocation': 'SandboxClaim'}, PD, 'SandboxClaim'),
            ({'template': 'other'}, PD, 'other'),
            ({'warmPool': 'pool-x'}, PD, 'pool-x'),
        ]
        failures = []
        for over, want, needle in cases:
            pl = dict(VALUE_BASE)
            for k, v in over.items():
                if v is None:
                    pl.pop(k)
                else:
                    pl[k] = v
            name, out = self.create('value_scope', placed(**pl))
            if out.code != want or (needle and needle not in out.details):
                failures.append('%s: want %s%s, got %r%s' % (
                    over, want, ' naming %r' % needle if needle else '', out,
                    unknown_key_hint(out, str(over))))
            if want != OK and name in {s.name for s in self.list_ids('controller')}:
                failures.append('%s: refused but stored' % over)
        if failures:
            self.fail('\n'.join(failures))

    def test_credential_binding_names(self):
        # A name the role does not allow: PERMISSION_DENIED naming it.
        _, out = self.create('owner', {'credentials': [{'credential': 'team-b-git',
                                                        'env': 'TOKEN'}]})
        self.assertEqual(out.code, PD, out)
        self.assertIn('team-b-git', out.details)
        # An allowed name passes authorization; credentials are not built.
        _, out = self.create('owner', {'credentials': [{'credential': 'team-a-git',
                                                        'env': 'TOKEN'}]})
        self.assertEqual(out.code, UI, out)
        # One allowed and one not: denied, naming the one at fault.
        _, out = self.create('owner', {'credentials': [
            {'credential': 'team-a-git', 'env': 'A'}, {'credential': 'x-git', 'env': 'B'}]})
        self.assertEqual(out.code, PD, out)
        self.assertIn('x-git', out.details)

    def test_gateway_namespace_refused_even_for_star(self):
        # The controller's role allows namespaces ["*"]; the gateway's own
        # (auth.gateway_namespace) is refused anyway, others are fine.
        name, out = self.create('controller', placed(namespace=GATEWAY_NS))
        self.assertEqual(out.code, PD, '%r%s' % (out, unknown_key_hint(out, 'namespace')))
        self.assertIn(GATEWAY_NS, out.details)
        self.assertNotIn(name, {s.name for s in self.list_ids('controller')})
        self.assertEqual([e for e in events(self.daemon) if e['sandbox_name'] == name], [])
        _, out = self.create('controller', placed(namespace='sbx-x'))
        self.assertEqual(out.code, OK, '%r%s' % (out, unknown_key_hint(out, 'namespace')))
        self.assertEqual(out.response.status.namespace, 'sbx-x')

    def test_list_filters_stay_within_what_may_be_seen(self):
        mine = self.must_create('owner', tenant=TENANT)
        other = self.must_create('controller', tenant='team-b')
        # The owner filtering on team-b sees nothing there; the tenant
        # reader filtering on its tenant sees only team-a.
        self.assertNotIn(other.id, {s.id for s in self.list_ids('owner', tenant='team-b')})
        got = self.list_ids('reader', tenant=TENANT)
        self.assertIn(mine.id, {s.id for s in got})
        self.assertEqual({s.tenant for s in got}, {TENANT})
        self.assertNotIn(other.id, {s.id for s in self.list_ids('reader')})
        self.assertIn(other.id, {s.id for s in self.list_ids('outsider')})


class GatewayNamespaceFromEnvTest(DaemonTestCase):
    """Without auth.gateway_namespace the gateway's namespace is the pod's
    (POD_NAMESPACE when the service-account file is absent)."""

    def test_pod_namespace_refused(self):
        sa_file = '/var/run/secrets/kubernetes.io/serviceaccount/namespace'
        self.assertFalse(os.path.exists(sa_file),
                         'this host has %s; the POD_NAMESPACE fallback cannot be tested '
                         'here' % sa_file)
        d = self.start_daemon(driver='noop', env_extra={'POD_NAMESPACE': 'sg-pod-ns'})
        ch = self.admin_channel(d)
        self.assertIsNotNone(d.admin_token, 'the daemon wrote no admin token: '
                             'authentication is not wired\n' + d.tail())
        body = {'sandbox': sandbox(uname(), **placed(namespace='sg-pod-ns'))}
        out = rpcs.invoke(ch, 'CreateSandbox', body)
        self.assertEqual(out.code, PD, '%r%s' % (out, unknown_key_hint(out, 'namespace')))
        body = {'sandbox': sandbox(uname(), **placed(namespace='sbx-ok'))}
        out = rpcs.invoke(ch, 'CreateSandbox', body)
        self.assertEqual(out.code, OK, '%r%s' % (out, unknown_key_hint(out, 'namespace')))


def _rpc_error(outcome):
    """An object with trailing_metadata(), for Protos.status_details."""
    class E:
        def trailing_metadata(self):
            return outcome.trailing
    return E()


def _normalized(outcome, sid):
    """(code, details, trailing metadata) with sid replaced, so that
    answers about two ids of the same length compare equal."""
    def norm(v):
        if isinstance(v, bytes):
            return v.replace(sid.encode(), b'<ID>')
        return v.replace(sid, '<ID>')
    return (outcome.code, norm(outcome.details),
            tuple((k, norm(v)) for k, v in outcome.trailing))


def missing_id_like(sid):
    """An id of sid's shape and length that does not exist."""
    alphabet = '0123456789abcdefghjkmnpqrstvwxyz'
    prefix, _, rest = sid.partition('-')
    rng = random.Random(sid)
    return prefix + '-' + ''.join(rng.choice(alphabet) if c.isalnum() else c for c in rest)


class ProbeTest(_AuthzBase):
    """A caller cannot tell a sandbox it may not see from a missing one."""

    def test_same_answer_for_hidden_and_missing(self):
        hidden = self.must_create('owner')
        missing = missing_id_like(hidden.id)
        self.assertEqual(len(missing), len(hidden.id))
        self.assertEqual(rpcs.invoke(self.chan('controller'), 'GetSandbox',
                                     {'id': missing}).code, NF)
        for prober in ('outsider', 'ns_scope', 'cred_scope'):
            ch = self.chan(prober)
            for rpc in ('GetSandbox', 'DeleteSandbox', 'StreamSandboxLogs', 'ExecSandbox'):
                with self.subTest(prober=prober, rpc=rpc):
                    a = rpcs.invoke(ch, rpc, OBJECT_BODIES[rpc](hidden.id, None))
                    b = rpcs.invoke(ch, rpc, OBJECT_BODIES[rpc](missing, None))
                    if rpc in ('GetSandbox', 'DeleteSandbox'):
                        self.assertEqual(a.code, NF, a)
                    self.assertEqual(_normalized(a, hidden.id), _normalized(b, missing))
        # The hidden one is untouched by the delete attempts.
        got = rpcs.invoke(self.chan('owner'), 'GetSandbox', {'id': hidden.id})
        self.assertEqual(got.code, OK, got)
        self.assertFalse(got.response.HasField('delete_time'), got.response)

    def test_tenant_filter_does_not_reveal_a_tenant(self):
        self.must_create('owner', tenant=TENANT)
        ch = self.chan('outsider')
        a = rpcs.invoke(ch, 'ListSandboxes', {'tenant': TENANT})
        nobody = 'team-' + uuid.uuid4().hex[:6]  # as long as TENANT
        b = rpcs.invoke(ch, 'ListSandboxes', {'tenant': nobody})
        self.assertEqual(a.code, b.code, (a, b))
        self.assertIn(a.code, (OK, PD), a)
        if a.code == OK:
            self.assertEqual((list(a.response.sandboxes), list(b.response.sandboxes)), ([], []))
        else:
            self.assertEqual(a.details.replace(TENANT, '<T>'), b.details.replace(nobody, '<T>'))

    def test_request_id_of_another_subject_reveals_nothing(self):
        victim = self.must_create('owner', request_id='shared-rid-' + uuid.uuid4().hex[:8])
        # The same idempotency key from another caller (in its own tenant):
        # a sandbox of its own, or a refusal that does not name the victim.
        name, out = self.create('outsider', tenant='team-b', request_id=victim.request_id)
        if out.code == OK:
            self.assertNotEqual(out.response.id, victim.id)
            self.assertEqual(out.response.owner, self.subject('outsider'))
        else:
            self.assertNotIn(victim.id, out.details)
            self.assertNotIn(victim.name, out.details)
        # The same content as the victim's own create, other subject.
        out = rpcs.invoke(self.chan('tenant_admin'), 'CreateSandbox', {
            'sandbox': sandbox(victim.name, tenant=TENANT, project='p1'),
            'requestId': victim.request_id})
        if out.code == OK:
            self.assertNotEqual(out.response.id, victim.id)
        else:
            self.assertNotIn(victim.id, out.details)

    def test_timing_of_hidden_and_missing(self):
        """Medians of interleaved Gets of a hidden and a missing sandbox
        are within 3x of each other and both well under 50 ms. Up to three
        rounds, because a 2-core machine shared with builds has bursts; a
        real difference (a driver call, a synchronous write on one path)
        shows in every round."""
        hidden = self.must_create('owner')
        missing = missing_id_like(hidden.id)
        ch = self.chan('outsider')
        bodies = {'hidden': {'id': hidden.id}, 'missing': {'id': missing}}
        for _ in range(20):  # warm up the channel and the token cache
            for b in bodies.values():
                rpcs.invoke(ch, 'GetSandbox', b)
        rounds = []
        for attempt in range(3):
            order = ['hidden', 'missing'] * 150
            random.shuffle(order)
            times = {'hidden': [], 'missing': []}
            for kind in order:
                t0 = time.perf_counter()
                out = rpcs.invoke(ch, 'GetSandbox', bodies[kind])
                times[kind].append(time.perf_counter() - t0)
                self.assertEqual(out.code, NF, out)
            med = {k: statistics.median(v) for k, v in times.items()}
            rounds.append(med)
            ratio = max(med.values()) / max(min(med.values()), 1e-6)
            if ratio <= 3.0 and max(med.values()) < env.scaled(0.05):
                return
        self.fail('Get of a hidden vs a missing sandbox, medians per round (ms): %s'
                  % ['hidden %.2f / missing %.2f' % (r['hidden'] * 1e3, r['missing'] * 1e3)
                     for r in rounds])


if __name__ == '__main__':
    unittest.main()
