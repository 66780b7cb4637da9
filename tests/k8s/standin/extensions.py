"""The agent-sandbox extension controllers: SandboxTemplate, SandboxWarmPool
and SandboxClaim (extensions/controllers/*.go of kubernetes-sigs/agent-sandbox,
sections 2.2-2.4 of the research note). They run on the Cluster's worker,
one work item at a time, and act on the store directly, as the core
controllers do.

Modelled: the template's hash label; the pool's members (generateName
"<pool>-", labels, controller ownerRef, a deep copy of the blueprint with
the secure defaults), replacement of adopted or deleted members, excess
members deleted unready-first then newest-first, the pool's status; the
claim's binding (its own Sandbox, the annotation, a Sandbox named after it),
the warm adoption (claim annotation, then the Sandbox's labels, owner and
pod metadata rewritten) after a configurable bind delay, the 2 s wait for a
candidate with pod IPs before the cold fallback, the cold create named
after the claim, env and volume-claim-template policies, the
additionalPodMetadata rules, expiry with each shutdownPolicy, and the Ready
condition's reasons.

Not modelled: slow-start batches (missing members are created at once),
node-spread ordering (candidates are FIFO), the readiness grace period,
the Recreate update strategy, NetworkPolicies, the Pod metadata rewrite
after adoption, and the metrics annotations.
"""
import json
import re
import time

from . import errors
from .util import jcopy, name_hash, now_rfc3339, parse_rfc3339

EXT_GROUP = 'extensions.agents.x-k8s.io'
EXT_API = EXT_GROUP + '/v1beta1'
WARM_POOL_LABEL = 'agents.x-k8s.io/warm-pool-sandbox'
TEMPLATE_HASH_LABEL = 'agents.x-k8s.io/sandbox-template-ref-hash'
TEMPLATE_REF_ANN = 'agents.x-k8s.io/sandbox-template-ref'
POD_TEMPLATE_HASH_LABEL = 'agents.x-k8s.io/sandbox-pod-template-hash'
BLUEPRINT_HASH_LABEL = 'agents.x-k8s.io/sandbox-template-hash'
LAUNCH_TYPE_LABEL = 'agents.x-k8s.io/launch-type'
CREATED_BY_LABEL = 'agents.x-k8s.io/created-by'
CLAIM_UID_LABEL = 'agents.x-k8s.io/claim-uid'
SANDBOX_NAME_ANN = 'agents.x-k8s.io/sandbox-name'
POD_NAME_ANN = 'agents.x-k8s.io/pod-name'
SAFE_TO_EVICT_ANN = 'cluster-autoscaler.kubernetes.io/safe-to-evict'
CANDIDATE_IP_GRACE_S = 2.0
CANDIDATE_RETRY_S = 0.5
NOT_FOUND_REQUEUE_S = 60.0
# The claim Ready reasons after which the claim never becomes Ready.
TERMINAL_REASONS = ('InvalidMetadata', 'EnvVarsInjectionRejected',
                    'VolumeClaimTemplatesError', 'ClaimExpired', 'SandboxExpired')
_LABEL_VALUE = re.compile(r'^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$')


def _ref_to(obj, kind):
    md = obj['metadata']
    return {'apiVersion': EXT_API, 'kind': kind, 'name': md['name'], 'uid': md['uid'],
            'controller': True, 'blockOwnerDeletion': True}


def _controller(obj):
    for o in obj['metadata'].get('ownerReferences') or []:
        if o.get('controller'):
            return o
    return None


def _ready_condition(obj):
    return next((c for c in (obj.get('status') or {}).get('conditions') or []
                 if c.get('type') == 'Ready'), None)


def _is_ready(obj):
    c = _ready_condition(obj)
    return c is not None and c.get('status') == 'True'


def _domain_of(key):
    prefix, slash, _ = key.rpartition('/')
    return prefix if slash else ''


def _in_domain(domain, parent):
    return domain == parent or domain.endswith('.' + parent)


def metadata_errors(apm, allowed_domains):
    """The controller's validation of additionalPodMetadata: label keys need
    a domain in the allowlist (its allowed-label-domains file), the label
    app=sandbox-router is forbidden, annotation keys of the Kubernetes and
    agent-sandbox domains are refused (except safe-to-evict), label values
    must be valid."""
    errs = []
    for k, v in sorted(((apm or {}).get('labels') or {}).items()):
        if k == 'app' and v == 'sandbox-router':
            errs.append('label "app=sandbox-router" is reserved')
        elif not any(_in_domain(_domain_of(k), d) for d in allowed_domains):
            errs.append('label key "%s" must have a domain prefix in the allowed list [%s]'
                        % (k, ', '.join(allowed_domains)))
        elif len(v) > 63 or not _LABEL_VALUE.match(v):
            errs.append('label "%s" has an invalid value "%s"' % (k, v))
    for k in sorted(((apm or {}).get('annotations') or {})):
        d = _domain_of(k)
        if k != SAFE_TO_EVICT_ANN and any(_in_domain(d, p) for p in
                                          ('kubernetes.io', 'k8s.io', 'agents.x-k8s.io')):
            errs.append('annotation key "%s" is in a reserved domain' % k)
    return errs


class Extensions:
    def __init__(self, cluster):
        self.c = cluster
        reg = cluster.registry
        self.templates = reg.by_kind.get((EXT_GROUP, 'SandboxTemplate'))
        self.pools = reg.by_kind.get((EXT_GROUP, 'SandboxWarmPool'))
        self.claims = reg.by_kind.get((EXT_GROUP, 'SandboxClaim'))
        self.enabled = None not in (self.templates, self.pools, self.claims,
                                    cluster.sandboxes)
        self.waiting = {}     # (namespace, pool) -> names of unbound claims
        self.members_of = {}  # pool uid -> names of the Sandboxes it controls

    # --- triggers (under the store lock: only queue work) -------------------

    def on_change(self, ch):
        if not self.enabled:
            return
        kind = ch.res.kind
        if kind == 'SandboxTemplate':
            self.c.enqueue(('template', ch.ns, ch.name))
            for p in self.c.store.objects[self.pools].values():
                if (p['spec'].get('sandboxTemplateRef') or {}).get('name') == ch.name and \
                        p['metadata'].get('namespace') == ch.ns:
                    self.c.enqueue(('pool', ch.ns, p['metadata']['name']))
        elif kind == 'SandboxWarmPool':
            self.c.enqueue(('pool', ch.ns, ch.name))
            self._enqueue_claims(ch.ns, pool=ch.name)
        elif kind == 'SandboxClaim':
            key = (ch.ns, ((ch.obj.get('spec') or {}).get('warmPoolRef') or {}).get('name'))
            bound = ((ch.obj.get('status') or {}).get('sandbox') or {}).get('name')
            if ch.type == 'DELETED' or bound:
                self.waiting.get(key, set()).discard(ch.name)
            else:
                self.waiting.setdefault(key, set()).add(ch.name)
            if ch.type == 'DELETED':
                self.c.claim_seen.pop(ch.obj['metadata'].get('uid'), None)
            else:
                self.c.enqueue(('claim', ch.ns, ch.name))
        elif kind == 'Sandbox':
            # The index _members reads: the pool that controls the object now.
            for obj, now in ((ch.prev, False), (ch.obj, ch.type != 'DELETED')):
                ref = _controller(obj) if obj else None
                if ref is not None and ref.get('kind') == 'SandboxWarmPool':
                    names = self.members_of.setdefault(ref.get('uid'), set())
                    if now:
                        names.add(ch.name)
                    else:
                        names.discard(ch.name)
            for obj in (ch.obj, ch.prev):
                ref = _controller(obj) if obj else None
                if ref is None:
                    continue
                if ref.get('kind') == 'SandboxWarmPool':
                    self.c.enqueue(('pool', ch.ns, ref.get('name')))
                    # A member got pod IPs or Ready: waiting claims may take it.
                    self._enqueue_claims(ch.ns, pool=ref.get('name'))
                elif ref.get('kind') == 'SandboxClaim':
                    self.c.enqueue(('claim', ch.ns, ref.get('name')))

    def _enqueue_claims(self, ns, pool):
        """The claims of pool still waiting for a Sandbox (the index kept
        by on_change: scanning every claim per member change is too slow
        at tens of claims a second)."""
        for name in list(self.waiting.get((ns, pool), ())):
            self.c.enqueue(('claim', ns, name))

    def reconcile(self, what, ns, name):
        if not self.enabled or not self.c.config.get('extensions', True):
            return
        if what == 'template':
            self.reconcile_template(ns, name)
        elif what == 'pool':
            self.reconcile_pool(ns, name)
        elif what == 'claim':
            self.reconcile_claim(ns, name)

    # --- SandboxTemplate ----------------------------------------------------

    def reconcile_template(self, ns, name):
        t = self.c._get(self.templates, ns, name)
        if t is None or t['metadata'].get('deletionTimestamp'):
            return
        h = name_hash(name)
        if (t['metadata'].get('labels') or {}).get(TEMPLATE_HASH_LABEL) != h:
            self.c.store.patch(self.templates, ns, name, 'application/merge-patch+json',
                               {'metadata': {'labels': {TEMPLATE_HASH_LABEL: h}}})

    def _blueprint(self, template):
        """A deep copy of the template's blueprint with the secure defaults
        (ApplySandboxSecureDefaults)."""
        spec = template['spec']
        bp = {'podTemplate': jcopy(spec['podTemplate'])}
        for k in ('volumeClaimTemplates', 'service'):
            if k in spec:
                bp[k] = jcopy(spec[k])
        pod = bp['podTemplate'].setdefault('spec', {})
        pod.setdefault('automountServiceAccountToken', False)
        if spec.get('networkPolicyManagement', 'Managed') == 'Managed' and \
                spec.get('networkPolicy') is None and not pod.get('dnsPolicy'):
            pod['dnsPolicy'] = 'None'
            pod['dnsConfig'] = {'nameservers': ['8.8.8.8', '1.1.1.1']}
        return bp

    # --- SandboxWarmPool ----------------------------------------------------

    def _members(self, pool):
        """Copies of the pool's members, oldest first. Only they are
        copied: a namespace holds many more Sandboxes than one pool."""
        ns, uid = pool['metadata']['namespace'], pool['metadata']['uid']
        h = name_hash(pool['metadata']['name'])
        store = self.c.store
        out = []
        with store.lock:
            for name in self.members_of.get(uid, ()):
                sb = store.peek(self.c.sandboxes, ns, name)
                if sb is not None and \
                        (sb['metadata'].get('labels') or {}).get(WARM_POOL_LABEL) == h and \
                        (_controller(sb) or {}).get('uid') == uid:
                    out.append(jcopy(sb))
        out.sort(key=lambda m: (m['metadata']['creationTimestamp'], m['metadata']['name']))
        return out

    def reconcile_pool(self, ns, name):
        pool = self.c._get(self.pools, ns, name)
        if pool is None or pool['metadata'].get('deletionTimestamp'):
            return
        spec = pool['spec']
        tname = (spec.get('sandboxTemplateRef') or {}).get('name', '')
        template = self.c._get(self.templates, ns, tname) if tname else None
        members = [m for m in self._members(pool)
                   if not m['metadata'].get('deletionTimestamp')]
        want = spec.get('replicas', 1)
        if template is not None:
            for _ in range(max(0, want - len(members))):
                members.append(self._create_member(pool, template)[0])
        if len(members) > want:
            # Unready first, then newest first.
            members.sort(key=lambda m: (_is_ready(m), m['metadata']['creationTimestamp'],
                                        m['metadata']['name']))
            extra, members = members[:len(members) - want], members[len(members) - want:]
            for m in extra:
                try:
                    self.c.store.delete(self.c.sandboxes, ns, m['metadata']['name'],
                                        {'propagationPolicy': 'Background'})
                except errors.ApiError:
                    pass
        status = {'replicas': len(members),
                  'readyReplicas': len([m for m in members if _is_ready(m)]),
                  'selector': '%s=%s' % (WARM_POOL_LABEL, name_hash(name)),
                  'observedGeneration': pool['metadata'].get('generation', 0)}
        if pool.get('status') != status:
            self.c.store.patch(self.pools, ns, name, 'application/merge-patch+json',
                               {'status': status}, subresource='status')

    def _create_member(self, pool, template):
        pname, tname = pool['metadata']['name'], template['metadata']['name']
        bp = self._blueprint(template)
        bhash = name_hash(_canonical(bp))
        phash = name_hash(_canonical(bp['podTemplate']))
        labels = {WARM_POOL_LABEL: name_hash(pname), TEMPLATE_HASH_LABEL: name_hash(tname),
                  LAUNCH_TYPE_LABEL: 'warm', POD_TEMPLATE_HASH_LABEL: phash,
                  BLUEPRINT_HASH_LABEL: bhash, CREATED_BY_LABEL: 'controller'}
        pmeta = bp['podTemplate'].setdefault('metadata', {})
        pmeta.setdefault('labels', {}).update({
            WARM_POOL_LABEL: name_hash(pname), TEMPLATE_HASH_LABEL: name_hash(tname),
            POD_TEMPLATE_HASH_LABEL: phash, BLUEPRINT_HASH_LABEL: bhash})
        pmeta.setdefault('annotations', {})[SAFE_TO_EVICT_ANN] = 'true'
        body = {'apiVersion': 'agents.x-k8s.io/v1beta1', 'kind': 'Sandbox', 'metadata': {
            'generateName': pname + '-', 'namespace': pool['metadata']['namespace'],
            'labels': labels, 'annotations': {TEMPLATE_REF_ANN: tname},
            'ownerReferences': [_ref_to(pool, 'SandboxWarmPool')]}, 'spec': bp}
        return self.c.store.create(self.c.sandboxes, pool['metadata']['namespace'], body)

    # --- SandboxClaim -------------------------------------------------------

    def reconcile_claim(self, ns, name):
        claim = self.c._get(self.claims, ns, name)
        if claim is None or claim['metadata'].get('deletionTimestamp'):
            return
        spec = claim.get('spec') or {}
        if self._expired(claim, ns, name):
            return
        sb = self._bound(claim, ns, name)
        if isinstance(sb, str):
            self._set_status(claim, None, 'ReconcilerError', sb)
            return
        if sb is None:
            sb = self._allocate(claim, ns, name, spec)
            if sb is None:
                return   # a status was written, or a retry is queued
        self._set_status(claim, sb)

    def _expired(self, claim, ns, name):
        lc = (claim.get('spec') or {}).get('lifecycle') or {}
        when = None
        if lc.get('shutdownTime'):
            try:
                when = parse_rfc3339(lc['shutdownTime'])
            except ValueError:
                when = None
        sb_name = ((claim.get('status') or {}).get('sandbox') or {}).get('name')
        sb = self.c._get(self.c.sandboxes, ns, sb_name) if sb_name else None
        ttl = lc.get('ttlSecondsAfterFinished')
        if ttl is not None and sb is not None:
            fin = next((c for c in (sb.get('status') or {}).get('conditions') or []
                        if c.get('type') == 'Finished' and c.get('status') == 'True'), None)
            if fin is not None:
                t = parse_rfc3339(fin['lastTransitionTime']) + ttl
                when = t if when is None else min(when, t)
        if when is None:
            return False
        now = time.time()
        if now < when:
            self.c.after(when - now + 0.01, ('claim', ns, name))
            return False
        self._write_conditions(claim, {'type': 'Ready', 'status': 'False',
                                       'reason': 'ClaimExpired',
                                       'message': 'Claim expired. Sandbox cleanup initiated.'},
                               None)
        policy = lc.get('shutdownPolicy', 'Retain')
        if policy in ('Delete', 'DeleteForeground'):
            self.c.store.delete(self.claims, ns, name, {
                'propagationPolicy': 'Foreground' if policy == 'DeleteForeground'
                else 'Background'})
        elif sb is not None and (_controller(sb) or {}).get('uid') == claim['metadata']['uid'] \
                and not sb['metadata'].get('deletionTimestamp'):
            self.c.store.delete(self.c.sandboxes, ns, sb_name, {'propagationPolicy': 'Background'})
        self.c.emit(claim, 'Normal', 'ClaimExpired', 'Claim expired', 'sandboxclaim-controller')
        return True

    def _controls(self, claim, sb):
        return sb is not None and (_controller(sb) or {}).get('uid') == claim['metadata']['uid']

    def _bound(self, claim, ns, name):
        """The claim's Sandbox, None when it has none yet, or an error text."""
        st_name = ((claim.get('status') or {}).get('sandbox') or {}).get('name')
        if st_name:
            sb = self.c._get(self.c.sandboxes, ns, st_name)
            if self._controls(claim, sb):
                return sb
        ann = (claim['metadata'].get('annotations') or {}).get(SANDBOX_NAME_ANN)
        if ann:
            sb = self.c._get(self.c.sandboxes, ns, ann)
            if self._controls(claim, sb):
                return sb
            if sb is not None and (_controller(sb) or {}).get('kind') == 'SandboxWarmPool':
                return self._adopt(claim, sb)
            self._put_claim_annotation(claim, None)   # stale: dropped
        sb = self.c._get(self.c.sandboxes, ns, name)
        if sb is not None:
            if self._controls(claim, sb):
                return sb
            return ('sandbox "%s" is not controlled by claim "%s". Please use a different '
                    'claim name or delete the sandbox manually' % (name, name))
        return None

    def _allocate(self, claim, ns, name, spec):
        errs = metadata_errors(spec.get('additionalPodMetadata'),
                               self.c.config.get('allowed_label_domains') or [])
        if errs:
            self._set_status(claim, None, 'InvalidMetadata', '; '.join(errs))
            return None
        pname = (spec.get('warmPoolRef') or {}).get('name', '')
        pool = self.c._get(self.pools, ns, pname)
        if pool is None:
            self._set_status(claim, None, 'WarmPoolNotFound',
                             'SandboxWarmPool "%s" not found' % pname)
            self.c.after(NOT_FOUND_REQUEUE_S, ('claim', ns, name))
            return None
        tname = (pool['spec'].get('sandboxTemplateRef') or {}).get('name', '')
        template = self.c._get(self.templates, ns, tname)
        if template is None:
            self._set_status(claim, None, 'TemplateNotFound',
                             'SandboxTemplate "%s" not found' % tname)
            self.c.after(NOT_FOUND_REQUEUE_S, ('claim', ns, name))
            return None
        tspec = template['spec']
        if spec.get('env') and tspec.get('envVarsInjectionPolicy', 'Disallowed') == 'Disallowed':
            self._set_status(claim, None, 'EnvVarsInjectionRejected',
                             'environment variable injection is disallowed by the template '
                             '"%s"' % tname)
            return None
        if spec.get('volumeClaimTemplates'):
            vnames = [(v.get('metadata') or {}).get('name', '')
                      for v in spec['volumeClaimTemplates']]
            why = None
            if tspec.get('volumeClaimTemplatesPolicy', 'Disallowed') == 'Disallowed':
                why = 'volume claim templates are disallowed by the template "%s"' % tname
            elif '' in vnames or len(set(vnames)) != len(vnames):
                why = 'volume claim template names must be non-empty and unique'
            if why:
                self._set_status(claim, None, 'VolumeClaimTemplatesError', why)
                return None
        if not spec.get('env') and not spec.get('volumeClaimTemplates'):
            created_mono = self._first_seen(claim)
            now = time.monotonic()
            delay = created_mono + self.c.config.get('bind_delay_ms', 0) / 1000.0 - now
            if delay > 0:
                self.c.after(delay, ('claim', ns, name))
                return None
            cand = self._candidate(pool)
            if cand is not None:
                return self._adopt(claim, cand, template)
            if now - created_mono < CANDIDATE_IP_GRACE_S and self._members(pool):
                self.c.after(CANDIDATE_RETRY_S, ('claim', ns, name))
                return None
        return self._cold(claim, template, spec)

    def _first_seen(self, claim):
        """When this controller first saw the claim (monotonic): the bind
        delay and the candidate grace period count from there, since
        creationTimestamp has whole seconds only."""
        uid = claim['metadata']['uid']
        return self.c.claim_seen.setdefault(uid, time.monotonic())

    def _candidate(self, pool):
        ok = [m for m in self._members(pool)
              if not m['metadata'].get('deletionTimestamp') and
              TEMPLATE_HASH_LABEL in (m['metadata'].get('labels') or {}) and
              (m.get('status') or {}).get('podIPs')]
        ok.sort(key=lambda m: (not _is_ready(m), m['metadata']['creationTimestamp'],
                               m['metadata']['name']))
        return ok[0] if ok else None

    def _put_claim_annotation(self, claim, value):
        md = claim['metadata']
        anns = dict(md.get('annotations') or {})
        if value is None:
            anns.pop(SANDBOX_NAME_ANN, None)
        else:
            anns[SANDBOX_NAME_ANN] = value
        body = jcopy(claim)
        body['metadata']['annotations'] = anns
        updated, _ = self.c.store.update(self.claims, md['namespace'], md['name'], body)
        claim['metadata'] = updated['metadata']

    def _pod_metadata(self, claim, template, tname):
        tmeta = (template['spec'].get('podTemplate') or {}).get('metadata') or {}
        labels = dict(tmeta.get('labels') or {})
        annotations = dict(tmeta.get('annotations') or {})
        labels.update({CLAIM_UID_LABEL: claim['metadata']['uid'],
                       TEMPLATE_HASH_LABEL: name_hash(tname)})
        apm = (claim.get('spec') or {}).get('additionalPodMetadata') or {}
        labels.update(apm.get('labels') or {})
        annotations.update(apm.get('annotations') or {})
        out = {'labels': labels}
        if annotations:
            out['annotations'] = annotations
        return out

    def _adopt(self, claim, sb, template=None):
        """The warm adoption: the claim's annotation first (a PUT with its
        resourceVersion), then the Sandbox rewritten under an optimistic
        lock. A conflict is benign: the next pass retries."""
        md = claim['metadata']
        ns, sname = md['namespace'], sb['metadata']['name']
        tname = (sb['metadata'].get('annotations') or {}).get(TEMPLATE_REF_ANN, '')
        if template is None:
            template = self.c._get(self.templates, ns, tname)
            if template is None:
                return None
        try:
            if (md.get('annotations') or {}).get(SANDBOX_NAME_ANN) != sname:
                self._put_claim_annotation(claim, sname)
            labels = dict(sb['metadata'].get('labels') or {})
            for k in (WARM_POOL_LABEL, POD_TEMPLATE_HASH_LABEL, BLUEPRINT_HASH_LABEL):
                labels.pop(k, None)
            labels.update({LAUNCH_TYPE_LABEL: 'warm', CLAIM_UID_LABEL: md['uid'],
                           TEMPLATE_HASH_LABEL: name_hash(tname),
                           CREATED_BY_LABEL: 'controller'})
            # spec.podTemplate.metadata is set to exactly the new pod
            # metadata: keys of the warm one that it lacks are removed.
            pm = self._pod_metadata(claim, template, tname)
            old_pm = (sb['spec'].get('podTemplate') or {}).get('metadata') or {}
            pm_patch = {k: _replace_map(old_pm.get(k), pm.get(k))
                        for k in ('labels', 'annotations')}
            patch = {'metadata': {
                'resourceVersion': sb['metadata']['resourceVersion'],
                'labels': _replace_map(sb['metadata'].get('labels'), labels),
                'ownerReferences': [_ref_to(claim, 'SandboxClaim')],
                'annotations': {POD_NAME_ANN: sname}},
                'spec': {'podTemplate': {'metadata': pm_patch}}}
            adopted, _, _ = self.c.store.patch(self.c.sandboxes, ns, sname,
                                               'application/merge-patch+json', patch)
        except errors.ApiError as e:
            if e.code not in (404, 409):
                raise
            self._set_status(claim, None, 'AdoptionConflict',
                             'sandbox "%s" was taken or changed; retrying' % sname)
            self.c.after(0.05, ('claim', ns, md['name']))
            return None
        self.c.emit(claim, 'Normal', 'SandboxAdopted', 'Adopted warm pool Sandbox "%s"' % sname,
                    'sandboxclaim-controller')
        return adopted

    def _cold(self, claim, template, spec):
        md = claim['metadata']
        ns, name, tname = md['namespace'], md['name'], template['metadata']['name']
        bp = self._blueprint(template)
        bp['podTemplate']['metadata'] = self._pod_metadata(claim, template, tname)
        if spec.get('volumeClaimTemplates'):
            mine = {(v.get('metadata') or {}).get('name') for v in spec['volumeClaimTemplates']}
            bp['volumeClaimTemplates'] = [
                v for v in bp.get('volumeClaimTemplates') or []
                if (v.get('metadata') or {}).get('name') not in mine] + \
                jcopy(spec['volumeClaimTemplates'])
        containers = bp['podTemplate'].get('spec', {}).get('containers') or []
        for e in spec.get('env') or []:
            target = next((c for c in containers if c.get('name') == e.get('containerName')),
                          None) if e.get('containerName') else (containers[0] if containers
                                                                else None)
            if target is None:
                self._set_status(claim, None, 'ReconcilerError',
                                 'container "%s" not found in the template'
                                 % e.get('containerName'))
                return None
            env = [x for x in target.get('env') or [] if x.get('name') != e['name']]
            env.append({'name': e['name'], 'value': e['value']})
            target['env'] = env
        labels = {CLAIM_UID_LABEL: md['uid'], LAUNCH_TYPE_LABEL: 'cold',
                  TEMPLATE_HASH_LABEL: name_hash(tname)}
        if (md.get('labels') or {}).get(CREATED_BY_LABEL):
            labels[CREATED_BY_LABEL] = md['labels'][CREATED_BY_LABEL]
        body = {'apiVersion': 'agents.x-k8s.io/v1beta1', 'kind': 'Sandbox', 'metadata': {
            'name': name, 'namespace': ns, 'labels': labels,
            'annotations': {TEMPLATE_REF_ANN: tname},
            'ownerReferences': [_ref_to(claim, 'SandboxClaim')]}, 'spec': bp}
        try:
            sb, _ = self.c.store.create(self.c.sandboxes, ns, body)
        except errors.ApiError as e:
            if e.reason != 'AlreadyExists':
                raise
            self._set_status(claim, None, 'SandboxCreatePending',
                             'sandbox "%s" already exists; waiting for the cache' % name)
            self.c.after(0.2, ('claim', ns, name))
            return None
        self.c.emit(claim, 'Normal', 'SandboxProvisioned', 'Created Sandbox "%s"' % name,
                    'sandboxclaim-controller')
        return sb

    # --- claim status -------------------------------------------------------

    def _set_status(self, claim, sb, reason=None, message=''):
        if sb is not None:
            fwd = _ready_condition(sb)
            if fwd is None:
                ready = {'type': 'Ready', 'status': 'False', 'reason': 'SandboxNotReady',
                         'message': 'Sandbox "%s" has no Ready condition yet'
                         % sb['metadata']['name']}
            else:
                ready = {k: fwd.get(k, '') for k in ('type', 'status', 'reason', 'message')}
            box = {'name': sb['metadata']['name']}
            ips = (sb.get('status') or {}).get('podIPs')
            if ips:
                box['podIPs'] = list(ips)
            finished = next((c for c in (sb.get('status') or {}).get('conditions') or []
                             if c.get('type') == 'Finished'), None)
            self._write_conditions(claim, ready, box, finished)
            return
        self._write_conditions(claim, {'type': 'Ready', 'status': 'False',
                                       'reason': reason or 'SandboxMissing',
                                       'message': message}, None)

    def _write_conditions(self, claim, ready, box, finished=None):
        old = claim.get('status') or {}
        conds = [dict(c) for c in old.get('conditions') or []
                 if c.get('type') not in ('Ready', 'Finished')]
        gen = claim['metadata'].get('generation', 0)
        for new in (ready, finished):
            if new is None:
                continue
            prev = next((c for c in old.get('conditions') or [] if c['type'] == new['type']),
                        None)
            c = {'type': new['type'], 'status': new['status'], 'reason': new.get('reason', ''),
                 'message': new.get('message', ''), 'observedGeneration': gen,
                 'lastTransitionTime': prev['lastTransitionTime']
                 if prev and prev['status'] == new['status'] else now_rfc3339()}
            conds.append(c)
        conds.sort(key=lambda c: c['type'])
        status = {'conditions': conds}
        if box is not None:
            status['sandbox'] = box
        elif old.get('sandbox'):
            status['sandbox'] = old['sandbox']   # cleared only on a clean "no sandbox"
        if status == old:
            return
        patch = {'metadata': {'resourceVersion': claim['metadata']['resourceVersion']},
                 'status': {'conditions': conds, 'sandbox': status.get('sandbox')}}
        try:
            self.c.store.patch(self.claims, claim['metadata']['namespace'],
                               claim['metadata']['name'], 'application/merge-patch+json',
                               patch, subresource='status')
        except errors.ApiError as e:
            if e.code != 409:
                raise
            # Dropped; the change that made the claim stale queues it again.


def _canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(',', ':'))


def _replace_map(old, new):
    """A merge patch turning the string map old into new."""
    out = {k: None for k in old or {} if k not in (new or {})}
    out.update(new or {})
    return out or None
