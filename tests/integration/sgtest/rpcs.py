"""Every sandgate.v1 RPC, callable by short name with a JSON-like body, and
the outcome of one call as a value (status code, details, trailing
metadata, responses), so tables of expected statuses read plainly.

    out = invoke(channel, 'GetSandbox', {'id': sid})
    out.code == 'NOT_FOUND'
"""
import time

import grpc
from google.protobuf import json_format

from . import env, protos

SERVICE_OF = {
    'CreateSandbox': 'SandboxService', 'GetSandbox': 'SandboxService',
    'ListSandboxes': 'SandboxService', 'DeleteSandbox': 'SandboxService',
    'StreamSandboxLogs': 'SandboxService', 'ExecSandbox': 'SandboxService',
    'CreateCredential': 'CredentialService', 'GetCredential': 'CredentialService',
    'ListCredentials': 'CredentialService', 'DeleteCredential': 'CredentialService',
    'CheckCredential': 'CredentialService',
    'WatchEvents': 'EventService', 'ListEvents': 'EventService',
}
RPCS = list(SERVICE_OF)


def path(rpc):
    return '/sandgate.v1.%s/%s' % (SERVICE_OF[rpc], rpc)


class Outcome:
    """What one call came back with. code is the status name ('OK',
    'NOT_FOUND', ...); responses is the list of response messages."""

    def __init__(self, code, details='', trailing=(), responses=(), took=0.0):
        self.code = code
        self.details = details or ''
        self.trailing = tuple(trailing or ())
        self.responses = list(responses)
        self.took = took

    @property
    def response(self):
        return self.responses[0] if self.responses else None

    def __repr__(self):
        return '%s(%r)' % (self.code, self.details[:200])


def request(rpc, body=None):
    """The request message (for a client-streaming RPC, the first one)."""
    p = protos.get()
    if rpc == 'ExecSandbox':
        req = p.msg('sandgate.v1.ExecSandboxRequest')
    else:
        req = p.request_for(path(rpc))
    if body:
        json_format.ParseDict(body, req)
    return req


def invoke(channel, rpc, body=None, timeout=None, metadata=None):
    """Call rpc once on channel; never raises grpc.RpcError.

    Server-streaming calls are read to the end (or the deadline);
    ExecSandbox sends the one request built from body and half-closes."""
    p = protos.get()
    svc = p.pool.FindServiceByName('sandgate.v1.' + SERVICE_OF[rpc])
    m = svc.methods_by_name[rpc]
    call = p.method(channel, path(rpc))
    req = request(rpc, body)
    timeout = timeout or env.scaled(10)
    kw = {'timeout': timeout}
    if metadata:
        kw['metadata'] = metadata
    t0 = time.monotonic()
    try:
        if m.client_streaming:
            resp = call(iter([req]), **kw)
        else:
            resp = call(req, **kw)
        responses = list(resp) if m.server_streaming else [resp]
        trailing = resp.trailing_metadata() if m.server_streaming else ()
        return Outcome('OK', '', trailing, responses, time.monotonic() - t0)
    except grpc.RpcError as e:
        return Outcome(e.code().name, e.details(), e.trailing_metadata(), (),
                       time.monotonic() - t0)


def sandgate_rpc_names():
    """Every RPC of the sandgate.v1 services in the compiled protos."""
    return sorted(m.name for s in protos.get().sandgate_services() for m in s.methods)
