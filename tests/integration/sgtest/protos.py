"""Message classes and call helpers built from the source tree's protos.

protoc compiles every proto the daemon serves into one FileDescriptorSet
(with imports); the set is loaded into a private descriptor pool and message
classes are made from it. No generated Python files are needed, and new
files under proto/sandgate/v1/ are picked up without a change here.
"""
import glob
import os
import subprocess
import tempfile

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from . import env

# Where the well-known types and the gRPC service protos live (Debian's
# libprotobuf-dev and grpc-proto packages).
WKT_ROOTS = ['/usr/include', '/usr/local/include']
GRPC_PROTO_ROOTS = ['/usr/share/grpc-proto']

HEALTH = 'grpc/health/v1/health.proto'
REFLECTION_V1 = 'grpc/reflection/v1/reflection.proto'
REFLECTION_V1ALPHA = 'grpc/reflection/v1alpha/reflection.proto'

SANDGATE_PACKAGE = 'sandgate.v1'


def _root_with(roots, rel):
    for r in roots:
        if os.path.exists(os.path.join(r, rel)):
            return r
    raise RuntimeError('cannot find %s under %s' % (rel, ', '.join(roots)))


class Protos:
    """The compiled descriptor set of every served proto."""

    def __init__(self, source_root=None, protoc=None):
        source_root = source_root or env.SOURCE_ROOT
        protoc = protoc or env.PROTOC
        proto_dir = os.path.join(source_root, 'proto')
        ours = sorted(os.path.relpath(p, proto_dir) for p in
                      glob.glob(os.path.join(proto_dir, 'sandgate', 'v1', '*.proto')))
        if not ours:
            raise RuntimeError('no protos under %s/sandgate/v1' % proto_dir)
        self.sandgate_files = ours
        extra = [p for p in ('google/rpc/status.proto', 'google/rpc/error_details.proto')
                 if os.path.exists(os.path.join(proto_dir, p))]
        files = ours + extra + [HEALTH, REFLECTION_V1, REFLECTION_V1ALPHA]
        includes = [proto_dir, _root_with(WKT_ROOTS, 'google/protobuf/descriptor.proto'),
                    _root_with(GRPC_PROTO_ROOTS, HEALTH)]
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, 'set.binpb')
            cmd = [protoc, '--include_imports', '--descriptor_set_out=' + out]
            cmd += ['-I' + i for i in includes] + files
            res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if res.returncode != 0:
                raise RuntimeError('protoc failed: %s\n%s' % (' '.join(cmd),
                                                              res.stdout.decode(errors='replace')))
            with open(out, 'rb') as f:
                self.fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
        self.pool = descriptor_pool.DescriptorPool()
        for fdp in self.fds.file:  # protoc writes imports first
            self.pool.Add(fdp)
        self._factory = message_factory.MessageFactory(self.pool)
        self._classes = {}

    def cls(self, full_name):
        """The message class for a fully-qualified message name."""
        c = self._classes.get(full_name)
        if c is None:
            desc = self.pool.FindMessageTypeByName(full_name)
            if hasattr(message_factory, 'GetMessageClass'):
                c = message_factory.GetMessageClass(desc)
            else:
                c = self._factory.GetPrototype(desc)
            self._classes[full_name] = c
        return c

    def msg(self, full_name, **fields):
        return self.cls(full_name)(**fields)

    def file_proto(self, name):
        for f in self.fds.file:
            if f.name == name:
                return f
        raise KeyError(name)

    def sandgate_services(self):
        """[ServiceDescriptor] of every service in package sandgate.v1."""
        out = []
        for name in self.sandgate_files:
            fd = self.pool.FindFileByName(name)
            out.extend(fd.services_by_name[s] for s in sorted(fd.services_by_name))
        return out

    def method(self, channel, path):
        """A grpcio multicallable for "/pkg.Service/Method", typed by the pool."""
        svc_name, meth_name = path.lstrip('/').split('/', 1)
        m = self.pool.FindServiceByName(svc_name).methods_by_name[meth_name]
        ser = _serialize
        de = self.cls(m.output_type.full_name).FromString
        if m.client_streaming and m.server_streaming:
            return channel.stream_stream(path, request_serializer=ser, response_deserializer=de)
        if m.client_streaming:
            return channel.stream_unary(path, request_serializer=ser, response_deserializer=de)
        if m.server_streaming:
            return channel.unary_stream(path, request_serializer=ser, response_deserializer=de)
        return channel.unary_unary(path, request_serializer=ser, response_deserializer=de)

    def request_for(self, path, **fields):
        svc_name, meth_name = path.lstrip('/').split('/', 1)
        m = self.pool.FindServiceByName(svc_name).methods_by_name[meth_name]
        return self.cls(m.input_type.full_name)(**fields)

    def status_details(self, rpc_error):
        """The google.rpc.Status in an error's grpc-status-details-bin
        trailer, or None when there is none."""
        for k, v in (rpc_error.trailing_metadata() or ()):
            if k == 'grpc-status-details-bin':
                return self.cls('google.rpc.Status').FromString(v)
        return None

    def bad_request(self, status):
        """The google.rpc.BadRequest detail of a google.rpc.Status, or None."""
        for any_ in status.details:
            if any_.type_url.endswith('/google.rpc.BadRequest'):
                return self.cls('google.rpc.BadRequest').FromString(any_.value)
        return None

    # Health helpers ---------------------------------------------------

    def health_status_name(self, value):
        enum = self.pool.FindEnumTypeByName('grpc.health.v1.HealthCheckResponse.ServingStatus')
        return enum.values_by_number[value].name if value in enum.values_by_number else str(value)

    def health_check(self, channel, service='', timeout=5.0, **kw):
        call = self.method(channel, '/grpc.health.v1.Health/Check')
        resp = call(self.msg('grpc.health.v1.HealthCheckRequest', service=service),
                    timeout=timeout, **kw)
        return self.health_status_name(resp.status)

    def health_watch(self, channel, service='', timeout=None):
        call = self.method(channel, '/grpc.health.v1.Health/Watch')
        return call(self.msg('grpc.health.v1.HealthCheckRequest', service=service),
                    timeout=timeout)


def _serialize(m):
    return m.SerializeToString()


_PROTOS = None


def get():
    """The shared Protos instance (compiled once per process)."""
    global _PROTOS
    if _PROTOS is None:
        _PROTOS = Protos()
    return _PROTOS


def channel_options(**extra):
    """Options for test channels: a private subchannel pool, so channels with
    different credentials never share a connection."""
    opts = {'grpc.use_local_subchannel_pool': 1, 'grpc.enable_retries': 0}
    opts.update(extra)
    return list(opts.items())


def insecure_channel(target, **extra):
    return grpc.insecure_channel(target, options=channel_options(**extra))


def secure_channel(target, creds, server_name='localhost', **extra):
    return grpc.secure_channel(target, creds, options=channel_options(
        **{'grpc.ssl_target_name_override': server_name}, **extra))


# Call credentials ----------------------------------------------------------

class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression):
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression


class MetadataInterceptor(grpc.UnaryUnaryClientInterceptor,
                          grpc.UnaryStreamClientInterceptor,
                          grpc.StreamUnaryClientInterceptor,
                          grpc.StreamStreamClientInterceptor):
    """Appends fixed metadata to every call of a channel, of every kind.

    grpcio's call credentials need a secure channel; the tests mostly talk
    plaintext to loopback, so the bearer token rides as plain metadata."""

    def __init__(self, metadata):
        self._md = list(metadata)

    def _details(self, d):
        return _CallDetails(d.method, d.timeout, list(d.metadata or ()) + self._md,
                            d.credentials, getattr(d, 'wait_for_ready', None),
                            getattr(d, 'compression', None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


def with_metadata(channel, metadata):
    """channel whose every call also sends metadata (a list of pairs)."""
    return grpc.intercept_channel(channel, MetadataInterceptor(metadata))


def with_token(channel, token):
    """channel whose every call sends `authorization: Bearer <token>`."""
    return with_metadata(channel, [('authorization', 'Bearer ' + token)])
