"""PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and,
for core kinds, a strategic merge patch reduced to its common cases.

Errors raise PatchError; httpapi.py answers them the way the apiserver's
patch handler does (400 for a malformed patch document, 422 when a
well-formed JSON patch cannot be applied).
"""
from .util import jcopy


class PatchError(Exception):
    def __init__(self, message, bad_request=True):
        super().__init__(message)
        self.bad_request = bad_request


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return jcopy(patch)
    result = jcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


# --- JSON patch --------------------------------------------------------------

def _pointer(path):
    if path == '':
        return []
    if not path.startswith('/'):
        raise PatchError('add operation does not apply: doc is missing path: "%s"' % path, False)
    return [p.replace('~1', '/').replace('~0', '~') for p in path[1:].split('/')]


def _resolve(doc, parts, path):
    cur = doc
    for p in parts:
        if isinstance(cur, dict):
            if p not in cur:
                raise PatchError('doc is missing path: "%s"' % path, False)
            cur = cur[p]
        elif isinstance(cur, list):
            try:
                i = int(p)
            except ValueError:
                raise PatchError('doc is missing path: "%s"' % path, False)
            if i < 0 or i >= len(cur):
                raise PatchError('doc is missing path: "%s"' % path, False)
            cur = cur[i]
        else:
            raise PatchError('doc is missing path: "%s"' % path, False)
    return cur


def _container(doc, path, op):
    parts = _pointer(path)
    if not parts:
        raise PatchError('%s operation does not apply: doc is missing path: "%s"'
                         % (op, path), False)
    parent = _resolve(doc, parts[:-1], path)
    return parent, parts[-1]


def _add(doc, path, value):
    parent, last = _container(doc, path, 'add')
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == '-':
            parent.append(value)
            return
        try:
            i = int(last)
        except ValueError:
            raise PatchError('add operation does not apply: doc is missing path: "%s"' % path,
                             False)
        if i < 0 or i > len(parent):
            raise PatchError('add operation does not apply: doc is missing path: "%s"' % path,
                             False)
        parent.insert(i, value)
    else:
        raise PatchError('add operation does not apply: doc is missing path: "%s"' % path, False)


def _remove(doc, path, op='remove'):
    parent, last = _container(doc, path, op)
    try:
        if isinstance(parent, dict):
            return parent.pop(last)
        if isinstance(parent, list):
            return parent.pop(int(last))
    except (KeyError, ValueError, IndexError):
        pass
    raise PatchError('%s operation does not apply: doc is missing path: "%s"' % (op, path),
                     False)


def json_patch(target, ops):
    if not isinstance(ops, list):
        raise PatchError('json: cannot unmarshal object into Go value of type jsonpatch.Patch')
    doc = jcopy(target)
    for op in ops:
        if not isinstance(op, dict) or 'op' not in op:
            raise PatchError('Unexpected kind: unknown', False)
        kind = op['op']
        path = op.get('path')
        if path is None:
            raise PatchError('%s operation does not apply: doc is missing path' % kind, False)
        if kind == 'add':
            _add(doc, path, jcopy(op.get('value')))
        elif kind == 'remove':
            _remove(doc, path)
        elif kind == 'replace':
            _remove(doc, path, 'replace')
            _add(doc, path, jcopy(op.get('value')))
        elif kind == 'move':
            v = _remove(doc, op.get('from', ''), 'move')
            _add(doc, path, v)
        elif kind == 'copy':
            v = _resolve(doc, _pointer(op.get('from', '')), op.get('from', ''))
            _add(doc, path, jcopy(v))
        elif kind == 'test':
            parts = _pointer(path)
            try:
                v = _resolve(doc, parts, path)
            except PatchError:
                v = None
            if v != op.get('value'):
                raise PatchError('testing value %s failed: test failed' % path, False)
        else:
            raise PatchError('Unexpected kind: %s' % kind, False)
    return doc


# --- strategic merge patch (core kinds) ---------------------------------------
#
# The real one is driven by Go struct tags (patchMergeKey). The keys below
# cover the PodSpec and ObjectMeta lists a client is likely to patch; other
# lists are replaced, as in a merge patch.

MERGE_KEYS = {
    'containers': 'name', 'initContainers': 'name', 'ephemeralContainers': 'name',
    'env': 'name', 'volumes': 'name', 'volumeMounts': 'mountPath', 'ports': 'containerPort',
    'conditions': 'type', 'ownerReferences': 'uid', 'imagePullSecrets': 'name',
    'tolerations': None, 'finalizers': None,
}


def strategic_merge_patch(target, patch, key=None):
    if not isinstance(patch, dict):
        return jcopy(patch)
    result = jcopy(target) if isinstance(target, dict) else {}
    if patch.get('$patch') == 'replace':
        return {k: v for k, v in jcopy(patch).items() if k != '$patch'}
    for k, v in patch.items():
        if k.startswith('$'):
            continue
        if v is None:
            result.pop(k, None)
        elif isinstance(v, list) and MERGE_KEYS.get(k) and isinstance(result.get(k), list):
            result[k] = _merge_list(result[k], v, MERGE_KEYS[k])
        elif isinstance(v, list) and k == 'finalizers' and isinstance(result.get(k), list):
            # A list of scalars with patchStrategy merge: union, in order.
            result[k] = result[k] + [x for x in v if x not in result[k]]
        else:
            result[k] = strategic_merge_patch(result.get(k), v, k)
    return result


def _merge_list(current, patch, merge_key):
    out = jcopy(current)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            return jcopy(patch)
        directive = item.get('$patch')
        idx = next((i for i, c in enumerate(out)
                    if isinstance(c, dict) and c.get(merge_key) == item[merge_key]), None)
        if directive == 'delete':
            if idx is not None:
                out.pop(idx)
        elif idx is None:
            out.append({k: v for k, v in jcopy(item).items() if k != '$patch'})
        else:
            out[idx] = strategic_merge_patch(out[idx], item)
    return out
