"""kefu API contracts (generated stubs live in kefu.v1)."""
