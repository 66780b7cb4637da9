"""Authentication through the real binary: malformed and malicious JWTs
(every one UNAUTHENTICATED, none creating anything, none echoed), the
accepted forms (RS256, ES256, EdDSA; subject prefixes; groups), static
tokens, the embedded default's admin token file, auth.reflection,
auth.disabled, and health without a credential."""
import json
import os
import socket
import stat
import time
import unittest
import uuid

import grpc
import jwt as pyjwt  # PyJWT, only to cross-check the tokens sgtest.jwt makes

from sgtest import env, rpcs
from sgtest import jwt as sgjwt
from sgtest.authfix import keydir, policy, role
from sgtest.daemon import Daemon, DaemonTestCase, deep_merge, free_port
from sgtest.jwt import b64u, b64u_decode, encode, hmac_sign, P256_ORDER
from sgtest.sandboxes import events, sandbox

U, PD, OK = 'UNAUTHENTICATED', 'PERMISSION_DENIED', 'OK'
RS, EC, ED, MIX = 'https://rs.test', 'https://ec.test', 'https://ed.test', 'https://mix.test'
MAKER = role(['sandboxes.*', 'events.*'], 'own', tenants=['*'], projects=['*'])
VIEW_ALL = role(['sandboxes.get', 'sandboxes.list'], 'any', tenants=['*'], projects=['*'])


def uname():
    return 'sb-' + uuid.uuid4().hex[:10]


class Keys:
    """The issuers of this module and an attacker's keys (made once)."""

    def __init__(self, base):
        d = keydir(base)
        self.rs = sgjwt.Issuer(RS, [sgjwt.Key.rsa('rs-1'), sgjwt.Key.rsa('rs-2')],
                               algorithms=['RS256'], clock_skew_s=60)
        self.ec = sgjwt.Issuer(EC, [sgjwt.Key.p256('ec-1')], algorithms=['ES256'],
                               subject_prefix='ec:')
        self.ed = sgjwt.Issuer(ED, [sgjwt.Key.ed25519('ed-1')], algorithms=['EdDSA'],
                               groups_claim='groups')
        self.mix = sgjwt.Issuer(MIX, [sgjwt.Key.rsa('mix-rsa'), sgjwt.Key.p256('mix-ec')],
                                algorithms=['RS256', 'ES256'])
        for i, name in ((self.rs, 'rs'), (self.ec, 'ec'), (self.ed, 'ed'), (self.mix, 'mix')):
            i.write_jwks(os.path.join(d, name + '-jwks.json'))
        self.evil_rsa = sgjwt.Key.rsa('evil-1')
        self.evil_ec = sgjwt.Key.p256('ec-1')     # same kid as the real one
        self.evil_ed = sgjwt.Key.ed25519('ed-1')  # same kid as the real one
        self.static = 'dev-' + uuid.uuid4().hex + uuid.uuid4().hex

    def policy(self):
        bindings = [
            {'roles': ['maker'], 'subjects': [{'issuer': RS, 'subject': '*'},
                                              {'issuer': EC, 'subject': '*'},
                                              {'issuer': MIX, 'subject': '*'},
                                              {'group': 'creators'},
                                              {'token': 'dev'}]},
            {'roles': ['view-all'], 'subjects': [{'issuer': RS, 'subject': 'auditor'}]},
        ]
        return policy([self.rs, self.ec, self.ed, self.mix],
                      {'maker': MAKER, 'view-all': VIEW_ALL}, bindings,
                      static_tokens=[('dev', self.static)])


def malicious_tokens(k):
    """{description: token} of tokens that must all be refused."""
    now = int(time.time())
    rs, ec, ed, mix = k.rs, k.ec, k.ed, k.mix
    r1 = rs.keys[0]
    c = rs.claims('mallory')
    good = rs.token('mallory')
    h, p, s = good.split('.')
    sig = b64u_decode(s)
    t = {}

    def hdr(alg, kid='rs-1', **extra):
        d = {'alg': alg, 'typ': 'JWT'}
        if kid is not None:
            d['kid'] = kid
        d.update(extra)
        return d

    # The algorithm comes from the issuer, never from the token.
    for alg in ('none', 'None', 'NONE', 'nOnE'):
        t['alg %s, no signature' % alg] = encode(hdr(alg), c, signature=b'')
    t['alg none, the real RS256 signature kept'] = encode(hdr('none'), c, signature=sig)
    t['alg none, two segments'] = encode(hdr('none'), c, signature=b'').rstrip('.')
    t['alg missing, RS256 signature'] = encode({'typ': 'JWT', 'kid': 'rs-1'}, c, key=r1,
                                               alg='RS256')
    t['alg rs256 (lower case), RS256 signature'] = encode(hdr('rs256'), c, key=r1, alg='RS256')
    for alg in ('HS256', 'HS384', 'HS512'):
        t['%s keyed with the RSA public key (PEM)' % alg] = encode(
            hdr(alg), c, signer=lambda si, a=alg: hmac_sign(a, r1.public_pem(), si))
    t['HS256 keyed with the JWK modulus'] = encode(
        hdr('HS256'), c, signer=lambda si: hmac_sign('HS256',
                                                     b64u_decode(r1.public_jwk()['n']), si))
    with open(rs.jwks_path, 'rb') as f:
        jwks_bytes = f.read()
    t['HS256 keyed with the JWKS file'] = encode(
        hdr('HS256'), c, signer=lambda si: hmac_sign('HS256', jwks_bytes, si))
    t['PS256 (valid PSS signature by rs-1) to an RS256 issuer'] = encode(
        hdr('PS256'), c, key=r1, alg='PS256')
    t['RS256 header, PSS signature'] = encode(hdr('RS256'), c, signer=lambda si: r1.sign(
        'PS256', si))
    t['RS256 header, RS512 signature'] = encode(hdr('RS256'), c, signer=lambda si: r1.sign(
        'RS512', si))

    # Keys: unknown, an attacker's under a real kid, embedded or fetched.
    t['unknown kid, attacker signature'] = encode(hdr('RS256', 'rs-999'), c, key=k.evil_rsa,
                                                  alg='RS256')
    t['kid rs-1, attacker RSA signature'] = encode(hdr('RS256'), c, key=k.evil_rsa,
                                                   alg='RS256')
    t['no kid, attacker RSA signature'] = encode(hdr('RS256', None), c, key=k.evil_rsa,
                                                 alg='RS256')
    t['embedded jwk of the attacker key'] = encode(
        hdr('RS256', 'evil-1', jwk=k.evil_rsa.public_jwk()), c, key=k.evil_rsa, alg='RS256')
    t['jku naming an attacker JWKS'] = encode(
        hdr('RS256', 'evil-1', jku='http://127.0.0.1:9/jwks.json'), c, key=k.evil_rsa,
        alg='RS256')
    t['x5u naming an attacker certificate'] = encode(
        hdr('RS256', 'evil-1', x5u='http://127.0.0.1:9/cert.pem'), c, key=k.evil_rsa,
        alg='RS256')
    t['kid path traversal'] = encode(hdr('RS256', '../../../../../dev/null'), c,
                                     key=k.evil_rsa, alg='RS256')
    t['kid with a quote and SQL'] = encode(hdr('RS256', "x' OR '1'='1"), c, key=k.evil_rsa,
                                           alg='RS256')
    t['kid with an escaped NUL after a real kid'] = encode(hdr('RS256', 'rs-1\u0000x'), c,
                                                           key=k.evil_rsa, alg='RS256')
    t['crit header naming an unknown extension (signed by rs-1)'] = encode(
        hdr('RS256', crit=['urn:x-unknown'], **{'urn:x-unknown': True}), c, key=r1,
        alg='RS256')
    t['huge header (6000-character kid), attacker signature'] = encode(
        hdr('RS256', 'k' * 6000), c, key=k.evil_rsa, alg='RS256')
    t['deeply nested payload, attacker signature'] = encode(
        hdr('RS256', 'evil-1'), claims_bytes=b'{"sub":"x","n":' + b'[' * 3000 + b']' * 3000
        + b'}', key=k.evil_rsa, alg='RS256')

    # Signatures.
    t['signature with its last byte flipped'] = '%s.%s.%s' % (h, p, b64u(
        sig[:-1] + bytes([sig[-1] ^ 1])))
    t['signature truncated by one byte'] = '%s.%s.%s' % (h, p, b64u(sig[:-1]))
    t['signature empty'] = '%s.%s.' % (h, p)
    t['signature doubled'] = '%s.%s.%s' % (h, p, b64u(sig + sig))
    t['signature of another token (spliced)'] = '%s.%s.%s' % (
        h, p, rs.token('someone-else').split('.')[2])
    t['payload changed after signing (sub)'] = '%s.%s.%s' % (
        h, b64u(sgjwt.compact_json(dict(c, sub='auditor'))), s)
    t['payload changed after signing (exp extended)'] = '%s.%s.%s' % (
        h, b64u(sgjwt.compact_json(dict(c, exp=c['exp'] + 86400))), s)
    t['header changed after signing (kid rs-2)'] = '%s.%s.%s' % (
        b64u(sgjwt.compact_json(hdr('RS256', 'rs-2'))), p, s)

    # Framing and encoding.
    t['one segment'] = h
    t['two segments'] = '%s.%s' % (h, p)
    t['four segments'] = good + '.' + s
    t['five segments (JWE shape)'] = '%s.%s.%s.%s.%s' % (h, p, s, p, s)
    t['leading dot'] = '.' + good
    t['trailing dot'] = good + '.'
    t['padded segments'] = '.'.join(x + '=' * (4 - len(x) % 4 if len(x) % 4 else 4)
                                    for x in (h, p, s))
    std = s.replace('-', '+').replace('_', '/')
    t['standard base64 alphabet in the signature'] = '%s.%s.%s' % (
        h, p, std if std != s else s[:-2] + '+/')
    t['a space inside the payload'] = '%s.%s %s.%s' % (h, p[:10], p[10:], s)
    t['invalid base64 characters'] = '%s.%s.%s' % (h, p[:-3] + '!*$', s)

    # Not JSON, or ambiguous JSON, under a valid signature.
    def signed(header_bytes=None, claims_bytes=None, header=None):
        return encode(header or (None if header_bytes else hdr('RS256')), c,
                      header_bytes=header_bytes, claims_bytes=claims_bytes, key=r1,
                      alg='RS256')
    t['header not JSON'] = signed(header_bytes=b'{"alg":"RS256","kid":"rs-1"')
    t['header a JSON array'] = signed(header_bytes=b'["RS256","rs-1"]')
    t['payload not JSON'] = signed(claims_bytes=sgjwt.compact_json(c)[:-1])
    t['payload a JSON string'] = signed(claims_bytes=b'"mallory"')
    t['payload JSON with trailing bytes'] = signed(claims_bytes=sgjwt.compact_json(c) + b'x')
    t['payload not UTF-8'] = signed(claims_bytes=sgjwt.compact_json(dict(c, sub='MAL'))
                                    .replace(b'MAL', b'\xff\xfe\xfd'))
    dup_sub = sgjwt.compact_json(c).replace(b'"sub":"mallory"',
                                            b'"sub":"mallory","sub":"auditor"')
    t['duplicate sub claim'] = signed(claims_bytes=dup_sub)
    dup_exp = sgjwt.compact_json(dict(c, exp=now - 3600))[:-1] + (
        b',"exp":%d}' % (now + 3600))
    t['duplicate exp claim (expired, then valid)'] = signed(claims_bytes=dup_exp)
    t['duplicate alg in the header (none, then RS256)'] = signed(
        header_bytes=b'{"alg":"none","alg":"RS256","kid":"rs-1"}')

    # Claims.
    def claims_token(**over):
        return rs.token('mallory', **over)
    t['wrong aud'] = claims_token(aud='someone-else')
    t['aud missing'] = claims_token(aud=None)
    t['aud list without ours'] = claims_token(aud=['a', 'b'])
    t['aud empty list'] = claims_token(aud=[])
    t['aud a number'] = claims_token(aud=7)
    t['wrong iss, signed by rs-1'] = claims_token(iss='https://evil.test')
    t['iss missing'] = claims_token(iss=None)
    t['iss with a trailing slash'] = claims_token(iss=RS + '/')
    t['iss in another case'] = claims_token(iss=RS.upper())
    t['expired an hour ago'] = claims_token(exp=now - 3600, iat=now - 7200, nbf=now - 7200)
    t['expired just past the skew'] = claims_token(exp=now - 90, iat=now - 900, nbf=now - 900)
    t['exp missing'] = claims_token(exp=None)
    t['exp a string'] = claims_token(exp=str(now + 600))
    t['exp negative'] = claims_token(exp=-1)
    t['nbf in the future, past the skew'] = claims_token(nbf=now + 600)
    t['iat in the future, past the skew'] = claims_token(iat=now + 600)
    t['sub missing'] = claims_token(sub=None)
    t['sub empty'] = claims_token(sub='')
    t['sub a number'] = claims_token(sub=42)

    # ECDSA and EdDSA.
    ce = ec.claims('mallory')
    e1 = ec.keys[0]
    t['ES256 r=0 s=0'] = encode(hdr('ES256', 'ec-1'), ce, signature=b'\0' * 64)
    n = P256_ORDER.to_bytes(32, 'big')
    t['ES256 r=n s=n'] = encode(hdr('ES256', 'ec-1'), ce, signature=n + n)
    t['ES256 r=0, s from a real signature'] = encode(
        hdr('ES256', 'ec-1'), ce, signer=lambda si: b'\0' * 32 + e1.sign('ES256', si)[32:])
    t['ES256 DER-encoded signature'] = encode(hdr('ES256', 'ec-1'), ce,
                                              signer=lambda si: e1.sign('ES256-DER', si))
    t['ES256 65-byte signature'] = encode(hdr('ES256', 'ec-1'), ce,
                                          signer=lambda si: e1.sign('ES256', si) + b'\0')
    t['ES256 by an attacker key under kid ec-1'] = encode(hdr('ES256', 'ec-1'), ce,
                                                          key=k.evil_ec, alg='ES256')
    cd = ed.claims('mallory', groups=['creators'])
    d1 = ed.keys[0]
    t['EdDSA by an attacker key under kid ed-1'] = encode(hdr('EdDSA', 'ed-1'), cd,
                                                          key=k.evil_ed, alg='EdDSA')
    t['EdDSA signature truncated to 63 bytes'] = encode(
        hdr('EdDSA', 'ed-1'), cd, signer=lambda si: d1.sign('EdDSA', si)[:63])
    t['EdDSA all-zero signature'] = encode(hdr('EdDSA', 'ed-1'), cd, signature=b'\0' * 64)

    # Keys of the wrong type or issuer.
    cm = mix.claims('mallory')
    mrsa, mec = mix.keys
    t['RS256 header naming the EC key (mix-ec), RSA signature'] = encode(
        hdr('RS256', 'mix-ec'), cm, signer=lambda si: mrsa.sign('RS256', si))
    t['ES256 header naming the RSA key (mix-rsa), EC signature'] = encode(
        hdr('ES256', 'mix-rsa'), cm, signer=lambda si: mec.sign('ES256', si))
    t['ES256 token claiming the RS256 issuer, signed by ec-1'] = encode(
        hdr('ES256', 'ec-1'), c, key=e1, alg='ES256')
    t['EdDSA token claiming the RS256 issuer, signed by ed-1'] = encode(
        hdr('EdDSA', 'ed-1'), c, key=d1, alg='EdDSA')
    t['RS256 token claiming the EC issuer, signed by rs-1'] = encode(
        hdr('RS256', 'rs-1'), ce, key=r1, alg='RS256')
    t['token of the EC issuer naming kid rs-1, signed by rs-1'] = encode(
        hdr('ES256', 'rs-1'), ce, signer=lambda si: r1.sign('RS256', si))
    return t


# Authorization header values that carry no usable bearer credential.
BAD_HEADERS = {
    'Basic scheme': lambda k: 'Basic ' + b64u(b'user:password'),
    'Bearer with nothing after it': lambda k: 'Bearer',
    'Bearer and spaces': lambda k: 'Bearer    ',
    'unknown scheme carrying a valid JWT': lambda k: 'Token ' + k.rs.token('mallory'),
    'valid JWT without a scheme': lambda k: k.rs.token('mallory'),
    'valid JWT followed by more text': lambda k: 'Bearer %s extra' % k.rs.token('mallory'),
    'the static token\'s sha256 as the token': lambda k: 'Bearer ' + sgjwt.sha256_hex(k.static),
    'the static token with a character appended': lambda k: 'Bearer ' + k.static + 'x',
    'the static token minus its last character': lambda k: 'Bearer ' + k.static[:-1],
    'the static token in upper case': lambda k: 'Bearer ' + k.static.upper(),
}


class JwtTest(DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.k = Keys(os.path.join(env.WORK_DIR, cls.__name__ + '-keys'))
        cls.daemon = cls.start_class_daemon(driver='noop', policy=cls.k.policy(), audit=True)

    def ch(self, token=None):
        return self.channel(self.daemon.address, token=token)

    def create(self, token=None, metadata=None, ch=None):
        name = uname()
        out = rpcs.invoke(ch or self.ch(token), 'CreateSandbox',
                          {'sandbox': sandbox(name, tenant='team-a'), 'requestId': 'r-' + name},
                          metadata=metadata)
        return name, out

    def all_names(self):
        ch = self.ch(self.k.rs.token('auditor'))
        names, token = set(), ''
        while True:
            out = rpcs.invoke(ch, 'ListSandboxes', {'pageSize': 1000, 'pageToken': token})
            self.assertEqual(out.code, OK, out)
            names |= {s.name for s in out.response.sandboxes}
            token = out.response.next_page_token
            if not token:
                return names

    def test_harness_tokens_verify_with_pyjwt(self):
        # The encoder is right, so a refusal below is the daemon's doing.
        for issuer in (self.k.rs, self.k.ec, self.k.ed):
            key = issuer.keys[0]
            tok = issuer.token('alice')
            claims = pyjwt.decode(tok, key.public_pem(), algorithms=[key.alg],
                                  audience='sandgate', issuer=issuer.iss)
            self.assertEqual(claims['sub'], 'alice')
            self.assertEqual(pyjwt.get_unverified_header(tok)['kid'], key.kid)

    def test_malicious_tokens_refused(self):
        tokens = malicious_tokens(self.k)
        self.assertGreaterEqual(len(tokens), 40)
        self.assertEqual(len(set(tokens.values())), len(tokens), 'two cases are the same token')
        names, problems = [], []
        ch = self.ch()
        for what, tok in sorted(tokens.items()):
            secrets = [tok] + [seg for seg in tok.split('.') if len(seg) >= 16]
            md = [('authorization', 'Bearer ' + tok)]
            name, out = self.create(metadata=md, ch=ch)
            names.append(name)
            outs = [('CreateSandbox', out),
                    ('ListSandboxes', rpcs.invoke(ch, 'ListSandboxes', {}, metadata=md)),
                    ('GetSandbox', rpcs.invoke(ch, 'GetSandbox', {'id': 'sb-x'}, metadata=md))]
            for rpc, o in outs:
                if o.code != U:
                    problems.append('%s: %s answered %r' % (what, rpc, o))
                for sec in secrets:
                    if sec in o.details or any(sec in str(v) for _, v in o.trailing):
                        problems.append('%s: %s echoed (part of) the token' % (what, rpc))
        if problems:
            self.fail('%d problems:\n%s' % (len(problems), '\n'.join(problems)))
        self.assert_nothing_made(names, tokens.values())

    def test_bad_authorization_headers_refused(self):
        names, problems, secrets = [], [], []
        ch = self.ch()
        for what, make in sorted(BAD_HEADERS.items()):
            value = make(self.k)
            name, out = self.create(metadata=[('authorization', value)], ch=ch)
            names.append(name)
            if out.code != U:
                problems.append('%s: %r' % (what, out))
            cred = value.split()[-1] if value.split() else ''
            if len(cred) >= 16:
                secrets.append(cred)
                if cred in out.details:
                    problems.append('%s: echoed in %r' % (what, out.details))
        if problems:
            self.fail('%d problems:\n%s' % (len(problems), '\n'.join(problems)))
        self.assert_nothing_made(names, secrets)

    def assert_nothing_made(self, names, secrets):
        present = self.all_names() & set(names)
        self.assertEqual(present, set(), 'refused callers created sandboxes')
        self.assertEqual([e for e in events(self.daemon) if e['sandbox_name'] in set(names)], [])
        logs = self.daemon.stderr_text() + self.daemon.audit_text()
        for tok in secrets:
            for part in [tok] + [seg for seg in tok.split('.') if len(seg) >= 16]:
                self.assertNotIn(part, logs, 'a refused token reached the log or the audit log')

    def check_ok(self, token, owner):
        name, out = self.create(token)
        self.assertEqual(out.code, OK, out)
        self.assertEqual(out.response.owner, owner)
        self.assertIn(name, self.all_names())
        return out.response

    def test_rs256_with_each_key(self):
        for key in self.k.rs.keys:
            with self.subTest(kid=key.kid):
                self.check_ok(self.k.rs.token('alice', key=key), RS + '#alice')

    def test_es256_with_subject_prefix(self):
        self.check_ok(self.k.ec.token('bob'), 'ec:bob')

    def test_eddsa_group_binding(self):
        self.check_ok(self.k.ed.token('carol', groups=['x', 'creators']), ED + '#carol')
        # The same issuer without the group: authenticated, but no role.
        for groups in (['viewers'], None, []):
            with self.subTest(groups=groups):
                _, out = self.create(self.k.ed.token('dave', groups=groups))
                self.assertEqual(out.code, PD, out)

    def test_issuer_with_two_algorithms(self):
        rsa_key, ec_key = self.k.mix.keys
        self.check_ok(self.k.mix.token('erin', key=rsa_key), MIX + '#erin')
        self.check_ok(self.k.mix.token('erin', key=ec_key), MIX + '#erin')

    def test_tokens_made_by_pyjwt(self):
        now = int(time.time())
        for issuer, owner in ((self.k.rs, RS + '#frank'), (self.k.ec, 'ec:frank'),
                              (self.k.ed, ED + '#frank')):
            key = issuer.keys[0]
            claims = {'iss': issuer.iss, 'sub': 'frank', 'aud': ['other', 'sandgate'],
                      'iat': now, 'exp': now + 300, 'groups': ['creators']}
            tok = pyjwt.encode(claims, key.private, algorithm=key.alg,
                               headers={'kid': key.kid})
            with self.subTest(alg=key.alg):
                self.check_ok(tok, owner)

    def test_clock_skew_tolerated(self):
        now = int(time.time())
        self.check_ok(self.k.rs.token('gina', exp=now - 20, iat=now - 600, nbf=now - 600),
                      RS + '#gina')
        self.check_ok(self.k.rs.token('gina', nbf=now + 20, iat=now + 20), RS + '#gina')

    def test_token_reused(self):
        tok = self.k.rs.token('hank')
        for _ in range(5):
            self.check_ok(tok, RS + '#hank')

    def test_static_token(self):
        self.check_ok(self.k.static, 'token:dev')

    def test_health_and_reflection_need_no_credential(self):
        ch = self.ch()
        self.assertEqual(self.protos.health_check(ch, ''), 'SERVING')
        self.assertEqual(self.protos.health_check(ch, 'sandgate.v1.SandboxService'), 'SERVING')
        names = list_services(self.protos, ch)
        self.assertIn('sandgate.v1.SandboxService', names)
        # And a bad token does not spoil them.
        bad = self.ch('garbage')
        self.assertEqual(self.protos.health_check(bad, ''), 'SERVING')
        self.assertIn('sandgate.v1.SandboxService', list_services(self.protos, bad))

    def test_anonymous_gets_unauthenticated_everywhere(self):
        for rpc in rpcs.RPCS:
            with self.subTest(rpc=rpc):
                self.assertEqual(rpcs.invoke(self.ch(), rpc, {}, timeout=env.scaled(5)).code, U)


def list_services(protos, ch):
    call = protos.method(ch, '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo')
    req = protos.msg('grpc.reflection.v1.ServerReflectionRequest', host='', list_services='')
    resp = list(call(iter([req]), timeout=env.scaled(10)))
    return [s.name for s in resp[0].list_services_response.service]


class AdminTokenTest(DaemonTestCase):
    """The embedded default: no policy file, one admin token."""

    def start_default(self, **kw):
        d = self.start_daemon(driver='noop', **kw)
        self.assertIsNotNone(d.admin_token, 'no admin token at %s: the embedded default is '
                             'not wired\n%s' % (d.admin_token_path, d.tail()))
        return d

    def test_token_file_mode_and_use(self):
        d = self.start_default()
        st = os.stat(d.admin_token_path)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600, oct(st.st_mode))
        self.assertGreaterEqual(len(d.admin_token), 32, 'the admin token is short')
        self.assertTrue(d.admin_token.isprintable() and ' ' not in d.admin_token)
        out = rpcs.invoke(self.admin_channel(d), 'CreateSandbox', {'sandbox': sandbox(uname())})
        self.assertEqual(out.code, OK, out)
        self.assertEqual(out.response.owner, 'token:admin')
        for tok in (None, d.admin_token + 'x', d.admin_token[:-1], 'x' + d.admin_token[1:],
                    d.admin_token.upper() if d.admin_token.upper() != d.admin_token else 'x'):
            with self.subTest(token=None if tok is None else 'variant'):
                out = rpcs.invoke(self.channel(d.address, token=tok), 'ListSandboxes', {})
                self.assertEqual(out.code, U, out)
                if tok:
                    self.assertNotIn(tok, out.details)
        self.assertNotIn(d.admin_token, d.stderr_text())

    def test_same_token_after_restart(self):
        d = self.start_default()
        first = d.admin_token
        made = rpcs.invoke(self.admin_channel(d), 'CreateSandbox',
                           {'sandbox': sandbox(uname())})
        self.assertEqual(made.code, OK, made)
        self.assertEqual(d.stop(), 0)
        d.start()
        self.assertEqual(d.admin_token, first)
        got = rpcs.invoke(self.admin_channel(d), 'GetSandbox', {'id': made.response.id})
        self.assertEqual(got.code, OK, got)
        other = self.start_default(name='other')
        self.assertNotEqual(other.admin_token, first, 'two data dirs, one token')
        out = rpcs.invoke(self.channel(other.address, token=first), 'ListSandboxes', {})
        self.assertEqual(out.code, U, out)

    def test_configured_token_file(self):
        path = os.path.join(env.WORK_DIR, 'custom-%s.token' % uuid.uuid4().hex[:6])
        d = self.start_default(auth={'admin_token_file': path})
        self.assertEqual(d.admin_token_path, path)
        self.assertFalse(os.path.exists(os.path.join(d.data_dir, 'admin.token')))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(rpcs.invoke(self.admin_channel(d), 'ListSandboxes', {}).code, OK)

    def test_admin_token_refused_once_a_policy_is_configured(self):
        d = self.start_default()
        token = d.admin_token
        self.assertEqual(d.stop(), 0)
        d.config = deep_merge(d.config, {'auth': {'policy_file': d.policy_path}})
        d.write_policy(policy(roles={'r': role(['sandboxes.list'], 'any')}, bindings=[
            {'roles': ['r'], 'subjects': [{'token': 'admin'}]}]))
        d.start()
        self.assertIsNone(d.admin_token)
        out = rpcs.invoke(self.channel(d.address, token=token), 'ListSandboxes', {})
        self.assertEqual(out.code, U, out)

    def test_reflection_off(self):
        d = self.start_default(auth={'reflection': False})
        ch = self.channel(d.address)
        self.assertEqual(self.protos.health_check(ch, ''), 'SERVING')
        for version in ('v1', 'v1alpha'):
            with self.subTest(version=version):
                pkg = 'grpc.reflection.%s' % version
                call = self.protos.method(ch, '/%s.ServerReflection/ServerReflectionInfo' % pkg)
                req = self.protos.msg(pkg + '.ServerReflectionRequest', host='',
                                      list_services='')
                self.assertRpcCode(grpc_code('UNIMPLEMENTED'), lambda: list(
                    call(iter([req]), timeout=env.scaled(10))))
                # Not even the admin token turns it back on.
                admin = self.channel(d.address, token=d.admin_token)
                call = self.protos.method(admin,
                                          '/%s.ServerReflection/ServerReflectionInfo' % pkg)
                self.assertRpcCode(grpc_code('UNIMPLEMENTED'), lambda: list(
                    call(iter([req]), timeout=env.scaled(10))))

    def test_reflection_on_by_default_without_credential(self):
        d = self.start_default()
        self.assertIn('sandgate.v1.SandboxService', list_services(self.protos,
                                                                  self.channel(d.address)))


class DisabledTest(DaemonTestCase):
    def test_disabled_on_loopback(self):
        d = self.start_daemon(driver='noop', auth={'disabled': True})
        self.assertFalse(os.path.exists(d.admin_token_path), 'disabled auth wrote a token')
        out = rpcs.invoke(self.channel(d.address), 'CreateSandbox', {'sandbox': sandbox(uname())})
        self.assertEqual(out.code, OK, out)
        self.assertEqual(out.response.owner, 'local:unauthenticated')
        warned = [r for r in d.log_records() if r.get('level') in ('warn', 'warning')
                  and 'auth' in json.dumps(r).lower()]
        self.assertTrue(warned, 'auth.disabled must log a warning at start\n' + d.tail())

    def test_disabled_refused_off_loopback(self):
        addr = _non_loopback_address()
        self.assertIsNotNone(addr, 'this host has no non-loopback IPv4 address to listen on')
        port = free_port()
        d = Daemon(name='disabled-public', driver='noop', auth={'disabled': True},
                   listeners=[{'address': '%s:%d' % (addr, port), 'allow_insecure': True}])
        self.addCleanup(d.kill)
        d.start(wait=False)
        rc = d.wait(env.scaled(20))
        self.assertNotEqual(rc, 0, 'auth.disabled with a listener on %s must not start' % addr)
        self.assertIn('disabled', d.stderr_text())


def _non_loopback_address():
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(('192.0.2.1', 9))  # no packet is sent for a UDP connect
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith('127.') else addr


def grpc_code(name):
    return getattr(grpc.StatusCode, name)


if __name__ == '__main__':
    unittest.main()
