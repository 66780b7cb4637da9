"""Helpers for sandgate's integration tests.

The tests drive the real daemon over gRPC with Python's grpcio. Message
classes come from a descriptor set that protoc builds from the source tree
at test time (see protos.py), so nothing generated is committed.
"""
