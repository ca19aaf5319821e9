"""The gRPC modules are generated, not committed: made when missing, made again when the .proto is newer,
left alone otherwise; and what protoc makes imports under the protobuf runtime we pin."""

import os
import shutil
import subprocess
import sys

from quotas.grpc_api import build


def _tree(tmp_path, monkeypatch):
    proto_root = tmp_path / "proto"
    (proto_root / build.PROTO.parent).mkdir(parents=True)
    shutil.copy(build.PROTO_ROOT / build.PROTO, proto_root / build.PROTO)
    output = tmp_path / "out" / build.PROTO.parent
    monkeypatch.setattr(build, "PROTO_ROOT", proto_root)
    monkeypatch.setattr(build, "OUTPUT", output)
    return proto_root / build.PROTO, output


def test_missing_modules_are_generated_and_then_left_alone(tmp_path, monkeypatch):
    _, output = _tree(tmp_path, monkeypatch)
    assert build.outdated()
    build.ensure_generated()
    generated = {path.name: path.stat().st_mtime_ns for path in output.iterdir()}
    assert set(generated) == {"admission_pb2.py", "admission_pb2_grpc.py"}
    build.ensure_generated()
    assert {path.name: path.stat().st_mtime_ns for path in output.iterdir()} == generated


def test_a_proto_newer_than_the_modules_makes_them_again(tmp_path, monkeypatch):
    _, output = _tree(tmp_path, monkeypatch)
    build.ensure_generated()
    old = output / "admission_pb2.py"
    os.utime(old, ns=(1_000_000_000, 1_000_000_000))  # generated long before the .proto changed
    assert build.outdated()
    build.ensure_generated()
    assert not build.outdated()


def test_the_generated_modules_import_under_the_pinned_protobuf(tmp_path):
    """A fresh process, as a fresh clone's `make run` starts: the service is there under its package name."""
    result = subprocess.run(
        [sys.executable, "-c", "from quotas.grpc_api.build import modules; pb2, grpc = modules(); "
         "print(pb2.DESCRIPTOR.services_by_name['Admission'].full_name, hasattr(grpc, 'AdmissionStub'))"],
        cwd=build.BASE_DIR, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["creditservice.admission.v1.Admission", "True"]
