"""The cluster behind the API: the agent-sandbox Sandbox controller, a
scheduler and kubelet for pods, the garbage collector and the namespace
controller. They act on the store directly (never through HTTP, so they do
not appear in the request log), one work item at a time on one thread, with
timers for delays and expiry, level-triggered as controllers are.

Sandbox behaviour follows controllers/sandbox_controller.go of
kubernetes-sigs/agent-sandbox (section 2.1 of the research note): the pod
named after the Sandbox, the condition types, reasons and messages, the
status merge without a resourceVersion, expiry and suspension.
"""
import heapq
import re
import threading
import time

from . import errors
from .extensions import Extensions
from .util import jcopy, name_hash, now_rfc3339, parse_rfc3339, rfc3339

SANDBOX_LABEL = 'agents.x-k8s.io/sandbox-name-hash'
POD_NAME_ANN = 'agents.x-k8s.io/pod-name'
RESERVED_PREFIXES = ('agents.x-k8s.io/', 'extensions.agents.x-k8s.io/')
NODE_NAME = 'standin-node-1'
NODE_IP = '10.0.0.10'

DEFAULT_CONFIG = {
    'controllers': True,           # run the sandbox controller
    'kubelet': True,               # schedule and start pods
    'gc': True,                    # garbage-collect dependents
    'ready_delay_ms': 100,         # pod creation -> Running and Ready
    'schedule_delay_ms': 0,        # pod creation -> bound to the node
    'pod_termination_ms': 50,      # pod deletion -> removed (containers stopped)
    'fail_image': None,            # regex: images whose pull fails (ErrImagePull)
    'crash_image': None,           # regex: images whose container exits 1 (PodFailed)
    'succeed_image': None,         # regex: images whose container exits 0 (PodSucceeded)
    'unschedulable': False,        # every pod stays Pending, Unschedulable
    'unschedulable_selector': None,  # label selector: only matching pods
    'cluster_domain': 'cluster.local',
    'bookmark_interval_ms': 60000,
    'min_request_timeout_s': 1800,
    'history_size': 10000,
    'normal_events': True,         # Scheduled/Pulled/Created/Started events
    'extensions': True,            # run the template, warm pool and claim controllers
    'bind_delay_ms': 0,            # claim first seen -> warm adoption
    'allowed_label_domains': ['sandbox.users.io'],  # claims' pod label keys
}


class Cluster:
    def __init__(self, store, registry, config):
        self.store = store
        self.registry = registry
        self.config = config
        self.sandboxes = registry.by_kind.get(('agents.x-k8s.io', 'Sandbox'))
        self.pods = registry.by_kind[('', 'Pod')]
        self.events = registry.by_kind[('', 'Event')]
        self.services = registry.by_kind[('', 'Service')]
        self.namespaces = registry.by_kind[('', 'Namespace')]
        self.cv = threading.Condition()
        self.queue = []          # keys, in order
        self.queued = set()
        self.timers = []         # heap of (due, seq, key)
        self.seq = 0
        self.pod_started = {}    # pod uid -> monotonic creation time
        self.pod_stage = {}      # pod uid -> last kubelet stage reached
        self.stopping = False
        self.claim_seen = {}     # claim uid -> monotonic time first reconciled
        self.ext = Extensions(self)
        self.thread = threading.Thread(target=self._run, name='cluster', daemon=True)
        store.listeners.append(self._on_change)

    def start(self):
        self.thread.start()

    def stop(self):
        with self.cv:
            self.stopping = True
            self.cv.notify_all()

    # --- queueing -----------------------------------------------------------

    def enqueue(self, key):
        with self.cv:
            if key not in self.queued:
                self.queued.add(key)
                self.queue.append(key)
                self.cv.notify()

    def after(self, seconds, key):
        with self.cv:
            self.seq += 1
            heapq.heappush(self.timers, (time.monotonic() + max(0.0, seconds), self.seq, key))
            self.cv.notify()

    def _on_change(self, ch):
        """Store listener, under the store lock: only queue work."""
        kind = ch.res.kind
        if kind == 'Sandbox':
            self.enqueue(('sandbox', ch.ns, ch.name))
        elif kind == 'Pod':
            if ch.type == 'ADDED':
                # Delays count from the pod's creation, not from when the
                # worker gets to it.
                self.pod_started[ch.obj['metadata']['uid']] = time.monotonic()
            self.enqueue(('pod', ch.ns, ch.name))
            for o in (ch.obj['metadata'].get('ownerReferences') or []):
                if o.get('kind') == 'Sandbox' and o.get('controller'):
                    self.enqueue(('sandbox', ch.ns, o.get('name')))
        elif kind == 'Service':
            self.enqueue(('sandbox', ch.ns, ch.name))
        elif kind == 'Namespace':
            self.enqueue(('namespace', '', ch.name))
        self.ext.on_change(ch)
        self._gc_triggers(ch)
        if ch.type == 'DELETED' and ch.ns:
            self.enqueue(('namespace', '', ch.ns))

    def _run(self):
        while True:
            with self.cv:
                while True:
                    if self.stopping:
                        return
                    now = time.monotonic()
                    while self.timers and self.timers[0][0] <= now:
                        _, _, key = heapq.heappop(self.timers)
                        # A due timer goes first: it is what a delay was for.
                        if key in self.queued:
                            self.queue.remove(key)
                        self.queued.add(key)
                        self.queue.insert(0, key)
                    if self.queue:
                        key = self.queue.pop(0)
                        self.queued.discard(key)
                        break
                    wait = self.timers[0][0] - now if self.timers else None
                    self.cv.wait(wait)
            try:
                self._reconcile(key)
            except errors.ApiError as e:
                if e.code in (404, 409):
                    self.after(0.01, key)   # a racing client write: retry
                else:
                    print('standin: %s: %s' % (key, e.message), flush=True)
            except Exception as e:  # noqa: BLE001 - keep the cluster running
                import traceback
                traceback.print_exc()
                print('standin: %s failed: %r' % (key, e), flush=True)

    def _reconcile(self, key):
        what, ns, name = key[0], key[-2], key[-1]
        if what == 'sandbox':
            if self.config['controllers'] and self.sandboxes is not None:
                self.reconcile_sandbox(ns, name)
        elif what == 'pod':
            if self.config['kubelet']:
                self.reconcile_pod(ns, name)
        elif what == 'gc':
            if self.config['gc']:
                self.collect_garbage(key[1], key[2], ns, name)
        elif what == 'namespace':
            self.reconcile_namespace(name)
        elif what in ('template', 'pool', 'claim'):
            self.ext.reconcile(what, ns, name)

    def _get(self, res, ns, name):
        with self.store.lock:
            o = self.store.peek(res, ns, name)
            return jcopy(o) if o is not None else None

    # --- events -------------------------------------------------------------

    def emit(self, involved, type_, reason, message, component, host=None):
        md = involved['metadata']
        ts = now_rfc3339()
        ev = {'apiVersion': 'v1', 'kind': 'Event', 'metadata': {
            'name': '%s.%x' % (md['name'], time.time_ns()), 'namespace': md.get('namespace')},
            'involvedObject': {'kind': involved['kind'], 'namespace': md.get('namespace'),
                               'name': md['name'], 'uid': md['uid'],
                               'apiVersion': involved['apiVersion'],
                               'resourceVersion': md.get('resourceVersion')},
            'reason': reason, 'message': message, 'type': type_,
            'source': {'component': component}, 'firstTimestamp': ts, 'lastTimestamp': ts,
            'count': 1, 'reportingComponent': component, 'reportingInstance': host or ''}
        if host:
            ev['source']['host'] = host
        try:
            self.store.create(self.events, md.get('namespace'), ev)
        except errors.ApiError:
            pass   # namespace terminating: events are best effort

    # --- scheduler and kubelet ----------------------------------------------

    def _pod_matches_unschedulable(self, pod):
        if self.config.get('unschedulable'):
            return True
        sel = self.config.get('unschedulable_selector')
        if sel:
            from .selectors import parse_label_selector
            return parse_label_selector(sel).matches(pod['metadata'].get('labels'))
        return False

    def _image_matches(self, pod, key):
        rx = self.config.get(key)
        if not rx:
            return None
        for c in pod['spec'].get('containers') or []:
            if re.search(rx, c.get('image', '')):
                return c
        return None

    def _write_pod_status(self, pod):
        self.store.update(self.pods, pod['metadata']['namespace'], pod['metadata']['name'], pod,
                          subresource='status')

    def reconcile_pod(self, ns, name):
        pod = self._get(self.pods, ns, name)
        if pod is None:
            return
        uid = pod['metadata']['uid']
        started = self.pod_started.setdefault(uid, time.monotonic())
        if pod['metadata'].get('deletionTimestamp'):
            # Containers stop; the kubelet then deletes with grace 0.
            if self.pod_stage.get(uid) != 'terminating':
                self.pod_stage[uid] = 'terminating'
                self.after(self.config['pod_termination_ms'] / 1000.0, ('pod', ns, name))
                return
            self.store.remove(self.pods, ns, name)
            self.pod_started.pop(uid, None)
            self.pod_stage.pop(uid, None)
            return
        spec, status = pod['spec'], pod['status']
        now = time.monotonic()
        if not spec.get('nodeName'):
            due = started + self.config['schedule_delay_ms'] / 1000.0
            if now < due:
                self.after(due - now, ('pod', ns, name))
                return
            if self._pod_matches_unschedulable(pod):
                if self.pod_stage.get(uid) != 'unschedulable':
                    self.pod_stage[uid] = 'unschedulable'
                    msg = ('0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes '
                           'are available: 1 No preemption victims found for incoming pod.')
                    _set_pod_condition(status, 'PodScheduled', 'False', 'Unschedulable', msg)
                    self._write_pod_status(pod)
                    self.emit(pod, 'Warning', 'FailedScheduling', msg, 'default-scheduler')
                self.after(1.0, ('pod', ns, name))   # the scheduler retries
                return
            # Bind (pods/binding), then the scheduler's PodScheduled.
            spec['nodeName'] = NODE_NAME
            cur = self._get(self.pods, ns, name)
            cur['spec']['nodeName'] = NODE_NAME
            bound = self.store.write_internal(self.pods, cur)
            if bound is None:
                return
            _set_pod_condition(bound['status'], 'PodScheduled', 'True')
            self._write_pod_status(bound)
            if self.config['normal_events']:
                self.emit(bound, 'Normal', 'Scheduled', 'Successfully assigned %s/%s to %s'
                          % (ns, name, NODE_NAME), 'default-scheduler')
            self.enqueue(('pod', ns, name))
            return
        if status.get('phase') != 'Pending' or self.pod_stage.get(uid) == 'pull-failed':
            return
        due = started + self.config['ready_delay_ms'] / 1000.0
        if now < due:
            self.after(due - now, ('pod', ns, name))
            return
        bad = self._image_matches(pod, 'fail_image')
        if bad is not None:
            self._image_pull_failed(pod, bad)
            return
        self._start_pod(pod)

    def _image_pull_failed(self, pod, c):
        uid = pod['metadata']['uid']
        self.pod_stage[uid] = 'pull-failed'
        status = pod['status']
        image = c.get('image', '')
        detail = ('rpc error: code = NotFound desc = failed to pull and unpack image "%s": '
                  'failed to resolve reference "%s": not found' % (image, image))
        names = [x['name'] for x in pod['spec']['containers']]
        status['startTime'] = status.get('startTime') or now_rfc3339()
        status['hostIP'] = NODE_IP
        status['hostIPs'] = [{'ip': NODE_IP}]
        _set_pod_condition(status, 'PodReadyToStartContainers', 'True')
        _set_pod_condition(status, 'Initialized', 'True')
        _set_pod_condition(status, 'Ready', 'False', 'ContainersNotReady',
                           'containers with unready status: [%s]' % ' '.join(names))
        _set_pod_condition(status, 'ContainersReady', 'False', 'ContainersNotReady',
                           'containers with unready status: [%s]' % ' '.join(names))
        status['containerStatuses'] = [{
            'name': x['name'], 'image': x.get('image', ''), 'imageID': '', 'ready': False,
            'restartCount': 0, 'started': False,
            'state': {'waiting': {'reason': 'ErrImagePull', 'message': detail}
                      if x is c else {'reason': 'ContainerCreating'}},
            'lastState': {}} for x in pod['spec']['containers']]
        self._write_pod_status(pod)
        ns = pod['metadata']['namespace']
        self.emit(pod, 'Normal', 'Pulling', 'Pulling image "%s"' % image, 'kubelet', NODE_NAME)
        self.emit(pod, 'Warning', 'Failed', 'Failed to pull image "%s": %s' % (image, detail),
                  'kubelet', NODE_NAME)
        self.emit(pod, 'Warning', 'Failed', 'Error: ErrImagePull', 'kubelet', NODE_NAME)
        # The kubelet backs off; the waiting reason turns ImagePullBackOff.
        cur = self._get(self.pods, ns, pod['metadata']['name'])
        if cur is None:
            return
        for cs in cur['status'].get('containerStatuses') or []:
            if cs['name'] == c['name']:
                cs['state'] = {'waiting': {'reason': 'ImagePullBackOff',
                                           'message': 'Back-off pulling image "%s"' % image}}
        self._write_pod_status(cur)
        self.emit(cur, 'Normal', 'BackOff', 'Back-off pulling image "%s"' % image, 'kubelet',
                  NODE_NAME)
        self.emit(cur, 'Warning', 'Failed', 'Error: ImagePullBackOff', 'kubelet', NODE_NAME)

    def _start_pod(self, pod):
        uid = pod['metadata']['uid']
        self.pod_stage[uid] = 'started'
        status = pod['status']
        n = int(uid.replace('-', '')[:6], 16)
        ip = '10.244.%d.%d' % ((n >> 8) % 250 + 1, n % 250 + 2)
        ts = now_rfc3339()
        crash = self._image_matches(pod, 'crash_image')
        done = self._image_matches(pod, 'succeed_image')
        status.update({'hostIP': NODE_IP, 'hostIPs': [{'ip': NODE_IP}], 'podIP': ip,
                       'podIPs': [{'ip': ip}], 'startTime': ts})
        _set_pod_condition(status, 'PodReadyToStartContainers', 'True')
        _set_pod_condition(status, 'Initialized', 'True')
        if crash is not None or done is not None:
            code = 1 if crash is not None else 0
            status['phase'] = 'Failed' if crash is not None else 'Succeeded'
            reason = 'Error' if code else 'Completed'
            _set_pod_condition(status, 'Ready', 'False', 'PodCompleted')
            _set_pod_condition(status, 'ContainersReady', 'False', 'PodCompleted')
            states = {'terminated': {'exitCode': code, 'reason': reason, 'startedAt': ts,
                                     'finishedAt': ts, 'containerID': 'containerd://' + uid}}
            ready = False
        else:
            status['phase'] = 'Running'
            _set_pod_condition(status, 'ContainersReady', 'True')
            _set_pod_condition(status, 'Ready', 'True')
            states = {'running': {'startedAt': ts}}
            ready = True
        status['containerStatuses'] = [{
            'name': c['name'], 'image': c.get('image', ''),
            'imageID': 'docker.io/library/%s@sha256:%s' % (c.get('image', ''), '0' * 64),
            'containerID': 'containerd://%s-%s' % (uid, c['name']), 'ready': ready,
            'restartCount': 0, 'started': ready, 'state': jcopy(states),
            'lastState': {}} for c in pod['spec']['containers']]
        self._write_pod_status(pod)
        if self.config['normal_events']:
            for c in pod['spec']['containers']:
                self.emit(pod, 'Normal', 'Pulled', 'Container image "%s" already present on '
                          'machine' % c.get('image', ''), 'kubelet', NODE_NAME)
                self.emit(pod, 'Normal', 'Created', 'Created container: %s' % c['name'],
                          'kubelet', NODE_NAME)
                self.emit(pod, 'Normal', 'Started', 'Started container %s' % c['name'],
                          'kubelet', NODE_NAME)

    # --- sandbox controller -------------------------------------------------

    def _owned(self, obj, owner):
        for o in obj['metadata'].get('ownerReferences') or []:
            if o.get('controller'):
                return o.get('uid') == owner['metadata']['uid']
        return False

    def _controller_ref(self, obj):
        for o in obj['metadata'].get('ownerReferences') or []:
            if o.get('controller'):
                return o
        return None

    def _desired_pod(self, sb, pod_name, h):
        tmpl = sb['spec'].get('podTemplate') or {}
        tmeta = tmpl.get('metadata') or {}
        labels = {k: v for k, v in (tmeta.get('labels') or {}).items()
                  if not k.startswith(RESERVED_PREFIXES)}
        labels[SANDBOX_LABEL] = h
        annotations = {k: v for k, v in (tmeta.get('annotations') or {}).items()
                       if not k.startswith(RESERVED_PREFIXES) and
                       k != 'opentelemetry.io/trace-context'}
        if labels:
            annotations['agents.x-k8s.io/propagated-labels'] = ','.join(
                sorted(k for k in labels if k != SANDBOX_LABEL))
        if annotations:
            annotations['agents.x-k8s.io/propagated-annotations'] = ','.join(
                sorted(k for k in annotations if not k.startswith('agents.x-k8s.io/')))
        md = sb['metadata']
        spec = jcopy(tmpl.get('spec') or {})
        vols = []
        for vct in sb['spec'].get('volumeClaimTemplates') or []:
            vname = (vct.get('metadata') or {}).get('name', '')
            vols.append({'name': vname, 'persistentVolumeClaim': {
                'claimName': '%s-%s' % (vname, md['name'])}})
        if vols:
            names = {v['name'] for v in vols}
            spec['volumes'] = [v for v in spec.get('volumes') or [] if v.get('name') not in names] \
                + vols
        return {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {
            'name': pod_name, 'namespace': md['namespace'], 'labels': labels,
            'annotations': annotations,
            'ownerReferences': [{'apiVersion': 'agents.x-k8s.io/v1beta1', 'kind': 'Sandbox',
                                 'name': md['name'], 'uid': md['uid'], 'controller': True,
                                 'blockOwnerDeletion': True}]},
            'spec': spec}

    def reconcile_sandbox(self, ns, name):
        sb = self._get(self.sandboxes, ns, name)
        if sb is None or sb['metadata'].get('deletionTimestamp'):
            return
        md = sb['metadata']
        spec = sb['spec']
        status = jcopy(sb.get('status') or {})
        old_status = jcopy(status)
        gen = md.get('generation', 0)
        h = name_hash(name)
        pod_name = (md.get('annotations') or {}).get(POD_NAME_ANN) or name
        now = time.time()
        expiry = None
        if spec.get('shutdownTime'):
            try:
                expiry = parse_rfc3339(spec['shutdownTime'])
            except ValueError:
                expiry = None
        if expiry is not None and now >= expiry:
            self._expire(sb, status, old_status, pod_name, gen)
            return
        if expiry is not None:
            self.after(max(expiry - now, 0) + 0.01, ('sandbox', ns, name))
        pod = self._get(self.pods, ns, pod_name)
        err = None
        suspended = spec.get('operatingMode') == 'Suspended'
        if suspended:
            if pod is not None and self._owned(pod, sb):
                if not pod['metadata'].get('deletionTimestamp'):
                    self.store.delete(self.pods, ns, pod_name)
            elif pod is None and POD_NAME_ANN in (md.get('annotations') or {}):
                self.store.patch(self.sandboxes, ns, name, 'application/merge-patch+json',
                                 {'metadata': {'annotations': {POD_NAME_ANN: None}}})
        elif pod is None:
            try:
                pod, _ = self.store.create(self.pods, ns, self._desired_pod(sb, pod_name, h))
            except errors.ApiError as e:
                if e.reason == 'AlreadyExists':
                    pod = self._get(self.pods, ns, pod_name)
                else:
                    err = e.message
            if pod is not None and (md.get('annotations') or {}).get(POD_NAME_ANN) != pod_name:
                sb, _, _ = self.store.patch(self.sandboxes, ns, name,
                                            'application/merge-patch+json',
                                            {'metadata': {'annotations': {POD_NAME_ANN:
                                                                          pod_name}}})
        elif not self._owned(pod, sb):
            ref = self._controller_ref(pod)
            labels = pod['metadata'].get('labels') or {}
            if ref is None and (labels.get('agents.x-k8s.io/adoptable') == 'true' or
                                labels.get(SANDBOX_LABEL) == h):
                refs = list(pod['metadata'].get('ownerReferences') or [])
                refs.append({'apiVersion': 'agents.x-k8s.io/v1beta1', 'kind': 'Sandbox',
                             'name': name, 'uid': md['uid'], 'controller': True,
                             'blockOwnerDeletion': True})
                pod, _, _ = self.store.patch(self.pods, ns, pod_name,
                                             'application/merge-patch+json',
                                             {'metadata': {'ownerReferences': refs}})
            elif ref is not None:
                err = ('pod %s is owned by another controller %s/%s' %
                       (pod_name, ref.get('kind'), ref.get('name')))
            else:
                err = 'pod %s exists and is not owned by this sandbox' % pod_name
        svc = self._reconcile_service(sb, h) if not suspended else \
            self._get(self.services, ns, name)
        owned = pod is not None and self._owned(pod, sb)
        if pod is None:
            status.pop('podIPs', None)
            status.pop('nodeName', None)
        else:
            status['selector'] = '%s=%s' % (SANDBOX_LABEL, h)
            ips = [p['ip'] for p in (pod.get('status') or {}).get('podIPs') or []] if owned \
                else []
            if ips:
                status['podIPs'] = ips
            else:
                status.pop('podIPs', None)
            node = pod['spec'].get('nodeName') if owned else ''
            if node:
                status['nodeName'] = node
            else:
                status.pop('nodeName', None)
        if svc is not None:
            status['service'] = name
            status['serviceFQDN'] = '%s.%s.svc.%s' % (name, ns, self.config['cluster_domain'])
        else:
            status.pop('service', None)
            status.pop('serviceFQDN', None)
        conds = status.get('conditions') or []
        for c in self._conditions(sb, pod if owned else (None if pod is None else pod), owned,
                                  svc, err, gen):
            _set_condition(conds, c)
        present = {c['type'] for c in self._conditions(sb, pod, owned, svc, err, gen)}
        conds = [c for c in conds if c['type'] not in ('Finished', 'PodScheduled') or
                 c['type'] in present]
        status['conditions'] = conds
        self._write_status(sb, old_status, status)

    def _conditions(self, sb, pod, owned, svc, err, gen):
        spec = sb['spec']
        out = []
        suspended = spec.get('operatingMode') == 'Suspended'
        s = {'type': 'Suspended', 'status': 'False', 'reason': 'NotSuspended',
             'message': 'Sandbox is not suspended'}
        if suspended:
            if pod is None:
                s = {'type': 'Suspended', 'status': 'True', 'reason': 'PodTerminated',
                     'message': 'Pod has been terminated. Sandbox is suspended'}
            elif not owned:
                s.update(reason='PodNotOwned', message='Refused to delete pod because it is '
                         'not owned by this sandbox')
            else:
                s.update(reason='PodTerminating', message='Pod is terminating. Sandbox is '
                         'suspending')
        out.append(s)
        phase = (pod or {}).get('status', {}).get('phase') if pod else None
        if owned and phase in ('Succeeded', 'Failed'):
            out.append({'type': 'Finished', 'status': 'True',
                        'reason': 'PodSucceeded' if phase == 'Succeeded' else 'PodFailed',
                        'message': 'Pod completed successfully' if phase == 'Succeeded'
                        else 'Pod failed'})
        if owned:
            pc = next((c for c in pod['status'].get('conditions') or []
                       if c.get('type') == 'PodScheduled'), None)
            if pc is None:
                out.append({'type': 'PodScheduled', 'status': 'Unknown',
                            'reason': 'PodSchedulingUnknown',
                            'message': 'Pod has not reported a PodScheduled condition yet'})
            else:
                reason = pc.get('reason') or ('PodScheduled' if pc.get('status') == 'True'
                                              else 'PodSchedulingUnknown')
                out.append({'type': 'PodScheduled', 'status': pc.get('status'),
                            'reason': reason, 'message': pc.get('message', '')})
        out.append(self._ready(sb, pod, svc, err))
        for c in out:
            c['observedGeneration'] = gen
        return out

    def _ready(self, sb, pod, svc, err):
        r = {'type': 'Ready', 'status': 'False', 'reason': 'DependenciesNotReady',
             'message': ''}
        if err:
            r.update(reason='ReconcilerError', message='Error seen: ' + err)
            return r
        if sb['spec'].get('operatingMode') == 'Suspended':
            r.update(reason='SandboxSuspended',
                     message='Sandbox is suspending' if pod is not None else
                     'Sandbox is suspended')
            return r
        ready = False
        if pod is not None:
            phase = pod['status'].get('phase')
            if phase == 'Succeeded':
                r.update(reason='PodSucceeded', message='Pod completed successfully')
                return r
            if phase == 'Failed':
                r.update(reason='PodFailed', message='Pod failed')
                return r
            msg = 'Pod exists with phase: %s' % phase
            if phase == 'Running':
                msg = 'Pod is Running but not Ready'
                rc = next((c for c in pod['status'].get('conditions') or []
                           if c.get('type') == 'Ready'), None)
                if rc and rc.get('status') == 'True':
                    if pod['status'].get('podIPs'):
                        msg, ready = 'Pod is Ready', True
                    else:
                        msg = 'Pod is Ready but has no podIPs yet'
        else:
            msg = 'Pod does not exist'
        svc_required = sb['spec']['service'] if 'service' in sb['spec'] else svc is not None
        svc_ready = True
        if svc_required:
            svc_ready = svc is not None
            msg += '; Service Exists' if svc_ready else '; Service does not exist'
        r['message'] = msg
        if ready and svc_ready:
            r.update(status='True', reason='DependenciesReady')
        return r

    def _reconcile_service(self, sb, h):
        ns, name = sb['metadata']['namespace'], sb['metadata']['name']
        svc = self._get(self.services, ns, name)
        want = sb['spec'].get('service')
        if want is True and svc is None:
            ports = []
            for c in (sb['spec'].get('podTemplate') or {}).get('spec', {}).get('containers') or []:
                for p in c.get('ports') or []:
                    proto = p.get('protocol', 'TCP')
                    ports.append({'name': p.get('name') or 'p-%d-%s' % (
                        p['containerPort'], proto.lower()), 'port': p['containerPort'],
                        'targetPort': p['containerPort'], 'protocol': proto})
            body = {'apiVersion': 'v1', 'kind': 'Service', 'metadata': {
                'name': name, 'namespace': ns, 'labels': {SANDBOX_LABEL: h},
                'ownerReferences': [{'apiVersion': 'agents.x-k8s.io/v1beta1', 'kind': 'Sandbox',
                                     'name': name, 'uid': sb['metadata']['uid'],
                                     'controller': True, 'blockOwnerDeletion': True}]},
                'spec': {'clusterIP': 'None', 'selector': {SANDBOX_LABEL: h},
                         'ports': sorted(ports, key=lambda p: (p['port'], p['protocol']))}}
            try:
                svc, _ = self.store.create(self.services, ns, body)
            except errors.ApiError as e:
                if e.reason != 'AlreadyExists':
                    raise
                svc = self._get(self.services, ns, name)
        elif want is False and svc is not None and self._owned(svc, sb):
            self.store.delete(self.services, ns, name)
            svc = None
        return svc

    def _write_status(self, sb, old_status, status):
        if status == old_status:
            return
        only_node = {k: v for k, v in status.items() if k != 'nodeName'} == \
            {k: v for k, v in old_status.items() if k != 'nodeName'}
        ready = any(c['type'] == 'Ready' and c['status'] == 'True'
                    for c in status.get('conditions') or [])
        if only_node and not ready:
            return   # deferred: rides along with the next status write
        patch = _merge_diff(old_status, status)
        self.store.patch(self.sandboxes, sb['metadata']['namespace'], sb['metadata']['name'],
                         'application/merge-patch+json', {'status': patch}, subresource='status')

    def _expire(self, sb, status, old_status, pod_name, gen):
        ns, name = sb['metadata']['namespace'], sb['metadata']['name']
        conds = status.get('conditions') or []
        ready = next((c for c in conds if c['type'] == 'Ready'), None)
        if not (ready and ready.get('reason') == 'SandboxExpired'):
            _set_condition(conds, {'type': 'Ready', 'status': 'False',
                                   'reason': 'SandboxExpired', 'message': 'Sandbox has expired',
                                   'observedGeneration': gen})
            status['conditions'] = [c for c in conds if c['type'] != 'PodScheduled']
            self._write_status(sb, old_status, status)
            self.after(0.001, ('sandbox', ns, name))
            return
        pod = self._get(self.pods, ns, pod_name)
        if pod is not None and self._owned(pod, sb) and \
                not pod['metadata'].get('deletionTimestamp'):
            self.store.delete(self.pods, ns, pod_name)
        svc = self._get(self.services, ns, name)
        if svc is not None and self._owned(svc, sb):
            self.store.delete(self.services, ns, name)
        if sb['spec'].get('shutdownPolicy') == 'Delete':
            self.store.delete(self.sandboxes, ns, name, {'propagationPolicy': 'Background'})
            return
        self._write_status(sb, old_status, {'conditions': conds})

    # --- garbage collector --------------------------------------------------

    def _owner_res(self, ref):
        av = ref.get('apiVersion', '')
        return self.registry.by_api_version_kind(av, ref.get('kind', ''))

    def _gc_triggers(self, ch):
        """Queue the objects the garbage collector must look at after ch
        (under the store lock): the dependents of a deleted object, the
        owners of a deleted dependent (a foreground deletion may be waiting
        for it), a new or re-owned dependent, and an object whose deletion
        carries the orphan or foregroundDeletion finalizer."""
        md = ch.obj['metadata']
        if ch.type == 'DELETED':
            for (dres, dns, dname) in list(self.store.dependents.get(md.get('uid'), ())):
                self.enqueue(('gc', dres.plural, dres.group, dns, dname))
            self.store.dependents.pop(md.get('uid'), None)
            for ref in md.get('ownerReferences') or []:
                ores = self._owner_res(ref)
                if ores is not None:
                    self.enqueue(('gc', ores.plural, ores.group,
                                  ch.ns if ores.namespaced else '', ref.get('name', '')))
            return
        prev_refs = ((ch.prev or {}).get('metadata') or {}).get('ownerReferences')
        fins = md.get('finalizers') or []
        if (md.get('ownerReferences') and md.get('ownerReferences') != prev_refs) or \
                (md.get('deletionTimestamp') and ('orphan' in fins or
                                                  'foregroundDeletion' in fins)):
            self.enqueue(('gc', ch.res.plural, ch.res.group, ch.ns, ch.name))

    def collect_garbage(self, plural, group, ns, name):
        """The garbage collector (kube-controller-manager) for one object:
        a dependent whose owners are all gone is deleted (background), a
        dangling reference beside a live owner is removed, and the orphan
        and foregroundDeletion finalizers are processed."""
        store = self.store
        res = next((r for r in self.registry.all if r.plural == plural and r.group == group),
                   None)
        o = self._get(res, ns, name) if res is not None else None
        if o is None:
            return
        snapshot = [(res, o)]
        again = False
        for res, o in snapshot:
            md = o['metadata']
            ns = md.get('namespace', '')
            fins = md.get('finalizers') or []
            if md.get('deletionTimestamp') and 'orphan' in fins:
                for (dres, dns, dname) in list(store.dependents.get(md['uid'], ())):
                    d = self._get(dres, dns, dname)
                    if d is None:
                        continue
                    refs = [r for r in d['metadata'].get('ownerReferences') or []
                            if r.get('uid') != md['uid']]
                    store.patch(dres, dns, dname, 'application/merge-patch+json',
                                {'metadata': {'ownerReferences': refs or None}})
                store.patch(res, ns, md['name'], 'application/merge-patch+json',
                            {'metadata': {'finalizers': [f for f in fins if f != 'orphan']
                                          or None}})
                continue
            if md.get('deletionTimestamp') and 'foregroundDeletion' in fins:
                blocking = 0
                for (dres, dns, dname) in list(store.dependents.get(md['uid'], ())):
                    d = self._get(dres, dns, dname)
                    if d is None:
                        continue
                    ref = next((r for r in d['metadata'].get('ownerReferences') or []
                                if r.get('uid') == md['uid']), {})
                    if ref.get('blockOwnerDeletion'):
                        blocking += 1
                    if not d['metadata'].get('deletionTimestamp'):
                        store.delete(dres, dns, dname, {'propagationPolicy': 'Foreground'})
                if blocking == 0:
                    store.patch(res, ns, md['name'], 'application/merge-patch+json',
                                {'metadata': {'finalizers': [
                                    f for f in fins if f != 'foregroundDeletion'] or None}})
                else:
                    again = True
                continue
            refs = md.get('ownerReferences') or []
            if not refs or md.get('deletionTimestamp'):
                continue
            alive, gone, waiting, unknown = [], [], False, False
            for r in refs:
                ores = self._owner_res(r)
                if ores is None:
                    unknown = True   # a kind we do not serve: left alone
                    continue
                owner = self._get(ores, ns if ores.namespaced else '', r.get('name', ''))
                if owner is None or owner['metadata']['uid'] != r.get('uid'):
                    gone.append(r)
                elif owner['metadata'].get('deletionTimestamp') and \
                        'foregroundDeletion' in (owner['metadata'].get('finalizers') or []):
                    waiting = True   # the owner's foreground pass deletes us
                else:
                    alive.append(r)
            if not gone:
                continue
            if not alive and not unknown and not waiting:
                try:
                    store.delete(res, ns, md['name'], {'propagationPolicy': 'Background'})
                except errors.ApiError:
                    pass
            else:
                store.patch(res, ns, md['name'], 'application/merge-patch+json',
                            {'metadata': {'ownerReferences': [r for r in refs
                                                              if r not in gone]}})
        if again:
            self.after(0.05, ('gc', plural, group, ns, name))

    # --- namespace controller -------------------------------------------------

    def reconcile_namespace(self, name):
        ns = self._get(self.namespaces, '', name)
        if ns is None or not ns['metadata'].get('deletionTimestamp'):
            return
        left = 0
        for res in self.registry.all:
            if not res.namespaced:
                continue
            for o in self.store.items(res, name):
                left += 1
                if not o['metadata'].get('deletionTimestamp'):
                    try:
                        self.store.delete(res, name, o['metadata']['name'],
                                          {'propagationPolicy': 'Background'})
                    except errors.ApiError:
                        pass
        if left:
            self.after(0.05, ('namespace', '', name))
            return
        spec_fins = (ns.get('spec') or {}).get('finalizers') or []
        if spec_fins:
            ns['spec']['finalizers'] = []
            self.store.write_internal(self.namespaces, ns)
        self.store.finalize_namespace(name)


def _set_condition(conds, new):
    """meta.SetStatusCondition: lastTransitionTime changes only with the
    status; the other fields are overwritten."""
    for c in conds:
        if c['type'] == new['type']:
            if c['status'] != new['status']:
                c['lastTransitionTime'] = now_rfc3339()
            for k in ('status', 'reason', 'message', 'observedGeneration'):
                c[k] = new.get(k, c.get(k))
            return
    c = dict(new)
    c['lastTransitionTime'] = now_rfc3339()
    conds.append(c)


def _set_pod_condition(status, type_, value, reason=None, message=None):
    conds = status.setdefault('conditions', [])
    for c in conds:
        if c['type'] == type_:
            if c['status'] != value:
                c['lastTransitionTime'] = now_rfc3339()
            c['status'] = value
            c.pop('reason', None)
            c.pop('message', None)
            break
    else:
        c = {'type': type_, 'status': value, 'lastProbeTime': None,
             'lastTransitionTime': now_rfc3339()}
        conds.append(c)
    if reason:
        c['reason'] = reason
    if message:
        c['message'] = message


def _merge_diff(old, new):
    """A JSON merge patch turning old into new (lists replaced whole)."""
    out = {}
    for k in old:
        if k not in new:
            out[k] = None
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(old.get(k), dict):
            d = _merge_diff(old[k], v)
            if d:
                out[k] = d
        elif old.get(k) != v or k not in old:
            out[k] = v
    return out


__all__ = ['Cluster', 'DEFAULT_CONFIG', 'rfc3339']
