"""Throw-away test PKIs: PKI, made with the openssl command line, and
Factory, made with the cryptography package for certificates the command
line cannot express.

PKI holds:
    ca            EC P-256 root, "sandgate test CA"
    server        signed by ca; SAN DNS:localhost, IP:127.0.0.1; serverAuth
    client        signed by ca; SAN URI:spiffe://sandgate.test/ns/platform/sa/controller
    rogue_ca      an unrelated root
    rogue_client  signed by rogue_ca, same SAN as client

Each entity has <name>.pem and <name>.key in the directory; the attribute
of the same name holds both paths.
"""
import os
import random
import shutil
import subprocess

from . import env

CLIENT_SPIFFE_ID = 'spiffe://sandgate.test/ns/platform/sa/controller'


def openssl_available():
    return shutil.which(env.OPENSSL) is not None


def cryptography_available():
    try:
        import cryptography.x509  # noqa: F401
    except ImportError:
        return False
    return True


class Entity:
    def __init__(self, directory, name):
        self.name = name
        self.cert = os.path.join(directory, name + '.pem')
        self.key = os.path.join(directory, name + '.key')

    def cert_bytes(self):
        with open(self.cert, 'rb') as f:
            return f.read()

    def key_bytes(self):
        with open(self.key, 'rb') as f:
            return f.read()


class PKI:
    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.ca = self._root('ca', 'sandgate test CA')
        self.server = self._leaf('server', self.ca, 'localhost',
                                 'subjectAltName=DNS:localhost,IP:127.0.0.1\n'
                                 'extendedKeyUsage=serverAuth\n')
        self.client = self._leaf('client', self.ca, 'controller',
                                 'subjectAltName=URI:%s\n'
                                 'extendedKeyUsage=clientAuth\n' % CLIENT_SPIFFE_ID)
        self.rogue_ca = self._root('rogue_ca', 'rogue CA')
        self.rogue_client = self._leaf('rogue_client', self.rogue_ca, 'controller',
                                       'subjectAltName=URI:%s\n'
                                       'extendedKeyUsage=clientAuth\n' % CLIENT_SPIFFE_ID)

    def _run(self, *args):
        res = subprocess.run([env.OPENSSL] + list(args), cwd=self.dir,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if res.returncode != 0:
            raise RuntimeError('openssl %s failed:\n%s' % (' '.join(args),
                                                          res.stdout.decode(errors='replace')))

    def _root(self, name, cn):
        e = Entity(self.dir, name)
        self._run('req', '-x509', '-new', '-newkey', 'ec',
                  '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
                  '-keyout', e.key, '-out', e.cert, '-days', '2', '-sha256',
                  '-subj', '/O=sandgate tests/CN=' + cn,
                  '-addext', 'basicConstraints=critical,CA:TRUE',
                  '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
        return e

    def _leaf(self, name, issuer, cn, extensions):
        e = Entity(self.dir, name)
        csr = os.path.join(self.dir, name + '.csr')
        ext = os.path.join(self.dir, name + '.ext')
        with open(ext, 'w') as f:
            f.write('basicConstraints=critical,CA:FALSE\n'
                    'keyUsage=critical,digitalSignature,keyEncipherment\n' + extensions)
        self._run('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
                  '-nodes', '-keyout', e.key, '-out', csr,
                  '-subj', '/O=sandgate tests/CN=' + cn)
        self._run('x509', '-req', '-in', csr, '-CA', issuer.cert, '-CAkey', issuer.key,
                  '-set_serial', str(random.randrange(1, 2 ** 62)), '-days', '2',
                  '-sha256', '-extfile', ext, '-out', e.cert)
        return e

    # grpcio credentials -------------------------------------------------

    def channel_credentials(self, client=None, root=None):
        import grpc
        root = root or self.ca
        if client is None:
            return grpc.ssl_channel_credentials(root_certificates=root.cert_bytes())
        return grpc.ssl_channel_credentials(root_certificates=root.cert_bytes(),
                                            private_key=client.key_bytes(),
                                            certificate_chain=client.cert_bytes())


# Certificates the openssl command line cannot express -----------------------

class Factory:
    """Certificates made in Python with the cryptography package: names with
    control characters, several URI SANs, weak signatures, chains through
    intermediates. Each issue() writes <name>.pem (the certificate, then any
    chain certificates, as a client would send them) and <name>.key.

    Validity is relative to now, in seconds; keys are EC P-256 unless
    key='rsa1024' / 'rsa2048'. The default leaf is a good mTLS client
    certificate: CA:FALSE, keyUsage digitalSignature, EKU clientAuth.
    """

    def __init__(self, directory):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
        self._x509 = x509
        self._hashes = hashes
        self._ser = serialization
        self._ec = ec
        self._rsa = rsa
        self._eku_oids = {'clientAuth': ExtendedKeyUsageOID.CLIENT_AUTH,
                          'serverAuth': ExtendedKeyUsageOID.SERVER_AUTH,
                          'codeSigning': ExtendedKeyUsageOID.CODE_SIGNING,
                          'emailProtection': ExtendedKeyUsageOID.EMAIL_PROTECTION}
        self._cn_oid = NameOID.COMMON_NAME
        self._o_oid = NameOID.ORGANIZATION_NAME
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self._certs = {}  # entity name -> (certificate, key)

    def _key(self, kind):
        if kind == 'ec':
            return self._ec.generate_private_key(self._ec.SECP256R1())
        if kind.startswith('rsa'):
            return self._rsa.generate_private_key(public_exponent=65537,
                                                  key_size=int(kind[3:]))
        raise ValueError('unknown key kind %r' % kind)

    def _name(self, cn, cn2=None, cn_raw=False):
        x509 = self._x509
        attrs = [x509.NameAttribute(self._o_oid, 'sandgate tests')]
        for v in (cn, cn2):
            if v is not None:
                # _validate=False lets through what a CA should never sign
                # (over-long names), which is the point of these certificates.
                attrs.append(x509.NameAttribute(self._cn_oid, v, _validate=not cn_raw))
        return x509.Name(attrs)

    def root(self, name, cn, key='ec', not_before=-3600, not_after=2 * 86400):
        """A self-signed CA (CA:TRUE, keyCertSign)."""
        return self.issue(name, None, cn=cn, ca=True, key=key, eku=None,
                          ku=('key_cert_sign', 'crl_sign'),
                          not_before=not_before, not_after=not_after)

    def issue(self, name, issuer, cn=None, uris=(), dns=(), emails=(), ips=(),
              eku=('clientAuth',),
              ku=('digital_signature',), ca=False, key='ec', hash='sha256',
              not_before=-3600, not_after=2 * 86400, critical_unknown=False,
              chain=(), cn2=None, cn_raw=False):
        """A certificate signed by issuer (an Entity from this factory; None:
        self-signed). eku/ku None: no such extension. chain: entities whose
        certificates follow the leaf in <name>.pem. cn2: a second CN.
        cn_raw: skip the library's CN length check. critical_unknown: add
        a critical extension no verifier knows."""
        import datetime
        import ipaddress
        x509 = self._x509
        priv = self._key(key)
        subject = self._name(cn, cn2, cn_raw)
        if issuer is None:
            issuer_cert, issuer_key = None, priv
            issuer_subject = subject
        else:
            issuer_cert, issuer_key = self._certs[issuer.name]
            issuer_subject = issuer_cert.subject
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        b = (x509.CertificateBuilder()
             .subject_name(subject)
             .issuer_name(issuer_subject)
             .public_key(priv.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now + datetime.timedelta(seconds=not_before))
             .not_valid_after(now + datetime.timedelta(seconds=not_after))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ku is not None:
            flags = dict.fromkeys(('digital_signature', 'content_commitment',
                                   'key_encipherment', 'data_encipherment', 'key_agreement',
                                   'key_cert_sign', 'crl_sign', 'encipher_only',
                                   'decipher_only'), False)
            for k in ku:
                flags[k] = True
            b = b.add_extension(x509.KeyUsage(**flags), critical=True)
        if eku is not None:
            b = b.add_extension(x509.ExtendedKeyUsage([self._eku_oids[e] for e in eku]),
                                critical=False)
        sans = ([x509.UniformResourceIdentifier(u) for u in uris]
                + [x509.DNSName(d) for d in dns] + [x509.RFC822Name(e) for e in emails]
                + [x509.IPAddress(ipaddress.ip_address(a)) for a in ips])
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if ca:
            b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(priv.public_key()),
                                critical=False)
        if critical_unknown:
            b = b.add_extension(x509.UnrecognizedExtension(
                x509.ObjectIdentifier('1.3.6.1.4.1.55555.1.1'), b'\x05\x00'), critical=True)
        algo = {'sha256': self._hashes.SHA256(), 'sha1': self._hashes.SHA1(),
                'md5': self._hashes.MD5()}[hash]
        cert = b.sign(issuer_key, algo)
        self._certs[name] = (cert, priv)
        e = Entity(self.dir, name)
        pem = cert.public_bytes(self._ser.Encoding.PEM)
        for c in chain:
            pem += self._certs[c.name][0].public_bytes(self._ser.Encoding.PEM)
        with open(e.cert, 'wb') as f:
            f.write(pem)
        with open(e.key, 'wb') as f:
            f.write(priv.private_bytes(self._ser.Encoding.PEM,
                                       self._ser.PrivateFormat.PKCS8,
                                       self._ser.NoEncryption()))
        os.chmod(e.key, 0o600)
        return e

    def server(self, name, issuer):
        """A server certificate for localhost / 127.0.0.1."""
        return self.issue(name, issuer, cn='localhost', dns=['localhost'], ips=['127.0.0.1'],
                          eku=('serverAuth',), ku=('digital_signature', 'key_encipherment'))

    @staticmethod
    def channel_credentials(root, client=None):
        import grpc
        if client is None:
            return grpc.ssl_channel_credentials(root_certificates=root.cert_bytes())
        return grpc.ssl_channel_credentials(root_certificates=root.cert_bytes(),
                                            private_key=client.key_bytes(),
                                            certificate_chain=client.cert_bytes())


def tls_handshake_ok(address, root, client, timeout=10):
    """True if a bare TLS 1.2 handshake to address (host:port) presenting
    client's certificate completes, False if it is refused.

    This is OpenSSL (Python's ssl module) at security level 0, so that the
    client side loads and sends any certificate and the server alone
    decides; TLS 1.2, so that a refused client certificate fails the
    handshake itself rather than the first read (TLS 1.3)."""
    import socket
    import ssl
    host, port = address.rsplit(':', 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_ciphers('DEFAULT:@SECLEVEL=0')
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(root.cert)
    ctx.load_cert_chain(client.cert, client.key)
    ctx.set_alpn_protocols(['h2'])
    with socket.create_connection((host, int(port)), timeout=timeout) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname='localhost'):
                return True
        except ssl.SSLError:
            return False
