"""JSON Web Tokens for the authentication tests: keys (RSA-2048, P-256,
Ed25519), JWKS files, and a JWS compact encoder of our own.

The encoder takes every part as given, so tests can build the tokens an
attacker would: any header (alg "none", unknown kid, embedded keys), any
claims, raw segment bytes that are not JSON or repeat a member, and any
signature bytes (tampered, truncated, an ECDSA signature with r = s = 0).
Well-formed tokens come out exactly as RFC 7515/7519 describe them
(base64url without padding, ECDSA signatures as raw r || s), which
test_auth_jwt cross-checks against PyJWT.
"""
import base64
import hashlib
import hmac
import json
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

# The order of the P-256 group: an ECDSA signature with r or s of 0 or n is
# invalid by definition, and a verifier that does not check falls for it.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

_HASHES = {'256': hashes.SHA256, '384': hashes.SHA384, '512': hashes.SHA512}


def b64u(data):
    """base64url without padding (bytes or str in, str out)."""
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode('ascii')


def b64u_decode(text):
    text = text.encode() if isinstance(text, str) else text
    return base64.urlsafe_b64decode(text + b'=' * (-len(text) % 4))


def _int_b64u(n, length=None):
    length = length or max(1, (n.bit_length() + 7) // 8)
    return b64u(n.to_bytes(length, 'big'))


def compact_json(obj):
    return json.dumps(obj, separators=(',', ':'), sort_keys=False).encode()


class Key:
    """A private key with a kid. kind: 'RSA', 'EC' (P-256) or 'Ed25519'."""

    DEFAULT_ALG = {'RSA': 'RS256', 'EC': 'ES256', 'Ed25519': 'EdDSA'}

    def __init__(self, kind, kid, private=None):
        self.kind = kind
        self.kid = kid
        if private is None:
            if kind == 'RSA':
                private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            elif kind == 'EC':
                private = ec.generate_private_key(ec.SECP256R1())
            elif kind == 'Ed25519':
                private = ed25519.Ed25519PrivateKey.generate()
            else:
                raise ValueError('unknown key kind %r' % kind)
        self.private = private
        self.public = private.public_key()

    @classmethod
    def rsa(cls, kid):
        return cls('RSA', kid)

    @classmethod
    def p256(cls, kid):
        return cls('EC', kid)

    @classmethod
    def ed25519(cls, kid):
        return cls('Ed25519', kid)

    @property
    def alg(self):
        return self.DEFAULT_ALG[self.kind]

    def public_jwk(self, kid=None, **extra):
        """The public key as a JWK (RFC 7517/7518/8037), with use and alg."""
        kid = self.kid if kid is None else kid
        if self.kind == 'RSA':
            nums = self.public.public_numbers()
            jwk = {'kty': 'RSA', 'n': _int_b64u(nums.n), 'e': _int_b64u(nums.e)}
        elif self.kind == 'EC':
            nums = self.public.public_numbers()
            jwk = {'kty': 'EC', 'crv': 'P-256', 'x': _int_b64u(nums.x, 32),
                   'y': _int_b64u(nums.y, 32)}
        else:
            raw = self.public.public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
            jwk = {'kty': 'OKP', 'crv': 'Ed25519', 'x': b64u(raw)}
        if kid:
            jwk['kid'] = kid
        jwk.update({'use': 'sig', 'alg': self.alg})
        jwk.update(extra)
        return jwk

    def public_pem(self):
        return self.public.public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, alg, data):
        """Sign data as alg would: RS256/384/512, PS256/384/512, ES256 (raw
        r || s), 'ES256-DER' (the DER form JWS forbids), EdDSA. An RSA key
        signs RS/PS only, and so on; anything else raises ValueError."""
        if self.kind == 'RSA' and alg[:2] in ('RS', 'PS') and alg[2:] in _HASHES:
            h = _HASHES[alg[2:]]()
            pad = (padding.PKCS1v15() if alg.startswith('RS') else
                   padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size))
            return self.private.sign(data, pad, h)
        if self.kind == 'EC' and alg in ('ES256', 'ES256-DER'):
            der = self.private.sign(data, ec.ECDSA(hashes.SHA256()))
            if alg == 'ES256-DER':
                return der
            r, s = utils.decode_dss_signature(der)
            return r.to_bytes(32, 'big') + s.to_bytes(32, 'big')
        if self.kind == 'Ed25519' and alg == 'EdDSA':
            return self.private.sign(data)
        raise ValueError('a %s key cannot sign %s' % (self.kind, alg))


def hmac_sign(alg, secret, data):
    """HS256/384/512 with secret (bytes): the key-confusion attack signs
    with the issuer's public key as the HMAC secret."""
    h = {'HS256': hashlib.sha256, 'HS384': hashlib.sha384, 'HS512': hashlib.sha512}[alg]
    return hmac.new(secret, data, h).digest()


def jwks(keys, extra_jwks=()):
    """{"keys": [...]} of the public keys, plus literal JWK dicts."""
    return {'keys': [k.public_jwk() for k in keys] + list(extra_jwks)}


def write_jwks(path, keys, extra_jwks=()):
    with open(path, 'w') as f:
        json.dump(jwks(keys, extra_jwks), f, indent=1)
    return path


def encode(header=None, claims=None, key=None, alg=None, signature=None,
           header_bytes=None, claims_bytes=None, signer=None):
    """A JWS compact serialization "h.p.s".

    header: the header dict; default {"alg": alg or key.alg, "typ": "JWT",
    "kid": key.kid}. claims: the claims dict. header_bytes / claims_bytes:
    the raw segment contents instead (need not be JSON). signature: the raw
    signature bytes instead of signing (b'' for an empty third segment);
    signer: a function of the signing input returning the signature (e.g.
    an HMAC); otherwise key signs with alg (default header["alg"])."""
    if header_bytes is None:
        if header is None:
            header = {'alg': alg or (key.alg if key else 'none'), 'typ': 'JWT'}
            if key is not None and key.kid:
                header['kid'] = key.kid
        header_bytes = compact_json(header)
    if claims_bytes is None:
        claims_bytes = compact_json(claims if claims is not None else {})
    signing_input = (b64u(header_bytes) + '.' + b64u(claims_bytes)).encode('ascii')
    if signature is None and signer is not None:
        signature = signer(signing_input)
    if signature is None:
        if key is None:
            signature = b''
        else:
            sign_alg = alg or (header or {}).get('alg') or key.alg
            signature = key.sign(sign_alg, signing_input)
    return signing_input.decode('ascii') + '.' + b64u(signature)


def split(token):
    """The three segments of a compact token."""
    return token.split('.')


class Issuer:
    """One issuer's keys and its policy entry. The first key signs by
    default."""

    def __init__(self, iss, keys, audiences=('sandgate',), algorithms=None,
                 subject_prefix=None, groups_claim=None, subject_claim=None,
                 clock_skew_s=None):
        self.iss = iss
        self.keys = list(keys)
        self.audiences = list(audiences)
        self.algorithms = list(algorithms or sorted({k.alg for k in self.keys}))
        self.subject_prefix = subject_prefix
        self.groups_claim = groups_claim
        self.subject_claim = subject_claim
        self.clock_skew_s = clock_skew_s
        self.jwks_path = None

    def subject(self, sub):
        """The subject the gateway stamps for a token with this sub."""
        prefix = self.subject_prefix if self.subject_prefix is not None else self.iss + '#'
        return prefix + sub

    def claims(self, subject, lifetime=600, **over):
        """Valid claims for subject; over replaces members (None removes
        one), e.g. sub=None for a token without a subject."""
        now = int(time.time())
        c = {'iss': self.iss, 'sub': subject, 'aud': self.audiences[0], 'iat': now,
             'nbf': now - 5, 'exp': now + lifetime}
        for k, v in over.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return c

    def token(self, subject, key=None, header=None, alg=None, lifetime=600, **over):
        key = key or self.keys[0]
        return encode(header=header, claims=self.claims(subject, lifetime, **over), key=key,
                      alg=alg)

    def write_jwks(self, path, extra_jwks=()):
        self.jwks_path = write_jwks(path, self.keys, extra_jwks)
        return path

    def policy_entry(self):
        """This issuer under authentication.jwt_issuers (write_jwks first)."""
        if not self.jwks_path:
            raise ValueError('write_jwks() before policy_entry()')
        e = {'issuer': self.iss, 'audiences': self.audiences,
             'algorithms': self.algorithms, 'jwks_file': self.jwks_path}
        if self.subject_prefix is not None:
            e['subject_prefix'] = self.subject_prefix
        if self.groups_claim:
            e['groups_claim'] = self.groups_claim
        if self.subject_claim:
            e['subject_claim'] = self.subject_claim
        if self.clock_skew_s is not None:
            e['clock_skew_s'] = self.clock_skew_s
        return e


def sha256_hex(text):
    """The policy's form of a static token: sha256 of the token text."""
    return hashlib.sha256(text.encode()).hexdigest()
