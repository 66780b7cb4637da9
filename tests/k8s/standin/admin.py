"""The admin API: plain HTTP on loopback, a separate port, JSON in and out.
It steers the stand-in (faults, configuration, seeding, compaction) and
exposes the request log. See tests/k8s/README.md for every endpoint.
"""
import http.server
import json
import urllib.parse

from . import errors, tokenreview
from .faults import FaultError


class AdminHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'standin-admin'
    sys_version = ''

    def log_message(self, fmt, *args):
        if self.server.app.verbose:
            super().log_message(fmt, *args)

    def _reply(self, code, body):
        data = json.dumps(body, separators=(',', ':')).encode()
        self.send_response(code)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        n = int(self.headers.get('Content-Length') or 0)
        raw = self.rfile.read(n) if n else b''
        if not raw.strip():
            return {}
        return json.loads(raw)

    def do_GET(self):
        self._route('GET')

    def do_POST(self):
        self._route('POST')

    def do_DELETE(self):
        self._route('DELETE')

    def _route(self, method):
        url = urllib.parse.urlsplit(self.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        parts = [p for p in url.path.split('/') if p]
        try:
            body = self._body() if method == 'POST' else {}
            code, out = self._handle(method, parts, q, body)
        except (ValueError, FaultError, KeyError, TypeError) as e:
            code, out = 400, {'error': str(e)}
        except errors.ApiError as e:
            code, out = e.code, e.status()
        self._reply(code, out)

    def _handle(self, method, parts, q, body):
        app = self.server.app
        head = parts[0] if parts else ''
        if head == 'healthz' and method == 'GET':
            return 200, {'ok': True}
        if head == 'requests':
            if method == 'GET':
                entries, last = app.requests.since(int(q.get('since', 0)))
                return 200, {'requests': entries, 'last': last}
            if method == 'DELETE':
                app.requests.clear()
                return 200, {}
        if head == 'faults':
            if method == 'GET':
                return 200, {'faults': app.faults.list()}
            if method == 'POST':
                rules = body['rules'] if 'rules' in body else [body]
                return 200, {'ids': [app.faults.add(r) for r in rules]}
            if method == 'DELETE':
                if len(parts) > 1:
                    return (200 if app.faults.remove(int(parts[1])) else 404), {}
                app.faults.clear()
                return 200, {}
        if head == 'config':
            if method == 'POST':
                return 200, app.set_config(body)
            if method == 'GET':
                return 200, dict(app.config)
        if head == 'reset' and method == 'POST':
            app.reset()
            return 200, {}
        if head == 'objects':
            if method == 'POST':
                objs = body['objects'] if 'objects' in body else [body]
                return 200, {'objects': [app.seed(o) for o in objs]}
            if method == 'GET':
                return 200, {'objects': app.dump(q.get('resource'), q.get('namespace'))}
        if head == 'compact' and method == 'POST':
            return 200, {'compacted': app.store.compact(body.get('resourceVersion'))}
        if head == 'watches':
            if method == 'GET':
                return 200, {'count': len(app.store.watchers)}
            if method == 'DELETE' or (method == 'POST' and parts[1:2] == ['close']):
                return 200, {'closed': app.store.close_watches()}
        if head == 'tokens' and method == 'POST':
            app.set_token(body)
            return 200, {}
        if head == 'timeline':
            if method == 'GET':
                return 200, {'sandboxes': app.timeline.list(q.get('namespace'))}
            if method == 'DELETE':
                app.timeline.clear()
                return 200, {}
        if head == 'tokenreviews':
            return tokenreview.of(app).admin(method, parts, body)
        if head == 'state' and method == 'GET':
            with app.store.lock:
                return 200, {'resourceVersion': app.store.rv, 'compacted': app.store.compacted,
                             'history': len(app.store.history),
                             'watches': len(app.store.watchers)}
        return 404, {'error': 'no such admin endpoint: %s %s' % (method, '/' + '/'.join(parts))}
