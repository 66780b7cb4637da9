"""Assembly: TLS material, the two listeners, the state files
(standin.json and kubeconfig) and the App object that ties the store, the
simulated cluster, faults and the request log together."""
import json
import os
import secrets
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import uuid
import http.server

import yaml

from . import errors
from .admin import AdminHandler
from .controllers import DEFAULT_CONFIG, Cluster
from .faults import Faults, RequestLog
from .httpapi import KubeHandler
from .resources import Registry
from .store import Store
from .timeline import Timeline


def make_tls(state_dir, openssl='openssl'):
    """A throw-away CA, a server certificate for localhost, 127.0.0.1 and
    ::1, and a client certificate of the same CA for the user
    kubernetes-admin (group system:masters), made with the openssl command
    line. Returns (ca, cert, key, client_cert, client_key)."""
    ca_key = os.path.join(state_dir, 'ca.key')
    ca = os.path.join(state_dir, 'ca.crt')
    key = os.path.join(state_dir, 'server.key')
    csr = os.path.join(state_dir, 'server.csr')
    cert = os.path.join(state_dir, 'server.crt')
    ext = os.path.join(state_dir, 'server.ext')

    def run(*args):
        r = subprocess.run([openssl] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        if r.returncode:
            raise RuntimeError('openssl %s: %s' % (args[0], r.stdout.decode(errors='replace')))
    run('req', '-x509', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
        '-nodes', '-keyout', ca_key, '-out', ca, '-days', '7', '-sha256',
        '-subj', '/CN=standin-kube-ca', '-addext', 'basicConstraints=critical,CA:TRUE',
        '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
    with open(ext, 'w') as f:
        f.write('basicConstraints=critical,CA:FALSE\n'
                'keyUsage=critical,digitalSignature,keyEncipherment\n'
                'extendedKeyUsage=serverAuth\n'
                'subjectAltName=DNS:localhost,DNS:kubernetes.default.svc,IP:127.0.0.1,IP:::1\n')
    run('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
        '-keyout', key, '-out', csr, '-subj', '/CN=kube-apiserver')
    run('x509', '-req', '-in', csr, '-CA', ca, '-CAkey', ca_key, '-CAcreateserial',
        '-out', cert, '-days', '7', '-sha256', '-extfile', ext)
    client_key = os.path.join(state_dir, 'client.key')
    client_csr = os.path.join(state_dir, 'client.csr')
    client_cert = os.path.join(state_dir, 'client.crt')
    client_ext = os.path.join(state_dir, 'client.ext')
    with open(client_ext, 'w') as f:
        f.write('basicConstraints=critical,CA:FALSE\n'
                'keyUsage=critical,digitalSignature\n'
                'extendedKeyUsage=clientAuth\n')
    run('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
        '-keyout', client_key, '-out', client_csr, '-subj',
        '/O=system:masters/CN=kubernetes-admin')
    run('x509', '-req', '-in', client_csr, '-CA', ca, '-CAkey', ca_key, '-CAcreateserial',
        '-out', client_cert, '-days', '7', '-sha256', '-extfile', client_ext)
    for p in (ca_key, key, client_key):
        os.chmod(p, 0o600)
    return ca, cert, key, client_cert, client_key


class TLSServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, handler, ctx, app):
        self.ctx = ctx
        self.app = app
        super().__init__(addr, handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        # As Go's net package does for the real apiserver: without it, a
        # small write (a watch event, a body after its headers) waits for
        # the peer's delayed ACK, up to 40 ms on Linux.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The handshake runs in the connection's thread (KubeHandler.handle),
        # so one slow client cannot hold up accept().
        return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr


class PlainServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, app):
        self.app = app
        super().__init__(addr, handler)


class App:
    def __init__(self, state_dir, crd_dir, token=None, namespaces=('default',),
                 config=None, verbose=False, host='127.0.0.1'):
        self.state_dir = os.path.abspath(state_dir)
        self.verbose = verbose
        self.host = host
        self.config = dict(DEFAULT_CONFIG)
        self.config.update(config or {})
        self.registry = Registry(crd_dir)
        self.store = Store(self.registry, self.config['history_size'])
        self.cluster = Cluster(self.store, self.registry, self.config)
        self.timeline = Timeline(self.store)
        self.faults = Faults()
        self.requests = RequestLog()
        self.token = token or secrets.token_urlsafe(32)
        self.tokens_lock = threading.Lock()
        self.users = {self.token: {'user': 'standin-admin', 'rules': None}}
        self.initial_namespaces = tuple(namespaces)
        self.flowschema_uid = str(uuid.uuid4())
        self.prioritylevel_uid = str(uuid.uuid4())
        self.address = ''
        self._seed_namespaces()

    def _seed_namespaces(self):
        nsres = self.registry.by_kind[('', 'Namespace')]
        for n in self.initial_namespaces:
            if self.store.peek(nsres, '', n) is None:
                self.store.create(nsres, '', {'apiVersion': 'v1', 'kind': 'Namespace',
                                              'metadata': {'name': n}})

    # --- used by the handlers ----------------------------------------------

    def users_by_token(self):
        with self.tokens_lock:
            return dict(self.users)

    def set_token(self, body):
        tok = body['token']
        with self.tokens_lock:
            if body.get('remove'):
                self.users.pop(tok, None)
            else:
                self.users[tok] = {'user': body.get('user', 'standin-user'),
                                   'rules': body.get('rules')}

    def version_info(self):
        return {'major': '1', 'minor': '34', 'gitVersion': 'v1.34.0-standin',
                'gitCommit': '0' * 40, 'gitTreeState': 'clean',
                'buildDate': '2026-01-01T00:00:00Z', 'goVersion': 'go1.24.0',
                'compiler': 'gc', 'platform': 'linux/amd64'}

    def group_info(self, group):
        versions = sorted({r.version for r in self.registry.all if r.group == group})
        gvs = [{'groupVersion': '%s/%s' % (group, v), 'version': v} for v in versions]
        return {'name': group, 'versions': gvs, 'preferredVersion': gvs[0]}

    def bookmark_object(self, res, rv, initial_end=False):
        md = {'resourceVersion': str(rv)}
        if initial_end:
            md['annotations'] = {'k8s.io/initial-events-end': 'true'}
        return {'apiVersion': res.api_version, 'kind': res.kind, 'metadata': md}

    def set_config(self, changes):
        unknown = set(changes) - set(DEFAULT_CONFIG)
        if unknown:
            raise ValueError('unknown config keys: %s' % sorted(unknown))
        self.config.update(changes)
        if 'history_size' in changes:
            self.store.set_history_size(changes['history_size'])
        # Pods waiting on a changed delay or failure re-evaluate now.
        for o in self.store.items(self.registry.by_kind[('', 'Pod')]):
            self.cluster.enqueue(('pod', o['metadata']['namespace'], o['metadata']['name']))
        return dict(self.config)

    def seed(self, obj):
        res = self.registry.by_api_version_kind(obj.get('apiVersion', ''), obj.get('kind', ''))
        if res is None:
            raise ValueError('no such kind: %s %s' % (obj.get('apiVersion'), obj.get('kind')))
        ns = (obj.get('metadata') or {}).get('namespace', '') if res.namespaced else ''
        if res.namespaced and not ns:
            raise ValueError('namespace required for %s' % res.kind)
        created, _ = self.store.create(res, ns, obj, keep_status=True)
        return created

    def dump(self, resource=None, namespace=None):
        out = []
        for res in self.registry.all:
            if resource and res.plural != resource:
                continue
            out += self.store.items(res, namespace if res.namespaced else None)
        return out

    def reset(self):
        self.faults.clear()
        self.requests.clear()
        self.timeline.clear()
        self.store.reset()
        self.config.clear()
        self.config.update(DEFAULT_CONFIG)
        self.store.set_history_size(self.config['history_size'])
        with self.tokens_lock:
            self.users = {self.token: {'user': 'standin-admin', 'rules': None}}
        self._seed_namespaces()

    # --- lifecycle ----------------------------------------------------------

    def start(self, port=0, admin_port=0):
        # A thread per connection, all behind the GIL: a thread that
        # released it for a syscall while holding the store lock waits up
        # to the switch interval (default 5 ms) to get it back, and every
        # writer waits behind it. A short interval keeps that convoy short.
        sys.setswitchinterval(0.0005)
        os.makedirs(self.state_dir, exist_ok=True)
        ca, cert, key, client_cert, client_key = make_tls(self.state_dir)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        # --client-ca-file: a certificate is asked for, not required; one
        # that verifies authenticates its CN as the user, O as groups.
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(ca)
        ctx.set_alpn_protocols(['http/1.1'])
        family = socket.AF_INET6 if ':' in self.host else socket.AF_INET
        TLSServer.address_family = family
        self.kube = TLSServer((self.host, port), KubeHandler, ctx, self)
        self.admin = PlainServer(('127.0.0.1', admin_port), AdminHandler, self)
        kport = self.kube.server_address[1]
        host = '[%s]' % self.host if ':' in self.host else self.host
        self.address = '%s:%d' % (host, kport)
        self.url = 'https://%s' % self.address
        self.admin_url = 'http://127.0.0.1:%d' % self.admin.server_address[1]
        self.ca_file = ca
        self.client_cert_file, self.client_key_file = client_cert, client_key
        self.cluster.start()
        for srv in (self.kube, self.admin):
            threading.Thread(target=srv.serve_forever, daemon=True).start()
        self._write_state()

    def _write_state(self):
        kubeconfig = os.path.join(self.state_dir, 'kubeconfig')
        kc = {'apiVersion': 'v1', 'kind': 'Config', 'preferences': {},
              'clusters': [{'name': 'standin', 'cluster': {
                  'server': self.url, 'certificate-authority': self.ca_file}}],
              'users': [{'name': 'standin', 'user': {'token': self.token}}],
              'contexts': [{'name': 'standin', 'context': {
                  'cluster': 'standin', 'user': 'standin',
                  'namespace': (self.initial_namespaces or ('default',))[0]}}],
              'current-context': 'standin'}
        _write_atomic(kubeconfig, yaml.safe_dump(kc, default_flow_style=False), 0o600)
        state = {'url': self.url, 'ca_file': self.ca_file, 'token': self.token,
                 'client_cert_file': self.client_cert_file,
                 'client_key_file': self.client_key_file,
                 'admin_url': self.admin_url, 'kubeconfig': kubeconfig, 'pid': os.getpid()}
        _write_atomic(os.path.join(self.state_dir, 'standin.json'), json.dumps(state, indent=2),
                      0o600)

    def stop(self):
        self.cluster.stop()
        self.store.close_watches()
        for srv in (self.kube, self.admin):
            srv.shutdown()
            srv.server_close()


def _write_atomic(path, text, mode):
    tmp = path + '.tmp'
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


__all__ = ['App', 'errors']
