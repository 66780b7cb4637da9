"""The object store: etcd plus the generic registry (k8s.io/apiserver's
registry/generic/registry/store.go) in one place.

- One global resourceVersion counter; every committed write takes the next
  value, across all resources, as an etcd revision does.
- A bounded history of committed changes (the compaction window). It
  serves watch resumption, consistent paginated lists (a page is read at
  the list's resourceVersion by undoing the later changes) and list reads
  at an exact resourceVersion. A resourceVersion older than the window is
  410 Expired, as after an etcd compaction.
- Watchers get their events from commit(), under the store lock, so no
  event is lost between a list and a watch started from its version.

Every public method raises errors.ApiError for API-visible failures. All
state is guarded by self.lock (an RLock); watchers and internal listeners
are fed under it and must not block.
"""
import base64
import binascii
import collections
import json
import queue
import random
import threading
import time
import uuid

from . import errors, field, meta, patch as patchmod
from .util import jcopy, now_rfc3339, rfc3339

GENERATE_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789'
MAX_GENERATE_ATTEMPTS = 8
TOO_LARGE_RV_WAIT = 3.0


class Change:
    """One committed write: the new state (for DELETED, the last state with
    the deletion's resourceVersion) and the state before it."""
    __slots__ = ('rv', 'res', 'ns', 'name', 'type', 'obj', 'prev')

    def __init__(self, rv, res, ns, name, type_, obj, prev):
        self.rv, self.res, self.ns, self.name = rv, res, ns, name
        self.type, self.obj, self.prev = type_, obj, prev


class Watcher:
    """A watch's event queue, fed under the store lock."""

    def __init__(self, store, res, ns, label_sel, field_sel):
        self.store = store
        self.res = res
        self.ns = ns
        self.label_sel = label_sel
        self.field_sel = field_sel
        self.queue = queue.Queue()
        self.closed = False
        self.wait_for_rv = None   # a resourceVersion ahead of the store

    def matches(self, obj):
        if obj is None:
            return False
        md = obj.get('metadata', {})
        if self.ns and md.get('namespace') != self.ns:
            return False
        if self.label_sel and not self.label_sel.matches(md.get('labels')):
            return False
        if self.field_sel and not self.field_sel.matches(self.res.field_attrs(obj)):
            return False
        return True

    def offer(self, ch):
        """Translate a change into this watch's event (selector transitions
        become ADDED/DELETED) and queue it."""
        if ch.res is not self.res or self.closed:
            return
        cur = ch.type != 'DELETED' and self.matches(ch.obj)
        prev = self.matches(ch.prev)
        if ch.type == 'DELETED':
            if prev:
                self.queue.put(('DELETED', ch.obj))
        elif cur and prev:
            self.queue.put(('MODIFIED', ch.obj))
        elif cur:
            self.queue.put(('ADDED', ch.obj))
        elif prev:
            # The watch cache sends the previous state with the new version.
            old = jcopy(ch.prev)
            old['metadata']['resourceVersion'] = str(ch.rv)
            self.queue.put(('DELETED', old))

    def next(self, timeout):
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self):
        self.closed = True
        self.queue.put(None)

    def bookmark_rv(self):
        """The store's resourceVersion if every change up to it has been
        taken from the queue, else None."""
        with self.store.lock:
            if self.queue.empty():
                return self.store.rv
        return None


def _key(ns, name):
    return (ns or '', name)


def encode_continue(rv, ns, name):
    start = ('%s/%s' % (ns, name) if ns else name) + '\x00'
    tok = json.dumps({'v': 'meta.k8s.io/v1', 'rv': rv, 'start': start},
                     separators=(',', ':'))
    return base64.urlsafe_b64encode(tok.encode()).decode().rstrip('=')


def decode_continue(token):
    try:
        raw = base64.urlsafe_b64decode(token + '=' * (-len(token) % 4))
        d = json.loads(raw)
        if d.get('v') != 'meta.k8s.io/v1':
            raise ValueError('continue key is not valid: server does not recognize this '
                             'encoded version %r' % d.get('v'))
        rv = d['rv']
        start = d['start']
        if not isinstance(rv, int) or rv <= 0 or not isinstance(start, str):
            raise ValueError('continue key is not valid: incorrect encoded start '
                             'resourceVersion (version meta.k8s.io/v1)')
    except (binascii.Error, ValueError, KeyError, TypeError) as e:
        msg = str(e) if str(e).startswith('continue key') else 'continue key is not valid: %s' % e
        raise errors.bad_request('invalid continue token: %s' % msg)
    start = start[:-1] if start.endswith('\x00') else start
    ns, _, name = start.rpartition('/')
    return rv, (ns, name)


class Store:
    def __init__(self, registry, history_size=10000):
        self.registry = registry
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.rv = 1
        self.objects = {r: {} for r in registry.all}
        self.history = collections.deque()
        self.history_size = history_size
        self.compacted = 0
        self.watchers = set()
        self.listeners = []
        self.dependents = collections.defaultdict(set)   # owner uid -> {(res, ns, name)}

    # --- commit -------------------------------------------------------------

    def _commit(self, res, type_, obj, prev):
        self.rv += 1
        obj = jcopy(obj)
        md = obj['metadata']
        md['resourceVersion'] = str(self.rv)
        ns, name = md.get('namespace', ''), md['name']
        k = _key(ns, name)
        if type_ == 'DELETED':
            self.objects[res].pop(k, None)
        else:
            self.objects[res][k] = obj
        for o in (prev or {}).get('metadata', {}).get('ownerReferences') or []:
            self.dependents[o.get('uid')].discard((res, ns, name))
        if type_ != 'DELETED':
            for o in md.get('ownerReferences') or []:
                self.dependents[o.get('uid')].add((res, ns, name))
        ch = Change(self.rv, res, ns, name, type_, obj, prev)
        self.history.append(ch)
        while len(self.history) > self.history_size:
            self.compacted = self.history.popleft().rv
        for w in list(self.watchers):
            w.offer(ch)
        for fn in self.listeners:
            fn(ch)
        self.changed.notify_all()
        return jcopy(obj)

    def compact(self, rv=None):
        """Forget the changes up to rv (default: all), as an etcd compaction."""
        with self.lock:
            target = self.rv if rv is None else min(int(rv), self.rv)
            while self.history and self.history[0].rv <= target:
                self.history.popleft()
            self.compacted = max(self.compacted, target)
            return self.compacted

    def set_history_size(self, n):
        with self.lock:
            self.history_size = max(1, int(n))
            while len(self.history) > self.history_size:
                self.compacted = self.history.popleft().rv

    # --- reads --------------------------------------------------------------

    def get(self, res, ns, name):
        with self.lock:
            obj = self.objects[res].get(_key(ns, name))
            if obj is None:
                raise errors.not_found(res.gr, name)
            return jcopy(obj)

    def peek(self, res, ns, name):
        """The stored object itself (no copy) or None; lock held by caller."""
        return self.objects[res].get(_key(ns, name))

    def items(self, res, ns=None):
        with self.lock:
            return [jcopy(o) for (n, _), o in sorted(self.objects[res].items())
                    if ns is None or n == ns]

    def _snapshot(self, res, rv):
        """res's objects as they were at rv (rv >= self.compacted)."""
        items = dict(self.objects[res])
        for ch in reversed(self.history):
            if ch.rv <= rv:
                break
            if ch.res is not res:
                continue
            k = _key(ch.ns, ch.name)
            if ch.type == 'ADDED':
                items.pop(k, None)
            else:
                items[k] = ch.prev
        return items

    def _wait_rv(self, rv):
        deadline = time.monotonic() + TOO_LARGE_RV_WAIT
        while self.rv < rv:
            left = deadline - time.monotonic()
            if left <= 0:
                raise too_large_rv(rv, self.rv)
            self.changed.wait(left)

    def list(self, res, ns, label_sel, field_sel, limit=0, cont='', rv='', rv_match=''):
        """(items, list resourceVersion, continue token, remainingItemCount)."""
        with self.lock:
            start = None
            if cont:
                list_rv, start = decode_continue(cont)
                if list_rv < self.compacted:
                    raise errors.expired(
                        'The provided continue parameter is too old to display a consistent '
                        'list result. You can start a new list without the continue parameter, '
                        'or use the continue token in this response to retrieve the remainder '
                        'of the results. Continuing with the provided token results in an '
                        'inconsistent list - objects that were created, modified, or deleted '
                        'between the time the first chunk was returned and now may show up in '
                        'the list.', encode_continue(self.rv, *start))
                exact = True
            elif rv in ('', '0'):
                list_rv, exact = self.rv, False
            else:
                n = int(rv)
                exact = rv_match == 'Exact' or (not rv_match and limit > 0)
                self._wait_rv(n)
                list_rv = n if exact else self.rv
                if exact and n < self.compacted:
                    raise errors.expired('The resourceVersion for the provided list is too old.')
            objs = self._snapshot(res, list_rv) if exact and list_rv != self.rv \
                else self.objects[res]
            keys = sorted(k for k in objs
                          if (not ns or k[0] == ns) and (start is None or k > start))
            out = []
            out_key = None
            token, remaining = '', None
            selecting = not ((label_sel is None or label_sel.empty())
                             and (field_sel is None or field_sel.empty()))
            for i, k in enumerate(keys):
                o = objs[k]
                md = o.get('metadata', {})
                if label_sel and not label_sel.matches(md.get('labels')):
                    continue
                if field_sel and not field_sel.matches(res.field_attrs(o)):
                    continue
                if limit and len(out) == limit:
                    token = encode_continue(list_rv, *out_key)
                    if not selecting:
                        remaining = len(keys) - i
                    break
                out.append(jcopy(o))
                out_key = k
            return out, list_rv, token, remaining

    # --- watch --------------------------------------------------------------

    def watch(self, res, ns, label_sel, field_sel, rv, send_initial=None):
        """A registered Watcher, primed with the initial or replayed events;
        an ERROR event (410) when rv is older than the window."""
        w = Watcher(self, res, ns, label_sel, field_sel)
        with self.lock:
            initial = send_initial if send_initial is not None else rv in ('', '0')
            if rv not in ('', '0'):
                n = int(rv)
                if n < self.compacted:
                    w.queue.put(('ERROR', errors.expired(
                        'too old resource version: %d (%d)' % (n, self.compacted)).status()))
                    w.queue.put(None)
                    return w
                if n > self.rv:
                    w.wait_for_rv = n
                for ch in self.history:
                    if ch.rv > n:
                        w.offer(ch)
            if initial:
                for k in sorted(self.objects[res]):
                    o = self.objects[res][k]
                    if w.matches(o):
                        w.queue.put(('ADDED', jcopy(o)))
            self.watchers.add(w)
            return w

    def stop_watch(self, w):
        with self.lock:
            self.watchers.discard(w)
            w.closed = True

    def close_watches(self, res=None):
        with self.lock:
            n = 0
            for w in list(self.watchers):
                if res is None or w.res is res:
                    w.close()
                    self.watchers.discard(w)
                    n += 1
            return n

    # --- writes -------------------------------------------------------------

    def _prune(self, res, obj, field_validation):
        unknown = sorted(res.prune(obj))
        if unknown and field_validation == 'Strict':
            raise errors.bad_request('strict decoding error: ' + ', '.join(
                'unknown field "%s"' % u for u in unknown))
        if field_validation == 'Ignore':
            return []
        return ['unknown field "%s"' % u for u in unknown]

    def _check_namespace(self, res, ns):
        if not res.namespaced:
            return
        nsres = self.registry.by_kind[('', 'Namespace')]
        n = self.objects[nsres].get(_key('', ns))
        if n is None:
            raise errors.not_found(nsres.gr, ns)
        if n.get('metadata', {}).get('deletionTimestamp'):
            e = errors.forbidden(res.gr, '', 'unable to create new content in namespace %s '
                                 'because it is being terminated' % ns)
            e.details = {'name': ns, 'kind': 'namespaces', 'causes': [{
                'reason': 'NamespaceTerminating', 'message': 'namespace %s is being terminated'
                % ns, 'field': 'metadata.namespace'}]}
            e.message = ('%s "%s" is forbidden: unable to create new content in namespace %s '
                         'because it is being terminated' % (res.gr, '', ns))
            raise e

    def _invalid(self, res, name, errs):
        return errors.invalid(res.qualified_kind, res.group, res.kind, name, errs)

    def _validate(self, res, obj, old, create):
        errs = meta.validate_meta(obj['metadata'], res.name_errors, res.namespaced, create)
        if old is not None:
            errs += meta.validate_meta_update(obj['metadata'], old['metadata'])
        errs += res.validate(obj, old)
        if old is not None:
            errs += res.validate_update(obj, old)
        return errs

    def _check_type_meta(self, res, obj):
        if not isinstance(obj, dict):
            raise errors.bad_request('Object is not a JSON object')
        av, kind = obj.get('apiVersion'), obj.get('kind')
        if res.is_crd:
            # The unstructured decoder needs both, and the group/version
            # must be the URL's (apiextensions-apiserver validator.go).
            if not kind:
                raise errors.bad_request("Object 'Kind' is missing in '%s'"
                                         % json.dumps(obj, separators=(',', ':')))
            if not av:
                raise errors.bad_request("Object 'apiVersion' is missing in '%s'"
                                         % json.dumps(obj, separators=(',', ':')))
        else:
            av = av or res.api_version
            kind = kind or res.kind
        if av != res.api_version:
            raise errors.bad_request('the API version in the data (%s) does not match the '
                                     'expected API version (%s)' % (av, res.api_version))
        if kind != res.kind:
            raise self._invalid(res, obj.get('metadata', {}).get('name', ''), [
                field.invalid('kind', kind, 'must be %s' % res.kind)])
        obj['apiVersion'], obj['kind'] = av, kind
        if not isinstance(obj.get('metadata', {}), dict):
            raise errors.bad_request('metadata must be an object')
        obj.setdefault('metadata', {})

    def create(self, res, ns, body, field_validation='Warn', dry_run=False, keep_status=False):
        """(created object, warnings). keep_status: seeding from the admin
        API, which may carry a status."""
        obj = jcopy(body)
        self._check_type_meta(res, obj)
        md = obj['metadata']
        if res.namespaced:
            if md.get('namespace') and md['namespace'] != ns:
                raise errors.bad_request('the namespace of the provided object does not match '
                                         'the namespace sent on the request')
            md['namespace'] = ns
        warnings = self._prune(res, obj, field_validation)
        status = jcopy(obj.get('status'))
        res.default(obj)
        with self.lock:
            self._check_namespace(res, ns)
            if md.get('resourceVersion'):
                raise errors.internal_error('resourceVersion should not be set on objects to be '
                                            'created')
            for k in ('deletionTimestamp', 'deletionGracePeriodSeconds', 'selfLink',
                      'managedFields'):
                md.pop(k, None)
            md['uid'] = str(uuid.uuid4())
            md['creationTimestamp'] = now_rfc3339()
            if res.has_generation:
                md['generation'] = 1
            else:
                md.pop('generation', None)
            res.prepare_for_create(obj)
            if keep_status and status is not None:
                obj['status'] = status
            generated = not md.get('name') and md.get('generateName')
            if generated:
                md['name'] = self._generate(res, ns, md['generateName'])
            if hasattr(res, 'admit'):
                res.admit(obj)
            errs = self._validate(res, obj, None, True)
            if errs:
                raise self._invalid(res, md.get('name', ''), errs)
            existing = self.objects[res].get(_key(ns, md['name']))
            if existing is not None:
                if generated:
                    raise errors.generate_name_conflict(res.gr, md['name'])
                raise errors.already_exists(res.gr, md['name'],
                                            bool(existing['metadata'].get('deletionTimestamp')))
            if dry_run:
                return obj, warnings
            return self._commit(res, 'ADDED', obj, None), warnings

    def _generate(self, res, ns, prefix):
        name = ''
        for _ in range(MAX_GENERATE_ATTEMPTS):
            name = prefix[:58] + ''.join(random.choice(GENERATE_ALPHABET) for _ in range(5))
            if _key(ns, name) not in self.objects[res]:
                return name
        return name   # taken: create() answers the generate-name conflict

    def update(self, res, ns, name, body, subresource=None, field_validation='Warn',
               dry_run=False, _from_patch=False):
        """(stored object, warnings) for a PUT (or a PATCH's merged result)."""
        obj = jcopy(body)
        self._check_type_meta(res, obj)
        md = obj['metadata']
        if md.get('name') and md['name'] != name:
            raise errors.bad_request('the name of the object (%s) does not match the name on '
                                     'the URL (%s)' % (md['name'], name))
        md['name'] = name
        if res.namespaced:
            if md.get('namespace') and md['namespace'] != ns:
                raise errors.bad_request('the namespace of the provided object does not match '
                                         'the namespace sent on the request')
            md['namespace'] = ns
        warnings = self._prune(res, obj, field_validation)
        with self.lock:
            old = self.objects[res].get(_key(ns, name))
            if old is None:
                raise errors.not_found(res.gr, name)
            rv = md.get('resourceVersion')
            if not rv:
                if not res.allow_unconditional_update and not _from_patch:
                    raise errors.invalid(str(res.gr), res.group, res.plural, name, [
                        field.invalid('metadata.resourceVersion', 0,
                                      'must be specified for an update')])
                md['resourceVersion'] = old['metadata']['resourceVersion']
            elif rv != old['metadata']['resourceVersion']:
                raise errors.stale_conflict(res.gr, name)
            res.prepare_for_update(obj, old, subresource)
            md = obj['metadata']
            omd = old['metadata']
            if not md.get('uid'):
                md['uid'] = omd['uid']
            for k in ('creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds',
                      'generation'):
                if k in omd:
                    md[k] = omd[k]
                else:
                    md.pop(k, None)
            md.pop('managedFields', None)
            md.pop('selfLink', None)
            res.default(obj)
            errs = self._validate(res, obj, old, False)
            if errs:
                raise self._invalid(res, name, errs)
            if res.has_generation and subresource != 'status':
                def body_of(o):
                    return {k: v for k, v in o.items() if k not in ('metadata', 'status')
                            or (k == 'status' and 'status' not in res.subresources)}
                if body_of(obj) != body_of(old):
                    md['generation'] = omd.get('generation', 0) + 1
            if obj == old:
                return jcopy(old), warnings   # a true no-op writes nothing
            if dry_run:
                return obj, warnings
            if md.get('deletionTimestamp') and not md.get('finalizers') and \
                    not md.get('deletionGracePeriodSeconds'):
                # The last finalizer is gone: the update completes the delete.
                self._commit(res, 'DELETED', obj, old)
                return obj, warnings
            return self._commit(res, 'MODIFIED', obj, old), warnings

    def patch(self, res, ns, name, content_type, body, subresource=None,
              field_validation='Warn', dry_run=False, field_manager=None):
        """(stored object, warnings, created) for a PATCH."""
        if content_type not in res.patch_types:
            raise errors.unsupported_media_type(list(res.patch_types))
        if content_type == 'application/apply-patch+yaml' and not field_manager:
            raise errors.invalid('PatchOptions.meta.k8s.io', 'meta.k8s.io', 'PatchOptions', '', [
                field.required('fieldManager', 'is required for apply patch')])
        for _ in range(5):
            with self.lock:
                old = self.objects[res].get(_key(ns, name))
                if old is None:
                    if content_type == 'application/apply-patch+yaml':
                        obj, w = self.create(res, ns, body, field_validation, dry_run)
                        return obj, w, True
                    raise errors.not_found(res.gr, name)
                old = jcopy(old)
            current_rv = old['metadata']['resourceVersion']
            try:
                if content_type == 'application/json-patch+json':
                    merged = patchmod.json_patch(old, body)
                elif content_type == 'application/strategic-merge-patch+json':
                    merged = patchmod.strategic_merge_patch(old, body)
                else:
                    # Apply is reduced to a merge of the applied config: no
                    # field ownership, so never an apply conflict.
                    if not isinstance(body, dict):
                        raise patchmod.PatchError('patch body must be a JSON object')
                    merged = patchmod.merge_patch(old, body)
            except patchmod.PatchError as e:
                if e.bad_request:
                    raise errors.bad_request(str(e))
                raise errors.generic_invalid(str(e))
            if not isinstance(merged, dict):
                raise errors.bad_request('patch produced a non-object')
            md = merged.setdefault('metadata', {})
            rv = md.get('resourceVersion')
            if rv and rv != current_rv:
                raise errors.stale_conflict(res.gr, name)
            md['resourceVersion'] = current_rv
            try:
                obj, w = self.update(res, ns, name, merged, subresource, field_validation,
                                     dry_run, _from_patch=True)
                return obj, w, False
            except errors.ApiError as e:
                # A write between our read and the update: the apiserver
                # retries an unconditional patch itself.
                if e.reason == 'Conflict' and not rv:
                    continue
                raise
        raise errors.stale_conflict(res.gr, name)

    def delete(self, res, ns, name, options=None):
        """(code, body) for a DELETE. options: propagationPolicy,
        preconditions, gracePeriodSeconds, dryRun."""
        options = options or {}
        policy = options.get('propagationPolicy')
        if policy is None and options.get('orphanDependents') is not None:
            policy = 'Orphan' if options['orphanDependents'] else 'Background'
        if policy not in (None, 'Orphan', 'Background', 'Foreground'):
            raise errors.invalid('DeleteOptions.meta.k8s.io', 'meta.k8s.io', 'DeleteOptions', '', [
                field.not_supported('propagationPolicy', policy,
                                    ['Foreground', 'Background', 'Orphan', 'nil'])])
        dry_run = bool(options.get('dryRun'))
        with self.lock:
            cur = self.objects[res].get(_key(ns, name))
            if cur is None:
                raise errors.not_found(res.gr, name)
            obj = jcopy(cur)
            md = obj['metadata']
            pre = options.get('preconditions') or {}
            kind_gr = errors.GroupResource(res.kind, res.group)
            if pre.get('uid') and pre['uid'] != md['uid']:
                raise errors.conflict(kind_gr, name, 'the UID in the precondition (%s) does not '
                                      'match the UID in record (%s). The object might have been '
                                      'deleted and then recreated' % (pre['uid'], md['uid']))
            if pre.get('resourceVersion') and pre['resourceVersion'] != md['resourceVersion']:
                raise errors.conflict(kind_gr, name, 'the ResourceVersion in the precondition '
                                      '(%s) does not match the ResourceVersion in record (%s). '
                                      'The object might have been modified'
                                      % (pre['resourceVersion'], md['resourceVersion']))
            if res.kind == 'Namespace':
                return self._delete_namespace(res, obj, cur, dry_run)
            grace = self._grace(res, obj, options.get('gracePeriodSeconds'))
            fins = list(md.get('finalizers') or [])
            if policy == 'Foreground':
                fins = [f for f in fins if f != 'orphan']
                if 'foregroundDeletion' not in fins:
                    fins.append('foregroundDeletion')
            elif policy == 'Orphan':
                fins = [f for f in fins if f != 'foregroundDeletion']
                if 'orphan' not in fins:
                    fins.append('orphan')
            elif policy == 'Background':
                fins = [f for f in fins if f not in ('orphan', 'foregroundDeletion')]
            if fins or grace:
                first = not md.get('deletionTimestamp')
                md['finalizers'] = fins
                if not fins:
                    md.pop('finalizers')
                if first:
                    md['deletionTimestamp'] = rfc3339(time.time() + grace)
                    md['deletionGracePeriodSeconds'] = grace
                    if res.has_generation and md.get('generation', 0) > 0:
                        md['generation'] += 1
                elif grace < (md.get('deletionGracePeriodSeconds') or 0):
                    # A later delete may only shorten the grace period.
                    md['deletionTimestamp'] = rfc3339(time.time() + grace)
                    md['deletionGracePeriodSeconds'] = grace
                if obj != cur and not dry_run:
                    obj = self._commit(res, 'MODIFIED', obj, cur)
                return 200, obj
            if dry_run:
                return 200, obj if res.return_deleted_object else \
                    errors.success_status(res.gr, name, md['uid'])
            gone = self._commit(res, 'DELETED', obj, cur)
            if res.return_deleted_object:
                return 200, gone
            return 200, errors.success_status(res.gr, name, md['uid'])

    def _grace(self, res, obj, requested):
        if res.kind != 'Pod':
            return 0
        spec, status = obj.get('spec') or {}, obj.get('status') or {}
        if requested is None:
            grace = spec.get('terminationGracePeriodSeconds', 30)
        else:
            grace = int(requested)
        if grace < 0:
            grace = 1
        # Pods never scheduled or already finished have nothing to stop.
        if not spec.get('nodeName') or status.get('phase') in ('Succeeded', 'Failed'):
            grace = 0
        return grace

    def _delete_namespace(self, res, obj, cur, dry_run):
        md = obj['metadata']
        if not md.get('deletionTimestamp'):
            md['deletionTimestamp'] = now_rfc3339()
            md['deletionGracePeriodSeconds'] = 0
            obj.setdefault('status', {})['phase'] = 'Terminating'
            if not dry_run:
                obj = self._commit(res, 'MODIFIED', obj, cur)
        return 200, obj

    def finalize_namespace(self, name):
        """The namespace controller's last step: remove the 'kubernetes'
        finalizer of an empty terminating namespace, which deletes it."""
        nsres = self.registry.by_kind[('', 'Namespace')]
        with self.lock:
            cur = self.objects[nsres].get(_key('', name))
            if cur is None:
                return
            if not cur['metadata'].get('finalizers'):
                self._commit(nsres, 'DELETED', jcopy(cur), cur)

    def remove(self, res, ns, name):
        """Remove at once (the kubelet's grace-0 delete of a pod whose
        containers stopped; a finalizer-free object)."""
        with self.lock:
            cur = self.objects[res].get(_key(ns, name))
            if cur is not None and not cur['metadata'].get('finalizers'):
                self._commit(res, 'DELETED', jcopy(cur), cur)
                return True
            return False

    def write_internal(self, res, obj):
        """Store obj as the new state without API validation (the
        controllers' own bookkeeping on objects they already read)."""
        with self.lock:
            md = obj['metadata']
            cur = self.objects[res].get(_key(md.get('namespace', ''), md['name']))
            if cur is None:
                return None
            if obj == cur:
                return jcopy(cur)
            return self._commit(res, 'MODIFIED', obj, cur)

    def reset(self, keep_namespaces=()):
        """Remove every object (a fresh cluster); resourceVersions go on
        increasing, as a real cluster's never go back."""
        with self.lock:
            for w in list(self.watchers):
                w.close()
            self.watchers.clear()
            for res, objs in self.objects.items():
                for k in list(objs):
                    if res.kind == 'Namespace' and k[1] in keep_namespaces:
                        continue
                    del objs[k]
            self.dependents.clear()
            self.history.clear()
            self.compacted = self.rv
            for res, objs in self.objects.items():
                for (ns, name), o in objs.items():
                    for ref in o['metadata'].get('ownerReferences') or []:
                        self.dependents[ref.get('uid')].add((res, ns, name))


def too_large_rv(requested, current):
    return errors.timeout('Too large resource version: %d, current: %d' % (requested, current),
                          retry_after=1, causes=[{'reason': 'ResourceVersionTooLarge',
                                                  'message': 'Too large resource version'}])
