"""mTLS client certificates as identities, through the real daemon.

One daemon (noop driver, so nothing is spawned) with a plaintext listener
and an mTLS listener whose client CA is a per-run test root. Its policy
binds the three good certificates (a SPIFFE URI SAN, a DNS SAN, a CN) to a
role that may do everything to its own sandboxes. The bindings are globs
wide enough to match the names the bad certificates carry too, so a rule
that failed to refuse would show as a created sandbox, not as a
PERMISSION_DENIED.

Every bad certificate is refused in one of two places, and each case
asserts which:
  HANDSHAKE  the TLS handshake (OpenSSL verifying the chain against
             client_ca_file) fails: the client sees UNAVAILABLE;
  RULES      the handshake succeeds and authz/peer.c refuses the
             certificate: the RPC is answered UNAUTHENTICATED.
Either way no sandbox of that name reaches the store.
"""
import os
import sqlite3
import unittest
import uuid
import warnings

import grpc

from sgtest import env, pki
from sgtest.daemon import DaemonTestCase, free_port
from sgtest.sandboxes import Client, code_of, db_path, sandbox

HANDSHAKE = grpc.StatusCode.UNAVAILABLE
RULES = grpc.StatusCode.UNAUTHENTICATED

SPIFFE = 'spiffe://sandgate.test/ns/platform/sa/controller'
DNS = 'worker.sandgate.test'
CN = 'batch-runner'

ROOT_CN = 'sandgate mTLS test CA'

POLICY = {
    'roles': {
        'own-sandboxes': {
            'operations': [{'permissions': ['sandboxes.*'], 'on': 'own'}],
            'tenants': ['*'],
            'projects': ['*'],
        },
    },
    'bindings': [{
        'roles': ['own-sandboxes'],
        'subjects': [
            {'spiffe': 'spiffe://sandgate.test/*'},
            {'dns': '*sandgate.test'},
            {'cn': 'batch-runner*'},
        ],
    }],
}


# Each bad certificate, where it is refused and, when authz/peer.c refuses
# it, the part of the status message naming the rule (determined by experiment
# against Debian's OpenSSL 3.0 and gRPC 1.51, whose default security level
# is 2: no MD5 or SHA-1 signatures, no RSA keys under 2048 bits).
BAD = [
    ('signed_by_another_ca', HANDSHAKE, None),
    ('expired', HANDSHAKE, None),
    ('not_yet_valid', HANDSHAKE, None),
    ('self_signed', HANDSHAKE, None),
    ('unknown_intermediate_not_sent', HANDSHAKE, None),
    ('intermediate_of_another_ca', HANDSHAKE, None),
    ('ca_with_right_name_other_key', HANDSHAKE, None),
    ('issuer_is_ca_false_leaf', HANDSHAKE, None),
    # OpenSSL's "SSL client" purpose check refuses these three before the
    # rules of authz/peer.c are reached.
    ('eku_server_auth_only', HANDSHAKE, None),
    ('eku_code_signing_only', HANDSHAKE, None),
    ('key_usage_without_digital_signature', HANDSHAKE, None),
    ('unknown_critical_extension', HANDSHAKE, None),
    # grpcio (BoringSSL) will not even send these three; the bare
    # handshake in each case shows that the daemon refuses them too.
    ('md5_signature', HANDSHAKE, None),
    ('sha1_signature', HANDSHAKE, None),
    ('rsa_1024_bit_key', HANDSHAKE, None),
    ('two_uri_sans', RULES, 'more than one URI SAN'),
    # keyAgreement satisfies OpenSSL's purpose check, not the rules.
    ('key_usage_key_agreement_only', RULES, 'key usage does not include digitalSignature'),
    ('no_names_at_all', RULES, 'no usable name'),
    ('cn_with_control_characters', RULES, 'CN name has a control character'),
    ('cn_with_newline', RULES, 'CN name has a control character'),
    ('two_cns', RULES, 'more than one CN'),
    ('uri_san_with_control_character', RULES, 'URI SAN name has a control character'),
    ('uri_san_over_1024_bytes', RULES, 'URI SAN name is over 1024 bytes'),
    ('dns_san_with_control_character', RULES, 'DNS SAN name has a control character'),
    ('cn_over_1024_bytes', RULES, 'CN name is over 1024 bytes'),
]


def _build(f):
    """The test PKI: the entities the tests need by name, and the bad
    client certificates by case name."""
    ca = f.root('ca', ROOT_CN, key='rsa2048')
    rogue = f.root('rogue_ca', 'rogue CA')
    # The same subject as the real root, another key.
    twin = f.root('twin_ca', ROOT_CN)
    # An intermediate the server does not know unless the client sends it.
    inter = f.issue('intermediate', ca, cn='sandgate test intermediate', ca=True, eku=None,
                    ku=('key_cert_sign', 'crl_sign'))
    rogue_inter = f.issue('rogue_intermediate', rogue, cn='rogue intermediate', ca=True,
                          eku=None, ku=('key_cert_sign', 'crl_sign'))
    # A good client certificate (CA:FALSE) used as an issuer.
    leaf_issuer = f.issue('leaf_issuer', ca, cn='leaf', uris=['spiffe://sandgate.test/leaf'])

    ents = {
        'ca': ca,
        'server': f.server('server', ca),
        'good_spiffe': f.issue('good_spiffe', ca, cn='ignored-cn', uris=[SPIFFE],
                               dns=['ignored.sandgate.test']),
        'good_dns': f.issue('good_dns', ca, cn='ignored-cn', dns=[DNS, 'second.sandgate.test']),
        'good_cn': f.issue('good_cn', ca, cn=CN),
        'good_via_intermediate': f.issue('good_via_intermediate', inter,
                                         uris=['spiffe://sandgate.test/ns/x/sa/chained'],
                                         chain=[inter]),
    }
    with warnings.catch_warnings():
        # MD5 and SHA-1 signatures are the point of those two cases.
        warnings.simplefilter('ignore')
        md5 = f.issue('md5_signed', ca, uris=[SPIFFE], key='rsa2048', hash='md5')
        sha1 = f.issue('sha1_signed', ca, uris=[SPIFFE], key='rsa2048', hash='sha1')

    bad = {
        'signed_by_another_ca': f.issue('other_ca', rogue, uris=[SPIFFE]),
        'expired': f.issue('expired', ca, uris=[SPIFFE], not_before=-7200, not_after=-3600),
        'not_yet_valid': f.issue('not_yet_valid', ca, uris=[SPIFFE], not_before=3600,
                                 not_after=7200),
        'self_signed': f.issue('self_signed', None, uris=[SPIFFE]),
        'unknown_intermediate_not_sent': f.issue('no_intermediate', inter, uris=[SPIFFE]),
        'intermediate_of_another_ca': f.issue('rogue_chain', rogue_inter, uris=[SPIFFE],
                                              chain=[rogue_inter]),
        'ca_with_right_name_other_key': f.issue('twin_signed', twin, uris=[SPIFFE]),
        'issuer_is_ca_false_leaf': f.issue('leaf_signed', leaf_issuer, uris=[SPIFFE],
                                           chain=[leaf_issuer]),
        'eku_server_auth_only': f.issue('eku_server', ca, uris=[SPIFFE], eku=('serverAuth',)),
        'eku_code_signing_only': f.issue('eku_code', ca, uris=[SPIFFE],
                                         eku=('codeSigning',)),
        'key_usage_without_digital_signature': f.issue('ku_encipher', ca, uris=[SPIFFE],
                                                       key='rsa2048',
                                                       ku=('key_encipherment',)),
        'unknown_critical_extension': f.issue('critical_ext', ca, uris=[SPIFFE],
                                              critical_unknown=True),
        'md5_signature': md5,
        'sha1_signature': sha1,
        'rsa_1024_bit_key': f.issue('rsa1024', ca, uris=[SPIFFE], key='rsa1024'),
        'two_uri_sans': f.issue('two_uris', ca, uris=[SPIFFE, 'spiffe://sandgate.test/b']),
        'key_usage_key_agreement_only': f.issue('ku_agree', ca, uris=[SPIFFE],
                                                ku=('key_agreement',)),
        'no_names_at_all': f.issue('no_names', ca),
        'cn_with_control_characters': f.issue('cn_control', ca, cn=CN + '\x01\x1b[0m'),
        'cn_with_newline': f.issue('cn_newline', ca, cn=CN + '\nadmin'),
        'two_cns': f.issue('two_cns', ca, cn=CN, cn2=CN + '-2'),
        'uri_san_with_control_character': f.issue(
            'uri_control', ca, uris=['spiffe://sandgate.test/ns/a\x07/sa/b']),
        'uri_san_over_1024_bytes': f.issue(
            'uri_long', ca, uris=['spiffe://sandgate.test/' + 'a' * 1100]),
        'dns_san_with_control_character': f.issue('dns_control', ca,
                                                  dns=['bad\x7f' + DNS]),
        'cn_over_1024_bytes': f.issue('cn_long', ca, cn=CN + 'x' * 1100, cn_raw=True),
    }
    return ents, bad


_STATE = None


def _state():
    global _STATE
    if _STATE is None:
        _STATE = _build(pki.Factory(os.path.join(env.WORK_DIR, 'mtls-pki')))
    return _STATE


@unittest.skipUnless(pki.cryptography_available(),
                     'the cryptography package is needed for the test PKI')
class MtlsIdentityTest(DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ents, cls.bad = _state()
        cls.plain = '127.0.0.1:%d' % free_port()
        cls.mtls = '127.0.0.1:%d' % free_port()
        policy_dir = os.path.join(env.WORK_DIR, 'mtls-policy')
        os.makedirs(policy_dir, exist_ok=True)
        policy_path = os.path.join(policy_dir, 'policy.yaml')
        import yaml
        with open(policy_path, 'w') as f:
            yaml.safe_dump(POLICY, f, default_flow_style=False)
        cls.daemon = cls.start_class_daemon(
            listeners=[
                {'address': cls.plain},
                {'address': cls.mtls,
                 'tls': {'cert_file': cls.ents['server'].cert,
                         'key_file': cls.ents['server'].key,
                         'client_ca_file': cls.ents['ca'].cert}},
            ],
            config={'driver': {'name': 'noop'},
                    'auth': {'policy_file': policy_path}})

    def client(self, entity):
        creds = pki.Factory.channel_credentials(self.ents['ca'], entity)
        return Client(self.channel(self.mtls, creds))

    def stored_count(self, name):
        con = sqlite3.connect('file:%s?mode=ro' % db_path(self.daemon), uri=True, timeout=10)
        try:
            return con.execute('SELECT COUNT(*) FROM sandboxes WHERE name = ?',
                               (name,)).fetchone()[0]
        finally:
            con.close()

    # good certificates ---------------------------------------------------

    def check_good(self, entity, owner):
        self.assertTrue(pki.tls_handshake_ok(self.mtls, self.ents['ca'], entity))
        c = self.client(entity)
        name = 'sb-' + uuid.uuid4().hex[:12]
        sb = c.create(sandbox(name, tenant='team-a', project='p'))
        self.assertEqual(sb.owner, owner)
        self.assertEqual(sb.name, name)
        # The owner may read it back; the stored row is there once.
        self.assertEqual(c.get(sb.id).owner, owner)
        self.assertEqual(self.stored_count(name), 1)

    def test_good_spiffe_uri_san(self):
        self.check_good(self.ents['good_spiffe'], SPIFFE)

    def test_good_dns_san_only(self):
        self.check_good(self.ents['good_dns'], 'dns:' + DNS)

    def test_good_cn_only(self):
        self.check_good(self.ents['good_cn'], 'cn:' + CN)

    def test_good_chain_through_intermediate(self):
        # The same intermediate as unknown_intermediate_not_sent, sent.
        self.check_good(self.ents['good_via_intermediate'],
                        'spiffe://sandgate.test/ns/x/sa/chained')

    def test_good_certificate_again_after_refusals(self):
        # Refusals (cached or not) do not disturb a good client.
        for case in ('two_uri_sans', 'signed_by_another_ca'):
            code_of(self.client(self.bad[case]).create,
                    sandbox('sb-' + uuid.uuid4().hex[:12]))
        self.check_good(self.ents['good_spiffe'], SPIFFE)

    def test_no_client_certificate(self):
        c = Client(self.channel(self.mtls, pki.Factory.channel_credentials(self.ents['ca'])))
        self.assertEqual(code_of(c.create, sandbox('sb-' + uuid.uuid4().hex[:12])), HANDSHAKE)

    def test_every_case_has_a_certificate(self):
        self.assertEqual(sorted(self.bad), sorted(case for case, _, _ in BAD))
        self.assertGreaterEqual(len(BAD), 15)


def _bad_case(case, expected, rule):
    def test(self):
        entity = self.bad[case]
        c = self.client(entity)
        name = 'sb-' + uuid.uuid4().hex[:12]
        for attempt in range(2):
            # The second time, a refusal may come from the identity cache.
            try:
                sb = c.create(sandbox(name, tenant='team-a', project='p'))
            except grpc.RpcError as e:
                self.assertEqual(e.code(), expected, '%s (attempt %d): got %s: %s'
                                 % (case, attempt + 1, e.code(), e.details()))
                if rule:
                    self.assertIn(rule, e.details() or '')
            else:
                self.fail('%s: created, owner %r' % (case, sb.owner))
        # Which layer refused it, seen from a client that sends anything.
        self.assertEqual(pki.tls_handshake_ok(self.mtls, self.ents['ca'], entity),
                         expected == RULES)
        self.assertEqual(self.stored_count(name), 0)
        self.assertTrue(self.daemon.running())
    test.__name__ = 'test_bad_' + case
    test.__doc__ = '%s: %s' % (case.replace('_', ' '),
                               'handshake refused' if expected == HANDSHAKE
                               else 'UNAUTHENTICATED')
    return test


for _case, _expected, _rule in BAD:
    setattr(MtlsIdentityTest, 'test_bad_' + _case, _bad_case(_case, _expected, _rule))


if __name__ == '__main__':
    unittest.main()
