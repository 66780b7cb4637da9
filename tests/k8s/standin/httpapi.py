"""The Kubernetes API over HTTPS: routing (request info), authentication,
authorization, the verbs, watch streaming, fault injection and request
recording. One handler thread per connection (HTTP/1.1 keep-alive); a
watch holds its connection's thread and nothing else.
"""
import http.server
import json
import random
import socket
import time
import urllib.parse
import uuid

import yaml

from . import errors
from .errors import ApiError, PlainNotFound
from .selectors import parse_field_selector, parse_label_selector
from . import tokenreview

VERBS_BY_METHOD = {'POST': 'create', 'PUT': 'update', 'PATCH': 'patch'}
JSON = 'application/json'
BODY_TYPES = ('application/json', 'application/yaml')
MAX_BODY = 3 * 1024 * 1024
RECORDED_BODY_LIMIT = 64 * 1024


class RequestInfo:
    """What k8s.io/apiserver's RequestInfoFactory derives from a path."""

    def __init__(self):
        self.api_prefix = ''      # 'api' or 'apis'
        self.group = ''
        self.version = ''
        self.namespace = ''
        self.resource = ''
        self.name = ''
        self.subresource = ''
        self.verb = ''
        self.is_resource = False
        self.parts = []


def parse_path(method, path, query):
    info = RequestInfo()
    parts = [urllib.parse.unquote(p) for p in path.strip('/').split('/')] if path.strip('/') \
        else []
    info.parts = parts
    if not parts or parts[0] not in ('api', 'apis'):
        return info
    info.api_prefix = parts[0]
    rest = parts[1:]
    if info.api_prefix == 'apis':
        if not rest:
            return info
        info.group, rest = rest[0], rest[1:]
    if not rest:
        return info
    info.version, rest = rest[0], rest[1:]
    if not rest:
        return info
    info.is_resource = True
    if rest[0] == 'namespaces' and len(rest) > 1:
        info.namespace = rest[1]
        # namespaces/<n>/status and /finalize are the namespace's own
        # subresources; anything else is a resource inside namespace n.
        if len(rest) > 2 and rest[2] not in ('status', 'finalize'):
            rest = rest[2:]
    info.resource = rest[0]
    info.name = rest[1] if len(rest) > 1 else ''
    info.subresource = '/'.join(rest[2:])
    watch = query.get('watch', [''])[-1] in ('1', 'true')
    if method == 'GET':
        if info.name and not watch:
            info.verb = 'get'
        elif watch:
            info.verb = 'watch'
        else:
            info.verb = 'list'
    elif method == 'DELETE':
        info.verb = 'delete' if info.name else 'deletecollection'
    else:
        info.verb = VERBS_BY_METHOD.get(method, method.lower())
    return info


def _rule_allows(rule, verb, resource, group, namespace):
    def has(key, value):
        vals = rule.get(key)
        return vals is None or '*' in vals or value in vals
    return has('verbs', verb) and has('resources', resource) and has('apiGroups', group) and \
        (rule.get('namespaces') is None or namespace in rule['namespaces'])


class KubeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'standin-kube-apiserver'
    sys_version = ''

    # --- plumbing -----------------------------------------------------------

    def handle(self):
        try:
            self.request.do_handshake()
        except (OSError, ValueError):
            return
        try:
            super().handle()
        except (ConnectionError, OSError):
            pass

    def log_message(self, fmt, *args):
        if self.server.app.verbose:
            super().log_message(fmt, *args)

    def do_GET(self):
        self._serve('GET')

    def do_POST(self):
        self._serve('POST')

    def do_PUT(self):
        self._serve('PUT')

    def do_PATCH(self):
        self._serve('PATCH')

    def do_DELETE(self):
        self._serve('DELETE')

    def _read_body(self):
        n = int(self.headers.get('Content-Length') or 0)
        if n > MAX_BODY:
            raise ApiError(413, 'RequestEntityTooLarge', 'Request entity too large: limit is '
                           '3145728')
        if n:
            return self.rfile.read(n)
        if self.headers.get('Transfer-Encoding', '').lower() == 'chunked':
            data = b''
            while True:
                size = int(self.rfile.readline().strip().split(b';')[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                data += self.rfile.read(size)
                self.rfile.readline()
            return data
        return b''

    def _common_headers(self):
        self.send_header('Audit-Id', str(uuid.uuid4()))
        self.send_header('Cache-Control', 'no-cache, private')
        self.send_header('X-Kubernetes-Pf-Flowschema-Uid', self.server.app.flowschema_uid)
        self.send_header('X-Kubernetes-Pf-Prioritylevel-Uid', self.server.app.prioritylevel_uid)

    def _send(self, code, body, headers=None, content_type=JSON, warnings=()):
        if isinstance(body, (dict, list)):
            data = json.dumps(body, separators=(',', ':')).encode()
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body or b''
        self.send_response(code)
        self._common_headers()
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(data)))
        for w in warnings:
            self.send_header('Warning', '299 - %s' % json.dumps(w))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(data)
        self._status = code

    def _send_error(self, e):
        self._send(e.code, e.status(), e.headers)

    def _drop(self):
        """End the connection without a response (or mid-stream)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._status = 0

    # --- request flow -------------------------------------------------------

    def _serve(self, method):
        app = self.server.app
        started = time.monotonic()
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        self._status = 0
        info = parse_path(method, url.path, query)
        try:
            raw = self._read_body()
        except ApiError as e:
            self._send_error(e)
            return
        record = {
            'method': method, 'path': url.path, 'query': url.query,
            'params': {k: v[-1] for k, v in query.items()},
            'verb': info.verb if info.is_resource else method.lower(),
            'resource': info.resource, 'subresource': info.subresource,
            'namespace': info.namespace, 'name': info.name,
            'watch': info.verb == 'watch', 'content_type': self.headers.get('Content-Type'),
            'body': _recorded_body(raw), 'status': None, 'fault': None, 'user': None,
        }
        entry = app.requests.add(record)
        self._entry = entry
        try:
            self._dispatch(method, url, query, info, raw, entry)
        except ApiError as e:
            self._send_error(e)
        except PlainNotFound:
            self._send(404, '404 page not found\n', content_type='text/plain; charset=utf-8')
        except (ConnectionError, BrokenPipeError):
            self._status = 0
            self.close_connection = True
        app.requests.update(entry, status=self._status or None,
                            duration_ms=round((time.monotonic() - started) * 1000, 3))

    def _authenticate(self):
        """The user of a verified client certificate (CN; O as groups),
        else of the bearer token, as the apiserver's union authenticator
        tries x509 first. Certificate users have every permission here
        (RBAC is not modelled; token users may carry rules)."""
        cert = self.request.getpeercert() if hasattr(self.request, 'getpeercert') else None
        if cert:
            subject = dict(kv for rdn in cert.get('subject', ()) for kv in rdn)
            if subject.get('commonName'):
                return {'user': subject['commonName'], 'rules': None,
                        'groups': [v for rdn in cert['subject'] for k, v in rdn
                                   if k == 'organizationName']}
        auth = self.headers.get('Authorization', '')
        scheme, _, token = auth.partition(' ')
        if scheme.lower() != 'bearer' or not token.strip():
            return None
        return self.server.app.users_by_token().get(token.strip())

    def _authorize(self, user, info, res):
        rules = user.get('rules')
        if rules is None:
            return
        resource = info.resource + ('/' + info.subresource if info.subresource else '')
        group = res.group if res else info.group
        verb = info.verb
        for r in rules:
            if _rule_allows(r, verb, resource, group, info.namespace if res and res.namespaced
                            else ''):
                return
        where = ('in the namespace "%s"' % info.namespace) if info.namespace and \
            (res is None or res.namespaced) else 'at the cluster scope'
        why = 'User "%s" cannot %s resource "%s" in API group "%s" %s' % (
            user['user'], verb, resource, group, where)
        gr = res.gr if res else errors.GroupResource(info.resource, info.group)
        raise errors.forbidden(gr, info.name, why)

    def _dispatch(self, method, url, query, info, raw, entry):
        app = self.server.app
        user = self._authenticate()
        if user is None:
            raise errors.unauthorized()
        entry['user'] = user['user']
        res = None
        if info.is_resource and not tokenreview.handles(info):
            res = app.registry.lookup(info.group, info.version, info.resource)
            if res is None:
                raise PlainNotFound()
        fault = app.faults.pick(entry)
        if fault:
            entry['fault'] = fault['id']
            if fault.get('delay_ms'):
                time.sleep(fault['delay_ms'] / 1000.0)
            if not fault.get('after') and self._apply_fault(fault, info, res, query, raw):
                return
        self._authorize(user, info, res)
        accept = self.headers.get('Accept', '')
        if accept and not _accepts_json(accept):
            raise errors.not_acceptable(['application/json', 'application/yaml'])
        if not info.is_resource:
            self._discovery(method, url.path, info)
            return
        if fault and fault.get('after'):
            self._fault_after = fault
        else:
            self._fault_after = None
        if tokenreview.handles(info):
            self._respond(*tokenreview.of(app).create(method, raw, entry))
            return
        self._resource(method, query, info, res, raw, fault)

    def _apply_fault(self, fault, info, res, query, raw):
        """Answer the request with the fault; False when the fault only
        changes how the request is served (delay, watch drop)."""
        if fault.get('close_connection'):
            self._drop()
            return True
        if fault.get('send_410'):
            if info.verb == 'watch':
                self._watch_410(res, query)
            elif query.get('continue', [''])[-1]:
                raise errors.expired('The provided continue parameter is too old to display a '
                                     'consistent list result. You can start a new list without '
                                     'the continue parameter, or use the continue token in this '
                                     'response to retrieve the remainder of the results. '
                                     'Continuing with the provided token results in an '
                                     'inconsistent list - objects that were created, modified, '
                                     'or deleted between the time the first chunk was returned '
                                     'and now may show up in the list.',
                                     query['continue'][-1])
            else:
                raise errors.expired('The resourceVersion for the provided %s is too old.'
                                     % ('list' if info.verb == 'list' else 'request'))
            return True
        if fault.get('status'):
            raise fault_error(fault, info, res, raw)
        return False

    def _watch_410(self, res, query):
        rv = query.get('resourceVersion', ['0'])[-1] or '0'
        status = errors.expired('too old resource version: %s (%d)' % (
            rv, self.server.app.store.rv)).status()
        self._start_stream()
        self._chunk({'type': 'ERROR', 'object': status})
        self._end_stream()

    # --- discovery ----------------------------------------------------------

    def _discovery(self, method, path, info):
        app = self.server.app
        if method != 'GET':
            raise errors.method_not_allowed()
        p = path.rstrip('/') or '/'
        if p in ('/healthz', '/livez', '/readyz'):
            self._send(200, 'ok', content_type='text/plain; charset=utf-8')
            return
        if p == '/version':
            self._send(200, app.version_info())
            return
        if p == '/api':
            self._send(200, {'kind': 'APIVersions', 'versions': ['v1'],
                             'serverAddressByClientCIDRs': [{'clientCIDR': '0.0.0.0/0',
                                                             'serverAddress': app.address}]})
            return
        if p == '/apis':
            self._send(200, {'kind': 'APIGroupList', 'apiVersion': 'v1',
                             'groups': [app.group_info(g) for g in app.registry.groups()]})
            return
        if info.api_prefix == 'apis' and info.group and not info.version:
            if info.group in app.registry.groups():
                self._send(200, dict(app.group_info(info.group), kind='APIGroup',
                                     apiVersion='v1'))
                return
            raise PlainNotFound()
        if info.version:
            gv = [r for r in app.registry.all if r.group == info.group and
                  r.version == info.version]
            if gv and (info.api_prefix == 'apis') == bool(info.group):
                resources = []
                for r in gv:
                    resources += r.discovery()
                self._send(200, {'kind': 'APIResourceList', 'apiVersion': 'v1',
                                 'groupVersion': gv[0].api_version, 'resources': resources})
                return
        raise PlainNotFound()

    # --- resources ----------------------------------------------------------

    def _decode(self, raw):
        ctype = (self.headers.get('Content-Type') or JSON).split(';')[0].strip().lower()
        if ctype not in BODY_TYPES:
            raise errors.unsupported_media_type(list(BODY_TYPES))
        return _decode_body(raw, ctype)

    def _resource(self, method, query, info, res, raw, fault):
        app = self.server.app
        store = app.store
        q = {k: v[-1] for k, v in query.items()}
        ns = info.namespace if res.namespaced else ''
        if res.kind == 'Namespace':
            ns = ''
        if info.subresource and info.subresource not in res.subresources:
            raise errors.not_found(res.gr, info.name)
        if info.subresource == 'scale':
            self._scale(method, q, info, res, raw)
            return
        fv = q.get('fieldValidation', 'Warn') or 'Warn'
        if fv not in ('Ignore', 'Warn', 'Strict'):
            raise errors.bad_request('fieldValidation parameter unsupported: %s' % fv)
        dry = _dry_run(q)
        name = info.name
        if info.verb == 'get':
            self._respond(200, store.get(res, ns, name))
        elif info.verb == 'list':
            self._list(q, res, info)
        elif info.verb == 'watch':
            self._watch(q, res, info, fault)
        elif info.verb == 'create':
            if name:
                raise errors.method_not_allowed()
            if not res.namespaced or info.namespace or res.kind == 'Namespace':
                obj, warnings = store.create(res, ns, self._decode(raw), fv, dry)
                self._respond(201, obj, warnings)
            else:
                raise errors.method_not_allowed()
        elif info.verb == 'update':
            if not name:
                raise errors.method_not_allowed()
            obj, warnings = store.update(res, ns, name, self._decode(raw), info.subresource or None,
                                         fv, dry)
            self._respond(200, obj, warnings)
        elif info.verb == 'patch':
            if not name:
                raise errors.method_not_allowed()
            ctype = (self.headers.get('Content-Type') or '').split(';')[0].strip().lower()
            if ctype not in res.patch_types:
                raise errors.unsupported_media_type(list(res.patch_types))
            body = _decode_body(raw, 'application/yaml' if ctype.endswith('yaml') else JSON)
            obj, warnings, created = store.patch(res, ns, name, ctype, body,
                                                 info.subresource or None, fv, dry,
                                                 q.get('fieldManager'))
            self._respond(201 if created else 200, obj, warnings)
        elif info.verb == 'delete':
            if info.subresource:
                raise errors.method_not_allowed()
            opts = self._delete_options(q, raw)
            code, body = store.delete(res, ns, name, opts)
            self._respond(code, body)
        elif info.verb == 'deletecollection':
            self._delete_collection(q, res, info, raw)
        else:
            raise errors.method_not_allowed()

    def _respond(self, code, body, warnings=()):
        fault = getattr(self, '_fault_after', None)
        if fault:
            # The request took effect; the client sees a failure.
            if fault.get('close_connection'):
                self._drop()
                return
            if fault.get('status'):
                raise fault_error(fault, None, None, b'')
        self._send(code, body, warnings=warnings)

    def _delete_options(self, q, raw):
        opts = {}
        if raw.strip():
            body = _decode_body(raw, JSON)
            if not isinstance(body, dict):
                raise errors.bad_request('DeleteOptions must be an object')
            opts.update(body)
        if 'propagationPolicy' in q:
            opts['propagationPolicy'] = q['propagationPolicy']
        if 'gracePeriodSeconds' in q:
            opts['gracePeriodSeconds'] = _int_param(q, 'gracePeriodSeconds')
        if 'orphanDependents' in q:
            opts['orphanDependents'] = q['orphanDependents'] == 'true'
        if _dry_run(q):
            opts['dryRun'] = ['All']
        if 'preconditions' in opts and not isinstance(opts['preconditions'], dict):
            raise errors.bad_request('preconditions must be an object')
        return opts

    def _selectors(self, q, res):
        try:
            ls = parse_label_selector(q.get('labelSelector', ''))
            fs = parse_field_selector(q.get('fieldSelector', ''))
        except ValueError as e:
            raise errors.bad_request(str(e))
        supported = res.field_attrs({'metadata': {}})
        for f in fs.fields():
            if f not in supported:
                raise errors.bad_request('field label not supported: %s' % f)
        return ls, fs

    def _list_params(self, q):
        rv = q.get('resourceVersion', '')
        match = q.get('resourceVersionMatch', '')
        cont = q.get('continue', '')
        if rv and rv != '0' and cont:
            raise errors.bad_request('specifying resource version is not allowed when using '
                                     'continue')
        if rv and not rv.isdigit():
            raise errors.bad_request('invalid resource version: %s' % json.dumps(rv))
        from . import field
        ferrs = []
        if match and match not in ('Exact', 'NotOlderThan'):
            ferrs.append(field.not_supported('resourceVersionMatch', match,
                                             ['Exact', 'NotOlderThan', '']))
        elif match and not rv:
            ferrs.append(field.forbidden('resourceVersionMatch', 'resourceVersionMatch is '
                                         'forbidden unless resourceVersion is provided'))
        elif match and cont:
            ferrs.append(field.forbidden('resourceVersionMatch', 'resourceVersionMatch is '
                                         'forbidden when continue is provided'))
        elif match == 'Exact' and rv == '0':
            ferrs.append(field.forbidden('resourceVersionMatch', 'resourceVersionMatch "exact" '
                                         'is forbidden for resourceVersion "0"'))
        if ferrs:
            raise errors.invalid('ListOptions.meta.k8s.io', 'meta.k8s.io', 'ListOptions', '',
                                 ferrs)
        return rv, match, cont

    def _list(self, q, res, info):
        ls, fs = self._selectors(q, res)
        rv, match, cont = self._list_params(q)
        limit = max(0, _int_param(q, 'limit') or 0)
        ns = info.namespace if res.namespaced else ''
        items, list_rv, token, remaining = self.server.app.store.list(
            res, ns, ls, fs, limit, cont, rv, match)
        md = {'resourceVersion': str(list_rv)}
        if token:
            md['continue'] = token
            if remaining is not None:
                md['remainingItemCount'] = remaining
        self._respond(200, {'apiVersion': res.api_version, 'kind': res.list_kind,
                            'metadata': md, 'items': items})

    def _delete_collection(self, q, res, info, raw):
        ls, fs = self._selectors(q, res)
        ns = info.namespace if res.namespaced else ''
        opts = self._delete_options(q, raw)
        store = self.server.app.store
        items, list_rv, _, _ = store.list(res, ns, ls, fs)
        deleted = []
        for o in items:
            md = o['metadata']
            try:
                _, body = store.delete(res, md.get('namespace', ''), md['name'], opts)
            except ApiError as e:
                if e.code == 404:
                    continue
                raise
            if body.get('kind') != 'Status':
                deleted.append(body)
            else:
                deleted.append(o)
        self._respond(200, {'apiVersion': res.api_version, 'kind': res.list_kind,
                            'metadata': {'resourceVersion': str(store.rv)}, 'items': deleted})

    # --- watch --------------------------------------------------------------

    def _start_stream(self):
        self.send_response(200)
        self._common_headers()
        self.send_header('Content-Type', JSON)
        self.send_header('Transfer-Encoding', 'chunked')
        self.end_headers()
        self.wfile.flush()
        self._status = 200

    def _chunk(self, event):
        data = json.dumps(event, separators=(',', ':')).encode() + b'\n'
        self.wfile.write(b'%x\r\n%s\r\n' % (len(data), data))
        self.wfile.flush()

    def _end_stream(self):
        self.wfile.write(b'0\r\n\r\n')
        self.wfile.flush()

    def _watch(self, q, res, info, fault):
        app = self.server.app
        store = app.store
        ls, fs = self._selectors(q, res)
        rv = q.get('resourceVersion', '')
        if rv and not rv.isdigit():
            raise errors.bad_request('invalid resource version: %s' % json.dumps(rv))
        if info.name:
            # GET <item>?watch=1 (deprecated) watches that one object.
            fs.terms.append(('metadata.name', '=', info.name))
        bookmarks = q.get('allowWatchBookmarks') in ('1', 'true')
        send_initial = q.get('sendInitialEvents')
        si = None
        if send_initial is not None:
            si = send_initial == 'true'
            if si and q.get('resourceVersionMatch') != 'NotOlderThan':
                from . import field
                raise errors.invalid('ListOptions.meta.k8s.io', 'meta.k8s.io', 'ListOptions', '',
                                     [field.forbidden('sendInitialEvents', 'sendInitialEvents '
                                                      'is forbidden for watch unless '
                                                      'resourceVersionMatch is set to '
                                                      'NotOlderThan')])
            if si and not bookmarks:
                from . import field
                raise errors.invalid('ListOptions.meta.k8s.io', 'meta.k8s.io', 'ListOptions', '',
                                     [field.forbidden('allowWatchBookmarks',
                                                      'allowWatchBookmarks must be set to true '
                                                      'when sendInitialEvents is set')])
        timeout = _int_param(q, 'timeoutSeconds')
        if timeout is None:
            timeout = random.uniform(app.config['min_request_timeout_s'],
                                     2 * app.config['min_request_timeout_s'])
        deadline = time.monotonic() + timeout
        ns = info.namespace if res.namespaced else ''
        w = store.watch(res, ns, ls, fs, rv, si)
        drop_after = fault.get('drop_watch_after_events') if fault else None
        sent = 0
        try:
            self._start_stream()
            interval = app.config['bookmark_interval_ms'] / 1000.0
            next_bookmark = time.monotonic() + interval
            if si:
                initial = w.queue.qsize()
                for _ in range(initial):
                    ev = w.queue.get()
                    if ev is None:
                        break
                    self._chunk({'type': ev[0], 'object': ev[1]})
                with store.lock:
                    brv = store.rv
                self._chunk({'type': 'BOOKMARK', 'object': app.bookmark_object(
                    res, brv, initial_end=True)})
            waited_since = time.monotonic()
            while True:
                now = time.monotonic()
                if now >= deadline:
                    self._end_stream()
                    break
                if w.wait_for_rv is not None:
                    if store.rv >= w.wait_for_rv:
                        w.wait_for_rv = None
                    elif now - waited_since > 3.0:
                        from .store import too_large_rv
                        self._chunk({'type': 'ERROR', 'object': too_large_rv(
                            w.wait_for_rv, store.rv).status()})
                        self._end_stream()
                        break
                wait = min(deadline, next_bookmark if bookmarks else deadline) - now
                if w.wait_for_rv is not None:
                    wait = min(wait, 0.1)
                ev = w.next(max(0.0, wait))
                if ev is None:
                    if w.closed:
                        # Closed from the admin API: the connection drops.
                        self._drop()
                        break
                    if bookmarks and time.monotonic() >= next_bookmark:
                        brv = w.bookmark_rv()
                        if brv is not None:
                            self._chunk({'type': 'BOOKMARK',
                                         'object': app.bookmark_object(res, brv)})
                        next_bookmark = time.monotonic() + interval
                    continue
                self._chunk({'type': ev[0], 'object': ev[1]})
                app.timeline.watch_sent(ev[0], ev[1])
                if ev[0] == 'ERROR':
                    self._end_stream()
                    break
                sent += 1
                if drop_after is not None and sent >= drop_after:
                    self._drop()
                    break
        except (ConnectionError, OSError):
            self.close_connection = True
        finally:
            store.stop_watch(w)
            app.requests.update(self._entry, events=sent)

    # --- scale --------------------------------------------------------------

    def _scale(self, method, q, info, res, raw):
        store = self.server.app.store
        ns = info.namespace
        spec_path = res.scale['specReplicasPath'].lstrip('.').split('.')
        status_path = res.scale['statusReplicasPath'].lstrip('.').split('.')
        sel_path = (res.scale.get('labelSelectorPath') or '').lstrip('.').split('.')

        def dig(o, path):
            for p in path:
                o = o.get(p) if isinstance(o, dict) else None
            return o

        def scale_of(o):
            md = o['metadata']
            s = {'kind': 'Scale', 'apiVersion': 'autoscaling/v1', 'metadata': {
                'name': md['name'], 'namespace': md.get('namespace'), 'uid': md['uid'],
                'resourceVersion': md['resourceVersion'],
                'creationTimestamp': md['creationTimestamp']},
                'spec': {'replicas': dig(o, spec_path) or 0},
                'status': {'replicas': dig(o, status_path) or 0}}
            sel = dig(o, sel_path) if sel_path != [''] else None
            if sel:
                s['status']['selector'] = sel
            return s
        if info.verb == 'get':
            self._respond(200, scale_of(store.get(res, ns, info.name)))
            return
        if info.verb not in ('update', 'patch'):
            raise errors.method_not_allowed()
        cur = store.get(res, ns, info.name)
        scale = scale_of(cur)
        if info.verb == 'update':
            new = self._decode(raw)
        else:
            from . import patch as patchmod
            ctype = (self.headers.get('Content-Type') or '').split(';')[0].strip()
            body = _decode_body(raw, JSON)
            new = patchmod.json_patch(scale, body) if ctype == 'application/json-patch+json' \
                else patchmod.merge_patch(scale, body)
        replicas = (new.get('spec') or {}).get('replicas')
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            from . import field
            raise errors.invalid('Scale.autoscaling', 'autoscaling', 'Scale', info.name,
                                 [field.invalid('spec.replicas', replicas,
                                                'must be an integer')])
        o = cur
        for p in spec_path[:-1]:
            o = o.setdefault(p, {})
        o[spec_path[-1]] = replicas
        rv = (new.get('metadata') or {}).get('resourceVersion') or cur['metadata'][
            'resourceVersion']
        cur['metadata']['resourceVersion'] = rv
        obj, _ = store.update(res, ns, info.name, cur)
        self._respond(200, scale_of(obj))


def fault_error(fault, info, res, raw):
    code = int(fault['status'])
    msg = fault.get('message')
    name = info.name if info else ''
    gr = res.gr if res else errors.GroupResource('', '')
    if code == 429:
        e = errors.too_many_requests(int(fault.get('retry_after', 1)))
    elif code == 409:
        if not name and raw:
            try:
                name = (json.loads(raw).get('metadata') or {}).get('name', '')
            except (ValueError, AttributeError):
                name = ''
        reason = fault.get('reason') or ('AlreadyExists' if info and info.verb == 'create'
                                         else 'Conflict')
        e = errors.already_exists(gr, name) if reason == 'AlreadyExists' else \
            errors.stale_conflict(gr, name)
    elif code == 404:
        e = errors.not_found(gr, name)
    elif code == 410:
        e = errors.expired(msg or 'The resourceVersion for the provided request is too old.')
    elif code == 500:
        e = errors.internal_error(msg or 'injected fault')
    elif code == 503:
        e = errors.service_unavailable(msg or 'the server is currently unable to handle the '
                                       'request')
        if 'retry_after' in fault:
            e.headers['Retry-After'] = str(fault['retry_after'])
            e.details = {'retryAfterSeconds': int(fault['retry_after'])}
    elif code == 504:
        e = errors.timeout(msg or 'the server was unable to return a response in the time '
                           'allotted, but may still be processing the request')
    elif code == 403:
        e = errors.forbidden(gr, name, msg or 'injected fault')
    elif code == 401:
        e = errors.unauthorized()
    else:
        e = ApiError(code, fault.get('reason') or 'InternalError', msg or 'injected fault')
    if fault.get('reason') and code != 409:
        e.reason = fault['reason']
    if msg and code not in (500, 503, 504, 410, 403):
        e.message = msg
    if 'retry_after' in fault and code != 429 and code != 503:
        e.headers['Retry-After'] = str(fault['retry_after'])
    return e


def _accepts_json(accept):
    for part in accept.split(','):
        t = part.split(';')[0].strip().lower()
        if t in ('application/json', '*/*', 'application/*', ''):
            return True
    return False


def _decode_body(raw, ctype):
    try:
        if ctype == 'application/yaml':
            return yaml.safe_load(raw.decode() or 'null')
        return json.loads(raw.decode() or 'null')
    except (ValueError, yaml.YAMLError) as e:
        raise errors.bad_request('the body of the request could not be decoded: %s' % e)


def _dry_run(q):
    v = q.get('dryRun')
    if v is None:
        return False
    if v != 'All':
        raise errors.bad_request('dryRun: Unsupported value: "%s": supported values: "All"' % v)
    return True


def _int_param(q, name):
    if name not in q or q[name] == '':
        return None
    try:
        return int(q[name])
    except ValueError:
        raise errors.bad_request('invalid %s: %s' % (name, json.dumps(q[name])))


def _recorded_body(raw):
    if not raw:
        return None
    text = raw[:RECORDED_BODY_LIMIT].decode(errors='replace')
    try:
        return json.loads(text)
    except ValueError:
        return text
