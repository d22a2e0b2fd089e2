"""Generated gRPC bindings for the kubelet APIs (device plugin v1beta1, plugin registration v1).

Regenerate with ``scripts/gen_proto.sh``; do not edit the ``*_pb2*`` files by hand.
"""
