"""Generated stubs of the kefu.v1 protobuf contracts; regenerate with scripts/gen_protos.py."""
