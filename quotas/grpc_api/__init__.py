"""The gRPC door of the admission API (proto/creditservice/admission/v1/admission.proto).

It translates only: messages to the REST bodies and back, gRPC metadata to the caller, ApiError to a
gRPC status. The rules are the REST API's own (quotas/admission.py, wallets/access.py, wallets/auth.py).
"""
