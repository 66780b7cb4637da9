"""A throw-away test PKI made with the openssl command line.

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
