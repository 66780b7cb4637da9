"""The resources the stand-in serves and their strategies: what a create or
update may set, defaulting, validation, field-selector attributes.

Custom resources follow the apiextensions-apiserver (schema from the CRD,
status subresource, generation, no unconditional update); core kinds
(pods, secrets, events, namespaces, services) follow their registries in
kubernetes/pkg/registry, reduced to what a sandbox client touches.
"""
import base64
import glob
import os
import re

import yaml

from . import field, meta, schema
from .util import jcopy
from .errors import GroupResource

CORE_PATCH_TYPES = ('application/json-patch+json', 'application/merge-patch+json',
                    'application/strategic-merge-patch+json', 'application/apply-patch+yaml')
CR_PATCH_TYPES = ('application/json-patch+json', 'application/merge-patch+json',
                  'application/apply-patch+yaml')
CR_VERBS = ['delete', 'deletecollection', 'get', 'list', 'patch', 'create', 'update', 'watch']


class Resource:
    group = ''
    version = 'v1'
    namespaced = True
    subresources = ()
    short_names = ()
    is_crd = False
    allow_unconditional_update = True
    return_deleted_object = False
    has_generation = False
    patch_types = CORE_PATCH_TYPES
    categories = ()

    def __init__(self, plural, kind, singular=None, schema_=None):
        self.plural = plural
        self.kind = kind
        self.list_kind = kind + 'List'
        self.singular = singular or kind.lower()
        self.schema = schema_
        self.gr = GroupResource(plural, self.group)

    @property
    def api_version(self):
        return '%s/%s' % (self.group, self.version) if self.group else self.version

    @property
    def qualified_kind(self):
        return '%s.%s' % (self.kind, self.group) if self.group else self.kind

    def name_errors(self, name):
        return meta.dns1123_subdomain_errors(name)

    # --- strategy hooks ---

    def prune(self, obj):
        """Remove unknown fields, return their paths."""
        unknown = meta.prune_meta(obj.get('metadata'))
        if self.schema is not None:
            unknown += schema.prune(obj, self.schema)
        return unknown

    def default(self, obj):
        if self.schema is not None:
            schema.apply_defaults(obj, self.schema)

    def validate(self, obj, old):
        errs = []
        if self.schema is not None:
            errs += schema.validate(obj, self.schema, '', old)
        return errs

    def prepare_for_create(self, obj):
        if 'status' in self.subresources:
            obj.pop('status', None)

    def prepare_for_update(self, obj, old, subresource):
        """Reset what this endpoint may not change: the status on the main
        resource, everything but status on /status."""
        if subresource == 'status':
            new_status = obj.get('status')
            keep = jcopy(old)
            keep.pop('status', None)
            if new_status is not None:
                keep['status'] = new_status
            # Only the resourceVersion (a precondition) is taken from the
            # request's metadata.
            keep['metadata']['resourceVersion'] = obj.get('metadata', {}).get('resourceVersion')
            obj.clear()
            obj.update(keep)
        elif 'status' in self.subresources:
            obj.pop('status', None)
            if 'status' in old:
                obj['status'] = jcopy(old['status'])

    def validate_update(self, obj, old):
        return []

    def field_attrs(self, obj):
        md = obj.get('metadata', {})
        attrs = {'metadata.name': md.get('name', '')}
        if self.namespaced:
            attrs['metadata.namespace'] = md.get('namespace', '')
        return attrs

    def discovery(self):
        out = [{'name': self.plural, 'singularName': self.singular,
                'namespaced': self.namespaced, 'kind': self.kind, 'verbs': list(CR_VERBS)}]
        if self.short_names:
            out[0]['shortNames'] = list(self.short_names)
        if self.categories:
            out[0]['categories'] = list(self.categories)
        for sub in self.subresources:
            out.append({'name': '%s/%s' % (self.plural, sub), 'singularName': '',
                        'namespaced': self.namespaced,
                        'kind': 'Scale' if sub == 'scale' else self.kind,
                        'group': 'autoscaling' if sub == 'scale' else None,
                        'version': 'v1' if sub == 'scale' else None,
                        'verbs': ['get', 'patch', 'update']})
            out[-1] = {k: v for k, v in out[-1].items() if v is not None}
        return out


class CustomResource(Resource):
    is_crd = True
    allow_unconditional_update = False
    has_generation = True
    patch_types = CR_PATCH_TYPES

    def __init__(self, crd):
        spec = crd['spec']
        names = spec['names']
        v = next(v for v in spec['versions'] if v['name'] == 'v1beta1')
        self.group = spec['group']
        self.version = v['name']
        self.namespaced = spec.get('scope', 'Namespaced') == 'Namespaced'
        self.subresources = tuple(sorted((v.get('subresources') or {}).keys()))
        self.scale = (v.get('subresources') or {}).get('scale')
        self.short_names = tuple(names.get('shortNames') or ())
        self.categories = tuple(names.get('categories') or ())
        self.crd_name = crd['metadata']['name']
        super().__init__(names['plural'], names['kind'], names.get('singular'),
                         v['schema']['openAPIV3Schema'])
        self.list_kind = names.get('listKind', self.kind + 'List')


def load_crds(directory):
    out = []
    for path in sorted(glob.glob(os.path.join(directory, '*.yaml'))):
        with open(path) as f:
            for doc in yaml.load_all(f, Loader=getattr(yaml, 'CSafeLoader', yaml.SafeLoader)):
                if doc and doc.get('kind') == 'CustomResourceDefinition':
                    out.append(CustomResource(doc))
    return out


# --- core kinds --------------------------------------------------------------

def _open(props=None, required=None):
    s = {'type': 'object', 'x-kubernetes-preserve-unknown-fields': True}
    if props:
        s = {'type': 'object', 'properties': props}
    if required:
        s['required'] = required
    return s


_STR = {'type': 'string'}
_STRMAP = {'type': 'object', 'additionalProperties': {'type': 'string'}}
_ROOT_PROPS = {'apiVersion': _STR, 'kind': _STR, 'metadata': {'type': 'object'}}


class PodResource(Resource):
    subresources = ('status',)
    return_deleted_object = True
    short_names = ('po',)
    categories = ('all',)

    def __init__(self, pod_spec_schema):
        props = dict(_ROOT_PROPS)
        props['spec'] = pod_spec_schema
        props['status'] = _open()
        super().__init__('pods', 'Pod', schema_={'type': 'object', 'properties': props})

    def default(self, obj):
        spec = obj.setdefault('spec', {})
        if not isinstance(spec, dict):
            return
        super().default(obj)
        spec.setdefault('restartPolicy', 'Always')
        spec.setdefault('dnsPolicy', 'ClusterFirst')
        spec.setdefault('terminationGracePeriodSeconds', 30)
        spec.setdefault('schedulerName', 'default-scheduler')
        spec.setdefault('securityContext', {})
        spec.setdefault('enableServiceLinks', True)
        spec.setdefault('preemptionPolicy', 'PreemptLowerPriority')
        spec.setdefault('priority', 0)
        for c in (spec.get('initContainers') or []) + (spec.get('containers') or []):
            if not isinstance(c, dict):
                continue
            image = c.get('image') or ''
            tag = image.rsplit('/', 1)[-1]
            latest = '@' not in tag and (':' not in tag or tag.endswith(':latest'))
            c.setdefault('imagePullPolicy', 'Always' if latest else 'IfNotPresent')
            c.setdefault('terminationMessagePath', '/dev/termination-log')
            c.setdefault('terminationMessagePolicy', 'File')
            c.setdefault('resources', {})

    def admit(self, obj):
        """ServiceAccount and DefaultTolerationSeconds admission."""
        spec = obj['spec']
        sa = spec.get('serviceAccountName') or spec.get('serviceAccount') or 'default'
        spec['serviceAccountName'] = sa
        spec['serviceAccount'] = sa
        tols = spec.setdefault('tolerations', [])
        for key in ('node.kubernetes.io/not-ready', 'node.kubernetes.io/unreachable'):
            if not any(t.get('key') == key for t in tols):
                tols.append({'key': key, 'operator': 'Exists', 'effect': 'NoExecute',
                             'tolerationSeconds': 300})
        if spec.get('automountServiceAccountToken') is not False:
            suffix = obj['metadata']['uid'][-5:]
            vol = 'kube-api-access-' + suffix
            spec.setdefault('volumes', []).append({'name': vol, 'projected': {
                'defaultMode': 420, 'sources': [
                    {'serviceAccountToken': {'expirationSeconds': 3607, 'path': 'token'}},
                    {'configMap': {'name': 'kube-root-ca.crt',
                                   'items': [{'key': 'ca.crt', 'path': 'ca.crt'}]}},
                    {'downwardAPI': {'items': [{'path': 'namespace', 'fieldRef': {
                        'apiVersion': 'v1', 'fieldPath': 'metadata.namespace'}}]}}]}})
            for c in spec.get('containers') or []:
                c.setdefault('volumeMounts', []).append({
                    'name': vol, 'readOnly': True,
                    'mountPath': '/var/run/secrets/kubernetes.io/serviceaccount'})

    def prepare_for_create(self, obj):
        obj['status'] = {'phase': 'Pending', 'qosClass': 'BestEffort'}

    def validate(self, obj, old):
        errs = []
        spec = obj.get('spec')
        if not isinstance(spec, dict):
            return [field.required('spec')]
        errs += super().validate(obj, old)
        containers = spec.get('containers')
        if not containers:
            errs.append(field.required('spec.containers'))
        names = set()
        for group in ('initContainers', 'containers'):
            for i, c in enumerate(spec.get(group) or []):
                if not isinstance(c, dict):
                    continue
                p = field.index('spec.' + group, i)
                n = c.get('name')
                if not n:
                    errs.append(field.required(p + '.name'))
                else:
                    for msg in meta.dns1123_label_errors(n):
                        errs.append(field.invalid(p + '.name', n, msg))
                    if n in names:
                        errs.append(field.duplicate(p + '.name', n))
                    names.add(n)
                if not c.get('image') and group == 'containers':
                    errs.append(field.required(p + '.image'))
        rp = spec.get('restartPolicy')
        if rp not in (None, 'Always', 'OnFailure', 'Never'):
            errs.append(field.not_supported('spec.restartPolicy', rp,
                                            ['Always', 'OnFailure', 'Never']))
        return errs

    _MUTABLE_MSG = ('pod updates may not change fields other than `spec.containers[*].image`,'
                    '`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,'
                    '`spec.tolerations` (only additions to existing tolerations),'
                    '`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was '
                    'previously negative)')

    def validate_update(self, obj, old):
        def strip(spec):
            s = jcopy(spec)
            for group in ('containers', 'initContainers'):
                for c in s.get(group) or []:
                    c.pop('image', None)
            s.pop('activeDeadlineSeconds', None)
            s.pop('tolerations', None)
            return s
        if strip(obj.get('spec') or {}) != strip(old.get('spec') or {}):
            return [field.forbidden('spec', self._MUTABLE_MSG)]
        return []

    def field_attrs(self, obj):
        a = super().field_attrs(obj)
        spec, status = obj.get('spec') or {}, obj.get('status') or {}
        a.update({
            'spec.nodeName': spec.get('nodeName', ''),
            'spec.restartPolicy': spec.get('restartPolicy', ''),
            'spec.schedulerName': spec.get('schedulerName', ''),
            'spec.serviceAccountName': spec.get('serviceAccountName', ''),
            'spec.hostNetwork': 'true' if spec.get('hostNetwork') else 'false',
            'status.phase': status.get('phase', ''),
            'status.podIP': status.get('podIP', ''),
            'status.nominatedNodeName': status.get('nominatedNodeName', ''),
        })
        return a


_SECRET_KEY = re.compile(r'^[-._a-zA-Z0-9]+$')


class SecretResource(Resource):
    def __init__(self):
        props = dict(_ROOT_PROPS)
        props.update({'data': _STRMAP, 'stringData': _STRMAP, 'type': _STR,
                      'immutable': {'type': 'boolean'}})
        super().__init__('secrets', 'Secret', schema_={'type': 'object', 'properties': props})

    def default(self, obj):
        super().default(obj)
        obj.setdefault('type', 'Opaque')
        # stringData is write-only: merged into data, never stored.
        sd = obj.pop('stringData', None)
        if isinstance(sd, dict):
            data = obj.setdefault('data', {})
            for k, v in sd.items():
                if isinstance(v, str):
                    data[k] = base64.b64encode(v.encode()).decode()

    def validate(self, obj, old):
        errs = super().validate(obj, old)
        total = 0
        for k, v in (obj.get('data') or {}).items():
            if not _SECRET_KEY.match(k):
                errs.append(field.invalid(field.key('data', k), k,
                                          "a valid config key must consist of alphanumeric "
                                          "characters, '-', '_' or '.' (e.g. 'key.name',  or "
                                          "'KEY_NAME',  or 'key-name', regex used for validation "
                                          "is '[-._a-zA-Z0-9]+')"))
            if isinstance(v, str):
                try:
                    total += len(base64.b64decode(v, validate=True))
                except ValueError:
                    errs.append(field.invalid(field.key('data', k), '<secret contents redacted>',
                                              'illegal base64 data'))
        if total > 1024 * 1024:
            errs.append(field.too_long('data', '', 1024 * 1024))
        return errs

    def validate_update(self, obj, old):
        errs = []
        if obj.get('type') != old.get('type'):
            errs.append(field.invalid('type', obj.get('type'), 'field is immutable'))
        if old.get('immutable') is True:
            if obj.get('data') != old.get('data'):
                errs.append(field.forbidden('data', 'field is immutable when `immutable` is set'))
            if obj.get('immutable') is not True:
                errs.append(field.forbidden('immutable',
                                            'field is immutable when `immutable` is set'))
        return errs

    def field_attrs(self, obj):
        a = super().field_attrs(obj)
        a['type'] = obj.get('type', '')
        return a


class EventResource(Resource):
    short_names = ('ev',)

    def __init__(self):
        props = dict(_ROOT_PROPS)
        props.update({k: _STR for k in ('reason', 'message', 'type', 'action',
                                        'reportingComponent', 'reportingInstance',
                                        'firstTimestamp', 'lastTimestamp', 'eventTime')})
        props.update({'involvedObject': _open(), 'related': _open(), 'source': _open(),
                      'series': _open(), 'count': {'type': 'integer'}})
        super().__init__('events', 'Event', schema_={'type': 'object', 'properties': props})

    def name_errors(self, name):
        return meta.path_segment_errors(name)

    def validate(self, obj, old):
        errs = super().validate(obj, old)
        io = obj.get('involvedObject') or {}
        ns = obj.get('metadata', {}).get('namespace', '')
        if io.get('namespace') and io.get('namespace') != ns:
            errs.append(field.invalid('involvedObject.namespace', io.get('namespace'),
                                      'does not match event.namespace'))
        if obj.get('type') not in (None, 'Normal', 'Warning'):
            errs.append(field.not_supported('type', obj.get('type'), ['Normal', 'Warning']))
        return errs

    def field_attrs(self, obj):
        a = super().field_attrs(obj)
        io = obj.get('involvedObject') or {}
        for k in ('kind', 'namespace', 'name', 'uid', 'apiVersion', 'resourceVersion',
                  'fieldPath'):
            a['involvedObject.' + k] = io.get(k, '')
        a['reason'] = obj.get('reason', '')
        a['reportingComponent'] = obj.get('reportingComponent', '')
        a['source'] = (obj.get('source') or {}).get('component', '')
        a['type'] = obj.get('type', '')
        return a


class NamespaceResource(Resource):
    namespaced = False
    subresources = ('status',)
    return_deleted_object = True
    short_names = ('ns',)

    def __init__(self):
        props = dict(_ROOT_PROPS)
        props.update({'spec': _open({'finalizers': {'type': 'array', 'items': _STR}}),
                      'status': _open()})
        super().__init__('namespaces', 'Namespace',
                         schema_={'type': 'object', 'properties': props})

    def name_errors(self, name):
        return meta.dns1123_label_errors(name)

    def default(self, obj):
        super().default(obj)
        obj.setdefault('spec', {}).setdefault('finalizers', ['kubernetes'])
        labels = obj['metadata'].setdefault('labels', {})
        if obj['metadata'].get('name'):
            labels['kubernetes.io/metadata.name'] = obj['metadata']['name']

    def prepare_for_create(self, obj):
        obj['status'] = {'phase': 'Active'}

    def field_attrs(self, obj):
        a = super().field_attrs(obj)
        a['status.phase'] = (obj.get('status') or {}).get('phase', '')
        return a


class ServiceResource(Resource):
    subresources = ('status',)
    short_names = ('svc',)

    def __init__(self):
        props = dict(_ROOT_PROPS)
        props.update({'spec': _open(), 'status': _open()})
        super().__init__('services', 'Service', schema_={'type': 'object', 'properties': props})

    def name_errors(self, name):
        return meta.dns1035_label_errors(name)

    def default(self, obj):
        super().default(obj)
        spec = obj.setdefault('spec', {})
        spec.setdefault('type', 'ClusterIP')
        spec.setdefault('sessionAffinity', 'None')
        for p in spec.get('ports') or []:
            p.setdefault('protocol', 'TCP')
            p.setdefault('targetPort', p.get('port'))

    def prepare_for_create(self, obj):
        obj['status'] = {'loadBalancer': {}}


def pod_spec_schema(resources):
    """PodSpec as the Sandbox CRD embeds it (spec.podTemplate.spec): the
    generated core/v1 schema, reused for Pods."""
    for r in resources:
        if r.kind == 'Sandbox':
            return r.schema['properties']['spec']['properties']['podTemplate']['properties']['spec']
    return _open()


class Registry:
    """Every served resource, by (group, version, plural) and by kind."""

    def __init__(self, crd_dir):
        crs = load_crds(crd_dir)
        core = [PodResource(pod_spec_schema(crs)), SecretResource(), EventResource(),
                NamespaceResource(), ServiceResource()]
        self.all = core + crs
        self.by_path = {(r.group, r.version, r.plural): r for r in self.all}
        self.by_kind = {(r.group, r.kind): r for r in self.all}

    def lookup(self, group, version, plural):
        return self.by_path.get((group, version, plural))

    def by_api_version_kind(self, api_version, kind):
        group = api_version.rpartition('/')[0] if '/' in api_version else ''
        return self.by_kind.get((group, kind))

    def groups(self):
        seen = []
        for r in self.all:
            if r.group and r.group not in seen:
                seen.append(r.group)
        return seen
