"""Generate the gRPC modules from proto/ with grpcio-tools' protoc; they are not committed (.gitignore).

`python -m quotas.grpc_api.build` generates them (the Dockerfile does, at build time), and modules()
does when they are missing or older than the .proto file, so a fresh clone serves and tests without
a step of its own. The output lands under creditservice/admission/v1/, the proto package's path, so the
generated `_pb2_grpc` module's import of `creditservice.admission.v1.admission_pb2` resolves (a
directory without __init__.py inside the creditservice package: a namespace package).

Imports nothing of Django, so it runs before settings exist.
"""

import importlib
import os
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType

BASE_DIR = Path(__file__).resolve().parent.parent.parent
PROTO_ROOT = BASE_DIR / "proto"
PROTO = Path("creditservice/admission/v1/admission.proto")
OUTPUT = BASE_DIR / PROTO.parent
MODULES = ("admission_pb2", "admission_pb2_grpc")
_lock = threading.Lock()


class BuildError(RuntimeError):
    pass


def outdated() -> bool:
    proto_time = (PROTO_ROOT / PROTO).stat().st_mtime
    return any(not (OUTPUT / f"{name}.py").exists() or (OUTPUT / f"{name}.py").stat().st_mtime < proto_time
               for name in MODULES)


def generate() -> None:
    """Run protoc into a scratch directory beside the output, then move each file into place: a process
    importing them meanwhile sees the old file or the new one, never half of one."""
    from grpc_tools import protoc

    OUTPUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUTPUT.parent, prefix=".protoc-") as scratch:
        include = Path(protoc.__file__).resolve().parent / "_proto"  # the well-known types grpcio-tools ships
        status = protoc.main(["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={scratch}",
                              f"--grpc_python_out={scratch}", str(PROTO_ROOT / PROTO)])
        if status != 0:
            raise BuildError(f"protoc failed on {PROTO} (exit {status})")
        for name in MODULES:
            os.replace(Path(scratch) / PROTO.parent / f"{name}.py", OUTPUT / f"{name}.py")


def ensure_generated() -> None:
    with _lock:
        if outdated():
            generate()
            importlib.invalidate_caches()


def modules() -> tuple[ModuleType, ModuleType]:
    """(admission_pb2, admission_pb2_grpc), generated first when missing or outdated."""
    ensure_generated()
    return (importlib.import_module("creditservice.admission.v1.admission_pb2"),
            importlib.import_module("creditservice.admission.v1.admission_pb2_grpc"))


if __name__ == "__main__":
    generate()
    sys.stdout.write(f"generated {', '.join(MODULES)} in {OUTPUT.relative_to(BASE_DIR)}/\n")
